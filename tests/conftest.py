"""Shared pytest setup."""

import os

# Headless MuJoCo rendering; must be set before mujoco or dm_control is imported.
os.environ.setdefault("MUJOCO_GL", "egl")
