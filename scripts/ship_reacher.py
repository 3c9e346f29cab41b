"""Ship a trained reacher model into the package, with its default goal: the arm reaching a point.

    python scripts/ship_reacher.py RUN_DIR {reacher_angles,reacher_rgb} [--command "what trained it"]

Copies the checkpoint (config with the data path set to the default ``data/NAME.npz``, weights,
meta with the producing command and file hashes, ``eval/eval.json``) to
``latentworld/pretrained/NAME_ekvae`` and draws the default goal: the observation of the arm at rest
in the pose that puts its finger on :data:`DEFAULT_GOAL_POINT` (15 cm straight up), through inverse
kinematics (the elbow solution nearest the arm stretched along +x). Joint-angle models get
``goal.npy`` (angle features), RGB models ``goal.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from agents.tasks import REACH_ENVS
from latentworld.evaluation.evaluate import EVAL_FILE
from latentworld.experiment.checkpoint import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    META_FILE,
    MODEL_FILE,
    PRETRAINED_DIR,
)
from latentworld.latent_envs.latent_env import DEFAULT_GOAL_FILES

DEFAULT_GOAL_POINT = (0.0, 0.15)  # the shipped env's fixed goal: the arm reaching 15 cm straight up (+y)


def ship(run_dir: Path, env_name: str, command: str) -> Path:
    """Copy the model of ``run_dir`` (a training run, evaluated) into the package; see the module docstring."""
    import imageio.v3 as iio

    from agents.tasks import pose_observation
    from envs import RealEnv
    from envs.reacher_kinematics import TwoLinkArm

    destination = PRETRAINED_DIR / f"{env_name}_ekvae"
    destination.mkdir(parents=True, exist_ok=True)
    checkpoint = run_dir / CHECKPOINT_DIR
    shutil.copy2(checkpoint / MODEL_FILE, destination / MODEL_FILE)
    shutil.copy2(run_dir / "eval" / EVAL_FILE, destination / EVAL_FILE)
    config = re.sub(r"(?m)^data: .*$", f"data: data/{env_name}.npz", (checkpoint / CONFIG_FILE).read_text())
    (destination / CONFIG_FILE).write_text(config)
    meta = json.loads((checkpoint / META_FILE).read_text())
    meta["sha256"][CONFIG_FILE] = hashlib.sha256(config.encode()).hexdigest()
    meta["produced_by"] = command
    (destination / META_FILE).write_text(json.dumps(meta, indent=2))
    env = RealEnv(env_name)
    try:
        angles = TwoLinkArm.of(env).nearest_solution(np.array(DEFAULT_GOAL_POINT), np.zeros(2))
        goal = pose_observation(env, angles)
    finally:
        env.close()
    for stale in DEFAULT_GOAL_FILES:
        (destination / stale).unlink(missing_ok=True)
    if goal.dtype == np.uint8:
        iio.imwrite(destination / DEFAULT_GOAL_FILES[0], goal)
    else:
        np.save(destination / DEFAULT_GOAL_FILES[1], goal)
    return destination


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a trained and evaluated run directory")
    parser.add_argument("env", choices=REACH_ENVS, help="the model's observations")
    parser.add_argument("--command", default="", help="the command that trained the model (recorded in meta.json)")
    args = parser.parse_args()
    if not (args.run_dir / "eval" / EVAL_FILE).exists():
        print(f"ship_reacher: {args.run_dir} has no eval/{EVAL_FILE}; run `latentworld evaluate {args.run_dir}` "
              "first", file=sys.stderr)
        return 1
    print(f"shipped {args.run_dir} -> {ship(args.run_dir, args.env, args.command or ' '.join(sys.argv))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
