"""Why a reach controller stops at the wrong pose: the cost −r^pos = ‖a − a_goal‖² on the way there.

    python scripts/probe_goal_landscape.py CHECKPOINT --goal SHOULDER WRIST --start SHOULDER WRIST
        [--points 11] [--random 200] [--seed 0] [--out FILE.json]

Every pose is drawn as the reach task draws its goals (the arm at rest at those joint angles, rad, as a
picture or as angle features) and encoded through q(a|x). The probe prints the cost of the poses on
the straight joint-space path from ``--start`` to ``--goal`` and, for scale, the 10 %, 50 % and 90 %
quantiles of the cost over ``--random`` poses drawn uniformly (shoulder anywhere, wrist within its
joint range). A start whose cost is as low as the goal's close neighbourhood, with a hill in between,
is a trap: a controller that follows r^pos over a horizon too short to cross the hill stays there,
although the arm is elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from agents.problem import make_problem
from agents.tasks import make_task
from latentworld.common.errors import LatentworldError
from latentworld.common.fileio import atomic_write_bytes


def landscape(checkpoint: str, goal: np.ndarray, start: np.ndarray, points: int, random_poses: int,
              seed: int) -> dict[str, object]:
    """The costs along the path ``(points,)`` and the random poses' quantiles, as plain values."""
    problem = make_problem(checkpoint, make_task("reach"), with_starts=False)
    goals = problem.episode_goals()
    try:
        target = goals.encode(goal)

        def cost(angles: np.ndarray) -> float:
            return float((goals.encode(angles) - target).pow(2).sum())

        path = [cost(start + t * (goal - start)) for t in np.linspace(0, 1, points)]
        rng = np.random.default_rng(seed)
        low, high = goals.arm.wrist_range
        random_costs = [cost(np.array([rng.uniform(-np.pi, np.pi), rng.uniform(low, high)]))
                        for _ in range(random_poses)]
    finally:
        goals.close()
    return {"checkpoint": checkpoint, "goal": goal.tolist(), "start": start.tolist(), "path_cost": path,
            "random_cost_quantiles": dict(zip(("10%", "50%", "90%"),
                                              np.quantile(random_costs, [0.1, 0.5, 0.9]).tolist())),
            "random_poses": random_poses, "seed": seed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="reacher model: checkpoint directory or shipped name")
    parser.add_argument("--goal", type=float, nargs=2, required=True, metavar=("SHOULDER", "WRIST"))
    parser.add_argument("--start", type=float, nargs=2, required=True, metavar=("SHOULDER", "WRIST"))
    parser.add_argument("--points", type=int, default=11, help="poses on the path, both ends included")
    parser.add_argument("--random", type=int, default=200, help="random poses for the scale")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON file for the numbers")
    args = parser.parse_args(argv)
    if args.points < 2 or args.random < 1:
        parser.error("--points must be at least 2 and --random at least 1")
    try:
        result = landscape(args.checkpoint, np.array(args.goal), np.array(args.start), args.points, args.random,
                           args.seed)
    except LatentworldError as err:  # a missing or corrupt checkpoint, or a model of another system
        parser.error(str(err))
    print("cost on the path, start → goal:", " ".join(f"{c:.1f}" for c in result["path_cost"]))
    print("cost of random poses, 10 % / 50 % / 90 %:",
          " / ".join(f"{c:.1f}" for c in result["random_cost_quantiles"].values()))
    if args.out:
        atomic_write_bytes(args.out, (json.dumps(result, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
