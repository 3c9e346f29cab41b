"""Does a reacher model tell the wrist bent one way from the wrist bent the other way?

    python scripts/probe_wrist_fold.py CHECKPOINT [--data PATH] [--out FILE.json]

The paper's metric reads the wrist as (cos, sin) of its angle, linearly from the smoothed mean z_t.
A model that keeps cos(wrist) (how far the arm is bent) but not the sign of the bend scores about
0.4 on it however well it keeps the rest. This probe fits OLS read-outs (with intercept) from z_t on
the data set's training split and scores them on its test split, for each of: the shoulder (cos, sin),
the wrist (cos, sin), cos(wrist), sin(wrist), |wrist|, sign(wrist), the elbow's and the fingertip's
position in the plane (from the MuJoCo model's link lengths), the second link's world angle (cos, sin of shoulder + wrist).
A fold shows as cos(wrist) and |wrist| high with sin(wrist) and sign(wrist) near 0.

For image data it fits the same read-outs linearly from the frames themselves (ridge regression on
2×2-averaged pixels, 3072 features): what is linear in the pictures before any model. This needs many
frames, such as the 54,000 of a 2000-sequence data set's training split; on a few thousand the fit
memorises and scores below 0 where nothing linear generalises. With the camera looking straight down
the shoulder's axis, rotating the arm about the shoulder rotates the picture, and mirroring the
picture flips the sign of the bend. A linear read-out that holds at every shoulder angle can be
averaged over the rotations into one that is rotation invariant, hence radial, hence blind to a
mirror image: so no linear function of the frames gives sin(wrist) or the sign of the bend, and this
column shows them near 0 (not exactly 0: the pixel grid is not rotation symmetric).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import torch
from probe_velocity import probe_inputs
from torch import Tensor
from tqdm import tqdm

from agents.tasks import REACH_ENVS
from envs.reacher_kinematics import TwoLinkArm
from envs.real_env import RealEnv
from latentworld.common.data import SequenceDataset
from latentworld.common.fileio import atomic_write_bytes
from latentworld.evaluation.metrics import ols_r2, pooled_r2, smoothed_means


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


PIXEL_RIDGE = 1.0  # on pixels in [0, 1]


def pixel_features(data: SequenceDataset, chunk: int = 4096) -> Tensor:
    """Every frame's pixels, 2×2-averaged, ``(N T, C H W / 4)`` float64 (pooled in chunks: the frames
    themselves in float would take gigabytes)."""
    frames = data.obs.flatten(0, 1)  # (N T, C, H, W) uint8
    return torch.cat([torch.nn.functional.avg_pool2d(frames[i:i + chunk].float() / 255.0, 2).flatten(1).double()
                      for i in range(0, len(frames), chunk)])


class RidgeFit:
    """Ridge regression (centred, intercept unpenalised) on fixed training inputs ``x`` ``(N, Dx)``: the
    normal matrix is factorised once, for any number of targets."""

    def __init__(self, x: Tensor, ridge: float) -> None:
        self.x_mean = x.mean(0)
        self.x = x - self.x_mean
        self.factor = torch.linalg.cholesky(self.x.T @ self.x + ridge * torch.eye(x.shape[1], dtype=x.dtype))

    def r2(self, y: Tensor, x_test: Tensor, y_test: Tensor) -> float:
        """Pooled R² on ``(x_test, y_test)`` of the fit to targets ``y`` ``(N, Dy)``."""
        y_mean = y.mean(0)
        coef = torch.cholesky_solve(self.x.T @ (y - y_mean), self.factor)
        return pooled_r2((x_test - self.x_mean) @ coef + y_mean, y_test)


@torch.no_grad()
def probe(model: torch.nn.Module, train: SequenceDataset, test: SequenceDataset) -> dict[str, dict[str, float]]:
    """R² of each read-out on the test split: ``{"ols_r2": {name: R²}}`` from z_t, and for image data
    ``"pixel_ridge_r2"`` from the frames."""
    splits = {"train": train, "test": test}
    stages = tqdm(total=4 if train.is_image else 2, desc="probe", unit="stage")
    z = {name: smoothed_means(model, d).flatten(0, 1).double() for name, d in splits.items()}  # (N T, Dz)
    stages.update()
    angles = {name: d.states.flatten(0, 1)[:, :2].double() for name, d in splits.items()}  # (N T, 2)
    env = RealEnv(test.metadata["name"])
    try:
        targets = read_outs(TwoLinkArm.of(env))
    finally:
        env.close()
    results = {"ols_r2": {name: ols_r2(z["train"], target(angles["train"]), z["test"], target(angles["test"]))
                          for name, target in targets.items()}}
    stages.update()
    if train.is_image:
        pixels = {name: pixel_features(d) for name, d in splits.items()}
        stages.update()
        fit = RidgeFit(pixels["train"], PIXEL_RIDGE)
        results["pixel_ridge_r2"] = {name: fit.r2(target(angles["train"]), pixels["test"], target(angles["test"]))
                                     for name, target in targets.items()}
        stages.update()
    stages.close()
    return results


def main(argv: list[str] | None = None) -> int:
    args, model, train, test, data_path = probe_inputs(__doc__.splitlines()[0], argv,
                                                       datasets=REACH_ENVS)
    results = {"checkpoint": str(args.checkpoint), "data": str(data_path), **probe(model, train, test)}
    columns = [c for c in ("ols_r2", "pixel_ridge_r2") if c in results]
    print(f"{'R² of':<40}" + "".join(f"{c:>16}" for c in columns))
    for name in results["ols_r2"]:
        print(f"{name:<40}" + "".join(f"{results[c][name]:>16.3f}" for c in columns))
    if args.out:
        atomic_write_bytes(args.out, (json.dumps(results, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
