"""The ``latentworld`` command: ``train``, ``evaluate``, ``imagine`` (data sets: ``python -m envs.generate``).

A bad input (config, data set, checkpoint, goal, output folder) or a failing disk ends the
command with one line on stderr, naming the file or option and what to do, and exit status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from latentworld.common.errors import ConfigError, GoalError, LatentworldError


def _train(args: argparse.Namespace) -> int:
    from latentworld.experiment.config import load_config
    from latentworld.training.trainer import Trainer

    config = load_config(args.config, args.set)
    trainer = Trainer(config, args.run_dir, resume=args.resume)
    print(f"[train] {args.run_dir}: {config.steps} steps from step {trainer.step}, data {config.data}, "
          f"schedule {config.schedule.kind}, {trainer.device.type} in {trainer.precision}")
    trainer.fit(progress=not args.no_progress)
    print(f"[train] done in {trainer.elapsed:.0f} s; checkpoint {Path(args.run_dir) / 'checkpoint'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from latentworld.evaluation.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, data=args.data, out_dir=args.out, seed=args.seed)
    print(result["table"])
    print(f"[evaluate] {result['identification']}")
    print(f"[evaluate] {result['out']}: eval.json, " + ", ".join(Path(f).name for f in result["figures"]))
    return 0


def _parse_goal(text: str | None) -> str | list[float] | None:
    """A goal file path, or comma-separated latent values (e.g. ``"0,1"`` or ``"3.0"``)."""
    if text is not None and not text.strip():
        raise GoalError("--goal is empty; give an image path or comma-separated latent values")
    if text is None or Path(text).is_file():
        return text
    if Path(text).exists():
        raise GoalError(f"--goal {text} is a folder; give an image file or comma-separated latent values")
    try:
        return [float(value) for value in text.split(",") if value.strip()]
    except ValueError:
        raise GoalError(f"--goal {text!r} is neither an existing file nor comma-separated numbers") from None


def _imagine(args: argparse.Namespace) -> int:
    from latentworld.common.fileio import check_writable, refuse_package_dir
    from latentworld.latent_envs.imagine import imagine

    if args.out is not None:  # checked before the rollouts
        if Path(args.out).suffix.lower() != ".png":
            raise ConfigError(f"--out {args.out}: name a .png file")
        refuse_package_dir(Path(args.out), "--out")
        check_writable(Path(args.out).parent)
    result = imagine(args.checkpoint, goal=_parse_goal(args.goal), reward=args.reward, episodes=args.episodes,
                     horizon=args.horizon, seed=args.seed, out=args.out)
    print(f"[imagine] {args.episodes} episodes of {args.horizon} steps, random actions: "
          f"mean return {result['mean_return']:.2f}" + (f"; frames {result['figure']}" if result["figure"] else ""))
    return 0


def positive_int(text: str) -> int:
    """argparse type of a count: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentworld", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", parents=[common], help="train a model on a data set")
    train.add_argument("--config", default=None, help="YAML preset, e.g. configs/pendulum_ekvae.yaml")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set steps=100 --set model.prior=normal")
    train.add_argument("--run-dir", required=True,
                       help="run directory to create (new or empty), or, with --resume, to continue")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --run-dir (same config) from its last checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    evaluate = sub.add_parser("evaluate", parents=[common], help="metrics table and figures of a checkpoint")
    evaluate.add_argument("checkpoint", help="training run or checkpoint directory, or a shipped pretrained name")
    evaluate.add_argument("--data", default=None, help="data set (default: the one it was trained on)")
    evaluate.add_argument("--out", default=None,
                          help="new or empty folder for eval.json and figures, or an earlier one of evaluate "
                               "(default: RUN/eval for a training run, else runs/evaluate/NAME)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.set_defaults(func=_evaluate)

    imagine = sub.add_parser("imagine", parents=[common],
                             help="random-action episodes in the latent env, decoded to frames")
    imagine.add_argument("checkpoint", help="training run or checkpoint directory, or a shipped pretrained name")
    imagine.add_argument("--goal", default=None, help="goal image path, or comma-separated latent values")
    imagine.add_argument("--reward", default="pos", choices=["pos", "vel", "state"],
                         help="pos/vel: toward a goal position/velocity (EKVAE); state: toward a whole goal z (any model)")
    imagine.add_argument("--episodes", type=positive_int, default=4)
    imagine.add_argument("--horizon", type=positive_int, default=30)
    imagine.add_argument("--seed", type=int, default=0)
    imagine.add_argument("--out", default=None, help="PNG of the decoded frames")
    imagine.set_defaults(func=_imagine)
    return parser


def describe(err: BaseException) -> str:
    """One line for a user-fixable error; an ``OSError`` names its file and the reason."""
    if isinstance(err, OSError) and err.strerror:
        where = f"{err.filename}: " if err.filename else ""
        return f"{where}{err.strerror}"
    return " ".join(str(err).split())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (LatentworldError, OSError) as err:
        if args.debug:
            raise
        print(f"latentworld {args.command}: error: {describe(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
