"""Benchmark: steps per second of the vector latent env at N = 1, 64, 1024, 4096 beside the real
dm_control pendulum (physics + 16×16 rendering), in one run.

    python scripts/bench_latent_env.py [--model pendulum_ekvae] [--seconds 3]

Writes ``docs/results/latent_env_speed.{json,md}``. Target: at N = 4096 at least 1000× the real
env's step rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

NUM_ENVS = (1, 64, 1024, 4096)
TARGET_RATIO = 1000.0


def timed_rate(step, budget: float, batch: int) -> float:
    """Env steps per second of ``step()`` (which advances ``batch`` envs), over at least ``budget`` s."""
    step()  # warm-up
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < budget or count < 3:
        step()
        count += 1
    return count * batch / elapsed


def real_env_rate(budget: float) -> float:
    from envs import make_env

    env = make_env("pendulum")
    env.reset(seed=0)
    rng = np.random.default_rng(0)

    def step() -> None:
        _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 1).astype(np.float32))
        if terminated or truncated:
            env.reset()

    rate = timed_rate(step, budget, 1)
    env.close()
    return rate


def latent_rate(model: str, num_envs: int, budget: float) -> float:
    import gymnasium as gym

    import latentworld  # noqa: F401

    venv = gym.make_vec("LatentPendulum-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                        model=model, horizon=1000)
    venv.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (num_envs, 1)).astype(np.float32)
    return timed_rate(lambda: venv.step(actions), budget, num_envs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pendulum_ekvae", help="checkpoint (default: the shipped pretrained one)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", default="docs/results")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    real = real_env_rate(args.seconds)
    latent = {n: latent_rate(args.model, n, args.seconds) for n in NUM_ENVS}
    ratios = {n: rate / real for n, rate in latent.items()}
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    command = f"python scripts/bench_latent_env.py --model {args.model} --seconds {args.seconds}"
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    met = ratios[max(NUM_ENVS)] >= TARGET_RATIO
    (out / "latent_env_speed.json").write_text(json.dumps(
        {"command": command, "machine": machine, "threads": args.threads, "real_env_steps_per_sec": real,
         "latent_steps_per_sec": latent, "ratio_to_real": ratios, "target_ratio_at_4096": TARGET_RATIO,
         "target_met": met, "load_average_before_after": [load_before, os.getloadavg()[0]]}, indent=2))
    lines = [(f"# Latent env speed\n\n`{command}` — {machine}, {args.threads} threads, "
              f"1-minute load average before/after {load_before:.2f}/{os.getloadavg()[0]:.2f}.\n"),
             "| env | N | steps/s | × real |", "|---|---:|---:|---:|",
             f"| real dm_control pendulum (physics + 16×16 render, action repeat 4) | 1 | {real:,.0f} | 1 |"]
    lines += [f"| LatentPendulum-v0 vector env | {n} | {latent[n]:,.0f} | {ratios[n]:,.0f} |" for n in NUM_ENVS]
    lines.append(f"\nTarget ≥ {TARGET_RATIO:,.0f}× at N = 4096: **{'met' if met else 'NOT met'}** "
                 f"({ratios[max(NUM_ENVS)]:,.0f}×).")
    (out / "latent_env_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
