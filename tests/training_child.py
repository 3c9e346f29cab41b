"""Child-process entry points for the fault-injection test; a module of its own so that a child
imports nothing but latentworld (the forkserver preloads it)."""

from __future__ import annotations

from latentworld.config import TrainConfig
from latentworld.train import Trainer


def resume_training(config: TrainConfig, run_dir: str) -> None:
    """What `latentworld train --resume` does."""
    Trainer(config, run_dir, resume=True).fit(progress=False)


def set_up_only(config: TrainConfig, run_dir: str) -> None:
    """Everything before the first training step."""
    Trainer(config, run_dir)
