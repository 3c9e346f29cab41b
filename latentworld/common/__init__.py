"""Foundations every layer uses: the error types, typed settings, crash-safe file writing, data sets."""
