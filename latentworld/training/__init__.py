"""The training loop, REWO and KL annealing, and data-parallel training across processes."""
