"""How a model is judged: the metrics protocol, the figures, and the `evaluate` command's work."""
