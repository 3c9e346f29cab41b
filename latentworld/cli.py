"""The ``latentworld`` command: ``train``, ``evaluate``, ``imagine`` (data sets: ``python -m envs.generate``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from latentworld.checkpoint import CheckpointError
from latentworld.data import DatasetError


def _train(args: argparse.Namespace) -> int:
    from latentworld.config import load_config
    from latentworld.train import Trainer

    config = load_config(args.config, args.set)
    trainer = Trainer(config, args.run_dir, resume=args.resume)
    print(f"[train] {args.run_dir}: {config.steps} steps, data {config.data}, schedule {config.schedule.kind}")
    trainer.fit(progress=not args.no_progress)
    print(f"[train] done in {trainer.elapsed:.0f} s; checkpoint {args.run_dir}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from latentworld.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, data=args.data, out_dir=args.out, seed=args.seed)
    print(result["table"])
    print("[evaluate] figures: " + ", ".join(result["figures"]))
    return 0


def _parse_goal(text: str | None) -> str | list[float] | None:
    """A goal file path, or comma-separated latent values (e.g. ``"0,1"`` or ``"3.0"``)."""
    if text is None or Path(text).exists():
        return text
    try:
        return [float(value) for value in text.split(",") if value.strip()]
    except ValueError:
        raise FileNotFoundError(f"goal {text!r} is neither an existing file nor comma-separated numbers") from None


def _imagine(args: argparse.Namespace) -> int:
    from latentworld.imagine import imagine

    result = imagine(args.checkpoint, goal=_parse_goal(args.goal), reward=args.reward, episodes=args.episodes,
                     horizon=args.horizon, seed=args.seed, out=args.out)
    print(f"[imagine] {args.episodes} episodes of {args.horizon} steps, random actions: "
          f"mean return {result['mean_return']:.2f}" + (f"; frames {result['figure']}" if result["figure"] else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentworld", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model on a data set")
    train.add_argument("--config", default=None, help="YAML preset, e.g. configs/pendulum_ekvae.yaml")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set steps=100 --set model.prior=normal")
    train.add_argument("--run-dir", required=True, help="checkpoint directory to create (or resume)")
    train.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    evaluate = sub.add_parser("evaluate", help="metrics table and figures of a checkpoint")
    evaluate.add_argument("checkpoint", help="checkpoint directory (or a shipped pretrained name)")
    evaluate.add_argument("--data", default=None, help="data set (default: the one it was trained on)")
    evaluate.add_argument("--out", default=None, help="folder for eval.json and figures (default: checkpoint)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.set_defaults(func=_evaluate)

    imagine = sub.add_parser("imagine", help="random-action episodes in the latent env, decoded to frames")
    imagine.add_argument("checkpoint", help="checkpoint directory (or a shipped pretrained name)")
    imagine.add_argument("--goal", default=None, help="goal image path, or comma-separated latent values")
    imagine.add_argument("--reward", default="pos", choices=["pos", "vel"])
    imagine.add_argument("--episodes", type=int, default=4)
    imagine.add_argument("--horizon", type=int, default=30)
    imagine.add_argument("--seed", type=int, default=0)
    imagine.add_argument("--out", default=None, help="PNG of the decoded frames")
    imagine.set_defaults(func=_imagine)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DatasetError, CheckpointError, FileExistsError, FileNotFoundError, ValueError, TypeError) as err:
        print(f"latentworld {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
