"""Does a reacher model tell the wrist bent one way from the wrist bent the other way?

    python scripts/probe_wrist_fold.py CHECKPOINT [--data PATH] [--out FILE.json]

The paper's metric reads the wrist as (cos, sin) of its angle, linearly from the smoothed mean z_t.
A model that keeps cos(wrist) (how far the arm is bent) but not the sign of the bend scores about
0.4 on it however well it keeps the rest. This probe fits OLS read-outs (with intercept) from z_t on
the data set's training split and scores them on its test split, for each of: the shoulder (cos, sin),
the wrist (cos, sin), cos(wrist), sin(wrist), |wrist|, sign(wrist), the elbow's and the fingertip's
position in the plane (from the MuJoCo model's link lengths), the second link's world angle (cos, sin of shoulder + wrist).
A fold shows as cos(wrist) and |wrist| high with sin(wrist) and sign(wrist) near 0.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import torch
from probe_velocity import probe_inputs
from torch import Tensor

from envs.reacher_kinematics import TwoLinkArm
from envs.real_env import RealEnv
from latentworld.common.data import SequenceDataset
from latentworld.common.fileio import atomic_write_bytes
from latentworld.evaluation.metrics import ols_r2, smoothed_means


def read_outs(arm: TwoLinkArm) -> dict[str, Callable[[Tensor], Tensor]]:
    """``{name: joint angles (N, 2) (shoulder, wrist) → read-out target (N, K)}``, positions from ``arm``'s
    forward kinematics."""
    def circle(angle: Tensor) -> Tensor:  # (N,) → (N, 2): cos and sin
        return torch.stack([angle.cos(), angle.sin()], -1)

    return {
        "shoulder (cos, sin)": lambda q: circle(q[:, 0]),
        "wrist (cos, sin)": lambda q: circle(q[:, 1]),
        "cos(wrist)": lambda q: q[:, 1:].cos(),
        "sin(wrist)": lambda q: q[:, 1:].sin(),
        "|wrist|": lambda q: q[:, 1:].abs(),
        "sign(wrist)": lambda q: q[:, 1:].sign(),
        "elbow position": lambda q: arm.upper * circle(q[:, 0]),
        "fingertip position": lambda q: torch.from_numpy(arm.finger(q.numpy())),
        "second link's world angle (cos, sin)": lambda q: circle(q[:, 0] + q[:, 1]),
    }


@torch.no_grad()
def probe(model: torch.nn.Module, train: SequenceDataset, test: SequenceDataset) -> dict[str, float]:
    """OLS R² of each read-out on the test split, ``{name: R²}``."""
    splits = {"train": train, "test": test}
    z = {name: smoothed_means(model, d).flatten(0, 1).double() for name, d in splits.items()}  # (N T, Dz)
    angles = {name: d.states.flatten(0, 1)[:, :2].double() for name, d in splits.items()}  # (N T, 2)
    env = RealEnv(test.metadata["name"])
    try:
        targets = read_outs(TwoLinkArm.of(env))
    finally:
        env.close()
    return {name: ols_r2(z["train"], target(angles["train"]), z["test"], target(angles["test"]))
            for name, target in targets.items()}


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
