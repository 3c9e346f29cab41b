"""Child-process entry points for the fault-injection test; a module of its own so that a child
imports nothing but latentworld (the forkserver preloads it)."""

from __future__ import annotations

from typing import Any

from latentworld.experiment.config import TrainConfig
from latentworld.probability import kalman_kernels
from latentworld.training.trainer import Trainer

# Loaded once by the forkserver that preloads this module, so that no child spends its first
# tenths of a second on it.
kalman_kernels.kernels()


def resume_training(config: TrainConfig, run_dir: str, started: Any = None) -> None:
    """What `latentworld train --resume` does; ``started`` (an Event) is set when training begins."""
    trainer = Trainer(config, run_dir, resume=True)
    if started is not None:
        started.set()
    trainer.fit(progress=False)
