"""Does a reacher model tell the wrist bent one way from the wrist bent the other way?

    python scripts/probe_wrist_fold.py CHECKPOINT [--data PATH] [--out FILE.json]

The paper's metric reads the wrist as (cos, sin) of its angle, linearly from the smoothed mean z_t.
A model that keeps cos(wrist) (how far the arm is bent) but not the sign of the bend scores about
0.4 on it however well it keeps the rest. This probe fits OLS read-outs (with intercept) from z_t on
the data set's training split and scores them on its test split, for each of: the shoulder (cos, sin),
the wrist (cos, sin), cos(wrist), sin(wrist), |wrist|, sign(wrist), the elbow's and the fingertip's
position in the plane (links of 0.12 m), the second link's world angle (cos, sin of shoulder + wrist).
A fold shows as cos(wrist) and |wrist| high with sin(wrist) and sign(wrist) near 0.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import torch
from probe_velocity import probe_inputs
from torch import Tensor

from latentworld.common.data import SequenceDataset
from latentworld.common.fileio import atomic_write_bytes
from latentworld.evaluation.metrics import ols_r2, smoothed_means

LINK = 0.12  # m, both links of dm_control's reacher


def circle(angle: Tensor) -> Tensor:
    """``(N,)`` → ``(N, 2)``: cos and sin."""
    return torch.stack([angle.cos(), angle.sin()], -1)


READ_OUTS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {  # name: (shoulder, wrist) (N,) → target (N, K)
    "shoulder (cos, sin)": lambda s, w: circle(s),
    "wrist (cos, sin)": lambda s, w: circle(w),
    "cos(wrist)": lambda s, w: w.cos()[:, None],
    "sin(wrist)": lambda s, w: w.sin()[:, None],
    "|wrist|": lambda s, w: w.abs()[:, None],
    "sign(wrist)": lambda s, w: w.sign()[:, None],
    "elbow position": lambda s, w: LINK * circle(s),
    "fingertip position": lambda s, w: LINK * (circle(s) + circle(s + w)),
    "second link's world angle (cos, sin)": lambda s, w: circle(s + w),
}


@torch.no_grad()
def probe(model: torch.nn.Module, train: SequenceDataset, test: SequenceDataset) -> dict[str, float]:
    """OLS R² of each read-out on the test split, ``{name: R²}``."""
    splits = {"train": train, "test": test}
    z = {name: smoothed_means(model, d).flatten(0, 1).double() for name, d in splits.items()}  # (N T, Dz)
    angles = {name: d.states.flatten(0, 1).double() for name, d in splits.items()}  # shoulder, wrist first
    return {name: ols_r2(z["train"], target(angles["train"][:, 0], angles["train"][:, 1]),
                         z["test"], target(angles["test"][:, 0], angles["test"][:, 1]))
            for name, target in READ_OUTS.items()}


def main(argv: list[str] | None = None) -> int:
    args, model, train, test, data_path = probe_inputs(__doc__.splitlines()[0], argv,
                                                       datasets=("reacher_angles", "reacher_rgb"))
    results = {"checkpoint": str(args.checkpoint), "data": str(data_path), "ols_r2": probe(model, train, test)}
    for name, r2 in results["ols_r2"].items():
        print(f"{name:<40}{r2:>8.3f}")
    if args.out:
        atomic_write_bytes(args.out, (json.dumps(results, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
