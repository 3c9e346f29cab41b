"""``python -m agents``: train a policy in the latent env, evaluate it in the real one.

    python -m agents train jomega --model pendulum_ekvae --task swingup --out runs/policies/swingup
    python -m agents train ppo|sac|mpc ...  [--set iterations=800 ...]
    python -m agents evaluate runs/policies/swingup --episodes 20 --first-seed 1000
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import traceback
from pathlib import Path
from typing import Any

import torch

from agents.saved_policy import METHODS, PolicyError, load_policy, save_policy
from latentworld.checkpoint import CheckpointError
from latentworld.data import DatasetError

DEFAULT_FIRST_SEED = 5000  # real-env evaluation seeds; tuning looked only at seeds 100-109 and 1000-1019


def apply_overrides(config_class: type, pairs: list[str], **fixed: Any) -> Any:
    """Build ``config_class`` from ``KEY=VALUE`` strings (numbers as in Python: ``1e-3``, ``800``)."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    values: dict[str, Any] = dict(fixed)
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE")
        if key not in fields:
            raise ValueError(f"--set {key}: unknown option; known: {', '.join(fields)}")
        default = getattr(config_class(), key)
        try:
            values[key] = int(text) if isinstance(default, int) else float(text)
        except ValueError:
            raise ValueError(f"--set {key}={text}: expected {'an integer' if isinstance(default, int) else 'a number'}") \
                from None
    return config_class(**values)


def _train(args: argparse.Namespace) -> int:
    from agents.problem import make_problem
    from agents.tasks import make_task

    out = Path(args.out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose another --out or remove it")
    torch.set_num_threads(args.threads)
    problem = make_problem(args.model, make_task(args.task, args.goal_velocity), noise_scale=args.noise_scale,
                           seed=args.seed, data=args.data)
    log_dir = out.parent / f".{out.name}.tb"
    progress = not args.no_progress
    if args.method == "jomega":
        from agents.jomega import JOmegaConfig, train_jomega

        config = apply_overrides(JOmegaConfig, args.set, seed=args.seed)
        policy, report = train_jomega(problem, config, log_dir, progress)
        settings, state = {"hidden": config.hidden}, policy.state_dict()
    elif args.method == "mpc":
        from agents.mpc import MPCConfig

        config = apply_overrides(MPCConfig, args.set, seed=args.seed)
        settings, state, report = dataclasses.asdict(config), None, {"train_seconds": 0.0}
    else:
        from agents.sb3 import SB3Config, train_sb3

        config = apply_overrides(SB3Config, args.set, seed=args.seed)
        actor, report = train_sb3(problem, args.method, config, log_dir, progress)
        settings, state = {}, actor.state_dict()
    save_policy(out, args.method, problem, settings, report, state)
    if log_dir.exists():
        log_dir.rename(out / "tb")
    best = report.get("best_validation_return")
    print(f"[agents] {args.method} policy saved to {out}" + (f" (best validation return {best:.1f}, "
          f"{report['train_seconds']:.0f} s)" if best is not None else ""))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from agents.evaluate import baselines, evaluate_controller, format_table, write_json, write_video

    torch.set_num_threads(args.threads)
    controller, problem, meta = load_policy(args.policy, model=args.model)
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    out = Path(args.out) if args.out else Path(args.policy) / "real_eval"
    result = evaluate_controller(problem, controller, seeds, meta["method"], not args.no_progress, record_first=True)
    results = [result] + ([] if args.no_baselines else baselines(problem, seeds, not args.no_progress))
    print(format_table(results))
    video = write_video(problem, result.pop("recording"), out / "episode.gif")
    report = {"policy": str(args.policy), "task": meta["task"], "model": meta["model"], "results": results}
    path = write_json(report, out / "real_eval.json")
    print(f"[agents] results {path}, video of seed {seeds[0]} {video}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agents", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a policy (or set up a planner) in the latent env")
    train.add_argument("method", choices=METHODS)
    train.add_argument("--model", default="pendulum_ekvae", help="model checkpoint directory or shipped name")
    train.add_argument("--task", default="swingup", choices=["swingup", "rotation"])
    train.add_argument("--goal-velocity", type=float, default=None, help="rotation goal in rad/s (default 5)")
    train.add_argument("--out", required=True, help="policy directory to create")
    train.add_argument("--data", default=None, help="data set of the start states (default: the model's own)")
    train.add_argument("--noise-scale", type=float, default=0.0,
                       help="process-noise scale of training rollouts (0 = mean dynamics)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting of the method, e.g. --set iterations=800")
    train.add_argument("--threads", type=int, default=1, help="torch threads")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(func=_train)

    evaluate = sub.add_parser("evaluate", help="run a saved policy in the real env beside random and zero actions")
    evaluate.add_argument("policy", help="policy directory")
    evaluate.add_argument("--model", default=None, help="model checkpoint (default: the policy's own)")
    evaluate.add_argument("--episodes", type=int, default=20)
    evaluate.add_argument("--first-seed", type=int, default=DEFAULT_FIRST_SEED,
                          help="episodes use seeds first-seed .. first-seed + episodes - 1")
    evaluate.add_argument("--out", default=None, help="folder for real_eval.json and episode.gif "
                          "(default: POLICY/real_eval)")
    evaluate.add_argument("--no-baselines", action="store_true", help="skip the random and zero-action rows")
    evaluate.add_argument("--threads", type=int, default=1, help="torch threads")
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(func=_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (PolicyError, CheckpointError, DatasetError, FileExistsError, FileNotFoundError, ValueError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"agents {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
