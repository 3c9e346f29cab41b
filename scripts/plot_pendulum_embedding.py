"""Figure: the pendulum's pseudo-observations a early in training, with a in two and in three dimensions.

    python scripts/plot_pendulum_embedding.py [--seed 7] [--steps 100 300 600]

Trains the fast preset (``configs/pendulum_ekvae_fast.yaml``, a in 3 dims) and the same preset with
a in 2 dims (``model.dim_a=2 model.dim_z=3``, the paper's sizes) from one model seed on
``data/pendulum.npz`` (the tuning data), and draws the encoder means of the test split's frames at
each of ``--steps``, coloured by the true angle, with the OLS R² from a to (cos, sin) of the angle.
A closed curve in the plane that starts with a twist keeps it (docs/engine.md, "Why a has three
dimensions in the fast preset"); seed 7 is a tuning seed on which that happens. The runs train in a
temporary directory; writes ``--out``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from agents.problem import encoded_positions
from latentworld.evaluation.metrics import ols_r2, state_targets
from latentworld.experiment.config import load_config
from latentworld.training.trainer import Trainer

PRESET = "configs/pendulum_ekvae_fast.yaml"
VARIANTS = {"a in 2 dims (Dz 3)": ["model.dim_a=2", "model.dim_z=3"], "a in 3 dims (Dz 4, the fast preset)": []}


def draw_row(fig: plt.Figure, row: int, label: str, trainer: Trainer, steps: list[int]) -> None:
    """Train ``trainer`` to each of ``steps`` and draw its encoder means there, one panel per step."""
    train, test = trainer.train_data, trainer.test_data
    angle = test.states[..., 0].reshape(-1)
    colour = torch.atan2(angle.sin(), angle.cos())
    fit_targets = state_targets(train.states.reshape(-1, train.states.shape[-1]), train.metadata)["hinge_angle"]
    test_targets = state_targets(test.states.reshape(-1, test.states.shape[-1]), test.metadata)["hinge_angle"]
    for column, step in enumerate(steps):
        trainer.fit(progress=False, until=step)
        a_test = encoded_positions(trainer.model, test)
        r2 = ols_r2(encoded_positions(trainer.model, train), fit_targets, a_test, test_targets)
        ax = fig.add_subplot(2, len(steps), row * len(steps) + column + 1,
                             projection="3d" if a_test.shape[1] == 3 else None)
        ax.scatter(*a_test.T, c=colour, cmap="hsv", s=1)
        ax.set_title(f"{label}\nstep {trainer.step}: OLS R² a → angle {r2:.3f}", fontsize=9)
        ax.tick_params(labelsize=6)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 300, 600])
    parser.add_argument("--data", default="data/pendulum.npz")
    parser.add_argument("--out", type=Path, default=Path("docs/results/pendulum_embedding_2d_3d.png"))
    args = parser.parse_args()
    steps = sorted(set(args.steps))
    fig = plt.figure(figsize=(3.6 * len(steps), 7.2))
    with tempfile.TemporaryDirectory() as runs:
        for row, (label, overrides) in enumerate(VARIANTS.items()):
            config = load_config(PRESET, [f"seed={args.seed}", f"data={args.data}", "eval_every=100000",
                                          "device=cpu", *overrides])
            trainer = Trainer(config, Path(runs) / str(row))
            draw_row(fig, row, label, trainer, steps)
    fig.suptitle(f"Encoder means of the test frames, coloured by the true angle (model seed {args.seed})")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
