"""Generate a sequence data set from a real environment.

``python -m envs.generate NAME [--out PATH] [--n-sequences N] [--seq-len T] [--action-repeat K]
[--action-hold H] [--seed S] [--test-fraction F] [--workers W] [--force] [--no-picture]``, NAME one
of pendulum, reacher_angles, reacher_rgb. Defaults come from :mod:`envs.specs` (pendulum 500 x 15 into
``data/pendulum.npz``, test fraction 0.2; reacher 2000 x 30, test fraction 0.1; action repeat:
pendulum 4, reacher 1).

Each sequence starts from a random state (uniform angles *and* angular velocities, set after the
task's reset) and applies uniformly random actions. Sequence i is drawn from child i of
``np.random.SeedSequence(seed)``, so the arrays are identical for a seed whatever the number of
worker processes. The file is written with :func:`latentworld.common.data.save_dataset`; beside it go
``NAME.png`` (sample sequences) and ``NAME_states.png`` (histograms of the true states).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from envs.action_repeat_study import angle_spread
from envs.real_env import RealEnv
from envs.rollout import init_worker, rollout_sequences, worker_rollout
from envs.specs import ENV_NAMES, get_spec

GENERATOR_VERSION = 1
_VERSIONED_PACKAGES = ("mujoco", "dm-control", "gymnasium", "shimmy", "numpy")


def _integer(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _integer(text, 1)


def _non_negative_int(text: str) -> int:
    return _integer(text, 0)


def _open_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (defaults of ``None`` mean: the env's spec default)."""
    parser = argparse.ArgumentParser(prog="python -m envs.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=ENV_NAMES, help="which environment")
    parser.add_argument("--out", type=Path, metavar="PATH", help="output .npz (default: data/NAME.npz)")
    parser.add_argument("--n-sequences", type=_positive_int, metavar="N",
                        help="sequences (default: pendulum 500, reacher 2000)")
    parser.add_argument("--seq-len", type=_positive_int, metavar="T",
                        help="frames per sequence (default: pendulum 15, reacher 30)")
    parser.add_argument("--action-repeat", type=_positive_int, metavar="K",
                        help="control steps of 0.02 s per frame (default: pendulum 4, reacher 1)")
    parser.add_argument("--action-hold", type=_positive_int, metavar="H",
                        help="frames each random action is held for (default: 1)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, metavar="S", help="random seed (default: 0)")
    parser.add_argument("--test-fraction", type=_open_fraction, metavar="F",
                        help="share of test sequences, in (0, 1) (default: pendulum 0.2, reacher 0.1)")
    parser.add_argument("--workers", type=_positive_int, default=1, metavar="W",
                        help="worker processes (default: 1)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    parser.add_argument("--no-picture", action="store_true", help="do not write the PNG pictures")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def split_indices(n: int, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random train/test split of ``range(n)`` with at least one sequence on each side.

    Returns:
        Sorted ``train`` and ``test`` int64 index arrays.
    """
    n_test = min(max(1, round(n * test_fraction)), n - 1)
    order = rng.permutation(n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def generate(name: str, n_sequences: int, seq_len: int, action_repeat: int, seed: int,
             workers: int = 1, action_hold: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Roll out ``n_sequences`` sequences, in ``workers`` processes, with a progress bar; each random
    action is held for ``action_hold`` frames.

    Returns:
        ``obs`` ``(N, T, ...)``, ``actions`` ``(N, T, Du)``, ``states`` ``(N, T, S)``.
    """
    seeds = np.random.SeedSequence(seed).spawn(n_sequences)
    # Small chunks keep the progress bar moving and the workers evenly loaded.
    chunk = max(1, min(25, math.ceil(n_sequences / (4 * workers))))
    tasks = [(seq_len, seeds[i: i + chunk], action_hold) for i in range(0, n_sequences, chunk)]
    outputs: list[np.ndarray] = []

    def store(start: int, part: tuple[np.ndarray, ...]) -> None:
        # Filled in place: concatenating the chunks would briefly need twice the memory
        # (reacher_rgb's images alone are 0.7 GB).
        if not outputs:
            outputs.extend(np.empty((n_sequences, *a.shape[1:]), a.dtype) for a in part)
        for out, array in zip(outputs, part, strict=True):
            out[start: start + len(array)] = array
        progress.update(len(part[0]))

    with tqdm(total=n_sequences, desc=f"{name} sequences", unit="seq") as progress:
        if workers == 1:
            env = RealEnv(name, action_repeat=action_repeat)
            try:
                for k, (length, chunk_seeds, hold) in enumerate(tasks):
                    store(k * chunk, rollout_sequences(env, length, chunk_seeds, hold))
            finally:
                env.close()
        else:
            # spawn, not fork: a forked child must not inherit a GL context or torch's threads.
            context = multiprocessing.get_context("spawn")
            with context.Pool(workers, initializer=init_worker, initargs=(name, action_repeat)) as pool:
                for k, part in enumerate(pool.imap(worker_rollout, tasks)):
                    store(k * chunk, part)
    obs, actions, states = outputs
    return obs, actions, states


def build_metadata(name: str, args: argparse.Namespace, states: np.ndarray) -> dict[str, Any]:
    """Everything needed to interpret and reproduce the data set (no timestamps: the metadata
    array, like the others, is identical for the same arguments)."""
    spec = get_spec(name)
    env = RealEnv(name, action_repeat=args.action_repeat)  # builds no GL context: nothing rendered
    try:
        control_dt, dt = env.control_timestep, env.dt
        low, high = env.action_space.low.tolist(), env.action_space.high.tolist()
    finally:
        env.close()
    n_joints = len(spec.joints)
    velocities = states[..., n_joints:].reshape(-1, n_joints)
    return {
        "env_id": spec.env_id,
        "name": name,
        "obs_type": spec.obs_type,
        "seed": args.seed,
        "action_repeat": args.action_repeat,
        "action_hold": args.action_hold,
        "image_size": spec.render.size if spec.obs_type == "image" else None,
        "channels": spec.render.channels if spec.obs_type == "image" else None,
        "n_sequences": args.n_sequences,
        "seq_len": args.seq_len,
        "control_timestep": control_dt,
        "dt": dt,
        "state_names": spec.state_names,
        "angle_state_dims": spec.angle_state_dims,
        "action_low": low,
        "action_high": high,
        "camera": spec.render.record(),
        "initial_state": {
            "angle_ranges": [list(r) for r in spec.joint_ranges],
            "max_velocity": spec.max_init_velocity,
        },
        "actions": "uniform in [action_low, action_high]",
        "generator": "envs.generate",
        "generator_version": GENERATOR_VERSION,
        "versions": {pkg: importlib.metadata.version(pkg) for pkg in _VERSIONED_PACKAGES},
        "test_fraction": args.test_fraction,
        "angle_spread": angle_spread(states, spec.angle_state_dims, spec.state_names),
        "velocity_range": {
            spec.state_names[n_joints + j]: [float(velocities[:, j].min()), float(velocities[:, j].max())]
            for j in range(n_joints)
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2: bad arguments or existing output)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    spec = get_spec(args.name)
    args.out = args.out or Path("data") / f"{args.name}.npz"
    args.n_sequences = args.n_sequences or spec.n_sequences
    args.seq_len = args.seq_len or spec.seq_len
    args.action_repeat = args.action_repeat or spec.action_repeat
    args.action_hold = args.action_hold or spec.action_hold
    args.test_fraction = args.test_fraction or spec.test_fraction
    if args.n_sequences < 2:
        parser.error("--n-sequences must be at least 2 (one train and one test sequence)")
    if args.seq_len < 2:
        parser.error("--seq-len must be at least 2 (a sequence needs a transition)")
    if args.out.exists() and not args.force:
        print(f"error: {args.out} already exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    # Imported here, not at the top: spawned workers re-import this module, and torch (through
    # latentworld.common.data) and matplotlib would add seconds to each worker's start.
    from latentworld.cli import describe
    from latentworld.common.errors import LatentworldError

    try:
        return _generate_and_save(args)
    except (LatentworldError, OSError) as err:
        if args.debug:
            raise
        print(f"error: {describe(err)}", file=sys.stderr)
        return 2


def _generate_and_save(args: argparse.Namespace) -> int:
    from envs.pictures import save_pictures
    from latentworld.common.data import save_dataset
    from latentworld.common.errors import ConfigError
    from latentworld.common.fileio import check_writable

    if args.out.suffix != ".npz":
        raise ConfigError(f"--out {args.out}: a data set is an .npz file")
    if args.out.is_dir():
        raise IsADirectoryError(21, "Is a directory (--out names the .npz file)", str(args.out))
    check_writable(args.out.parent)  # before minutes of generation, not after
    start = time.perf_counter()
    obs, actions, states = generate(args.name, args.n_sequences, args.seq_len, args.action_repeat,
                                    args.seed, args.workers, args.action_hold)
    # The split has its own stream, spawned after the sequences', so it never reuses their seeds.
    root = np.random.SeedSequence(args.seed)
    root.spawn(args.n_sequences)
    train, test = split_indices(args.n_sequences, args.test_fraction, np.random.default_rng(root.spawn(1)[0]))
    metadata = build_metadata(args.name, args, states)
    path = save_dataset(args.out, obs, actions, states, train, test, metadata, force=args.force)
    written = [path]
    if not args.no_picture:
        written += save_pictures(path, obs, states, metadata)
    elapsed = time.perf_counter() - start

    spread = ", ".join(f"{joint} median {s['window']['median']:.2f} (p10 {s['window']['p10']:.2f}, "
                       f"p90 {s['window']['p90']:.2f})" for joint, s in metadata["angle_spread"].items())
    velocity = ", ".join(f"{k} [{lo:.2f}, {hi:.2f}]" for k, (lo, hi) in metadata["velocity_range"].items())
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB): {len(train)} train + {len(test)} test "
          f"sequences x {args.seq_len} steps, action repeat {args.action_repeat} ({metadata['dt']:.2f} s/step)")
    print(f"|angle change| over a window (rad): {spread}")
    print(f"velocity range (rad/s): {velocity}")
    if len(written) > 1:
        print("pictures: " + ", ".join(str(p) for p in written[1:]))
    print(f"wall time {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
