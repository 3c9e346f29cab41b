"""How far do the angles move in one data window, per action repeat?

``python -m envs.action_repeat_study [NAME ...] [--repeats 1 2 3 4 5 6] [--windows 200]`` rolls out
random-action windows of the data set's length from the generator's random initial states and
prints, per repeat and joint, the spread (radians) of

- the net absolute change over the window, ``|wrap(q[T-1] - q[0])|`` (it folds back for swings
  and full turns, so it saturates near pi/2 on average);
- the path, ``sum_t |wrap(q[t+1] - q[t])|``, how much the joint moved in the window;
- the per-frame change ``|wrap(q[t+1] - q[t])|``: large per-frame steps make images ambiguous
  (at pi per frame the direction of rotation is lost).

The default repeat of each env (:mod:`envs.specs`) is the largest one whose env step is at most
80 ms (a sensible control rate, 12.5 Hz) and whose 99th percentile per-frame change stays below
pi/4. The generator calls :func:`angle_spread` for the repeat it uses and stores the result in the
data set's metadata.
"""

from __future__ import annotations

import argparse

import numpy as np

from envs.real_env import RealEnv, wrap_angle
from envs.rollout import rollout_sequences
from envs.specs import ENV_NAMES, get_spec

_PERCENTILES = (10, 50, 90, 99)


def angle_spread(states: np.ndarray, angle_dims: list[int], state_names: list[str]) -> dict[str, dict]:
    """Spread of the absolute angle change over windows, per angle column.

    Args:
        states: ``(N, T, S)`` true states (angles in radians).
        angle_dims: indices of the angle columns of ``states``.
        state_names: names of all state columns.

    Returns:
        ``{name: {"window": stats, "path": stats, "per_frame": stats}}``, stats ``mean``, ``median``,
        ``p10``/``p50``/``p90``/``p99``/``max`` in radians, plain floats (JSON-ready).
    """
    result = {}
    for dim in angle_dims:
        angles = states[:, :, dim].astype(np.float64)
        window = np.abs(wrap_angle(angles[:, -1] - angles[:, 0]))
        per_frame = np.abs(wrap_angle(np.diff(angles, axis=1)))
        result[state_names[dim]] = {
            "window": _stats(window),
            "path": _stats(per_frame.sum(axis=1)),
            "per_frame": _stats(per_frame.reshape(-1)),
        }
    return result


def _stats(values: np.ndarray) -> dict[str, float]:
    stats = {"mean": float(values.mean()), "median": float(np.median(values))}
    stats.update({f"p{q}": float(np.percentile(values, q)) for q in _PERCENTILES})
    stats["max"] = float(values.max())
    return stats


def rollout_states(name: str, action_repeat: int, n_windows: int, seq_len: int, seed: int) -> np.ndarray:
    """True states of random-action windows from random initial states, as the generator draws them.

    Returns:
        ``(n_windows, seq_len, S)`` float32.
    """
    env = RealEnv(name, action_repeat=action_repeat)
    try:
        _, _, states = rollout_sequences(env, seq_len, np.random.SeedSequence(seed).spawn(n_windows))
    finally:
        env.close()
    return states


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # No argparse `choices`: with nargs="*" Python 3.11 rejects the empty default.
    parser.add_argument("names", nargs="*", help=f"of {', '.join(ENV_NAMES)}; default: pendulum reacher_angles")
    parser.add_argument("--repeats", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(ENV_NAMES))
    if unknown:
        parser.error(f"unknown environment(s) {unknown}; choose from {', '.join(ENV_NAMES)}")
    for name in args.names or ["pendulum", "reacher_angles"]:
        spec = get_spec(name)
        env = RealEnv(name)
        control_dt = env.control_timestep
        env.close()
        print(f"{name}: windows of {spec.seq_len} frames; |dq| in radians; columns: repeat, env step, "
              "joint, window |dq| median/p10/p90, path median/p10, per-frame |dq| median/p99/max")
        for repeat in args.repeats:
            states = rollout_states(name, repeat, args.windows, spec.seq_len, args.seed)
            spread = angle_spread(states, spec.angle_state_dims, spec.state_names)
            for joint, s in spread.items():
                w, p, f = s["window"], s["path"], s["per_frame"]
                print(f"  {repeat:>2} {repeat * control_dt:5.2f}s {joint:>15} | {w['median']:5.2f} {w['p10']:5.2f} "
                      f"{w['p90']:5.2f} | {p['median']:5.2f} {p['p10']:5.2f} | {f['median']:5.2f} "
                      f"{f['p99']:5.2f} {f['max']:5.2f}")


if __name__ == "__main__":
    main()
