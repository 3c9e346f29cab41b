"""Time ``kalman_smoother`` forward and forward+backward for several sequence lengths.

The transition is a small state-dependent one like the EKVAE's: a tiny MLP of the state
gives softmax weights over M base matrices (F, B) and the noise is a learnt diagonal.

    python scripts/bench_kalman.py [--out-dir docs/results] [--reps 7]

Writes ``kalman_timing.json`` (machine-readable) and ``kalman_timing.md`` (a table) into
``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from latentworld.probability.kalman import kalman_smoother


class MixtureTransition(nn.Module):
    """``F, B = sum_k softmax(MLP(z))_k (F_k, B_k)``; ``Q = diag(softplus(q))``."""

    def __init__(self, dz: int, du: int, num_bases: int = 8, hidden: int = 32) -> None:
        super().__init__()
        self.alpha = nn.Sequential(nn.Linear(dz, hidden), nn.ReLU(), nn.Linear(hidden, num_bases))
        self.F = nn.Parameter(torch.eye(dz) + 0.05 * torch.randn(num_bases, dz, dz))
        self.B = nn.Parameter(0.1 * torch.randn(num_bases, dz, du))
        self.q = nn.Parameter(torch.full((dz,), -3.0))

    def forward(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        weights = torch.softmax(self.alpha(z), -1)  # (B, M)
        b, (dz, du) = z.shape[0], self.B.shape[1:]
        F = (weights @ self.F.flatten(1)).view(b, dz, dz)
        Bu = (weights @ self.B.flatten(1)).view(b, dz, du)
        return F, Bu, torch.diag_embed(nn.functional.softplus(self.q)).expand(b, dz, dz)


def median_ms(fn: Callable[[], object], reps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def kalman_inputs(B: int, T: int, dz: int, da: int, du: int, dtype: torch.dtype = torch.float32
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Random smoother inputs ``a (B, T, Da), u (B, T, Du), H, R, mean0 (B, Dz), cov0 (B, Dz, Dz)``;
    all but u require gradients, as in training."""
    a = torch.randn(B, T, da, dtype=dtype, requires_grad=True)
    u = torch.randn(B, T, du, dtype=dtype)
    H = (0.5 * torch.randn(da, dz, dtype=dtype)).requires_grad_()
    R = (0.1 * torch.eye(da, dtype=dtype)).requires_grad_()
    mean0 = torch.zeros(B, dz, dtype=dtype, requires_grad=True)
    cov0 = torch.eye(dz, dtype=dtype).expand(B, dz, dz).clone().requires_grad_()
    return a, u, H, R, mean0, cov0


def bench(T: int, args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(0)
    transition = MixtureTransition(args.dz, args.du, args.num_bases)
    a, u, H, R, mean0, cov0 = kalman_inputs(args.batch, T, args.dz, args.da, args.du)

    def forward() -> Tensor:
        out = kalman_smoother(a, u, transition, H, R, mean0, cov0)
        return out.smoothed_mean.sum() + out.log_likelihood.sum()

    fwd = median_ms(forward, args.reps, args.warmup)
    fwd_bwd = median_ms(lambda: forward().backward(), args.reps, args.warmup)
    return {
        "T": T,
        "forward_ms": round(fwd, 3),
        "forward_backward_ms": round(fwd_bwd, 3),
        "forward_ms_per_step": round(fwd / T, 4),
        "forward_backward_ms_per_step": round(fwd_bwd / T, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("docs/results"))
    parser.add_argument("--lengths", type=int, nargs="+", default=[15, 60, 240])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dz", type=int, default=5)
    parser.add_argument("--da", type=int, default=3)
    parser.add_argument("--du", type=int, default=1)
    parser.add_argument("--num-bases", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Other processes on the same cores inflate the timings; the load is recorded beside them.
    load_before = os.getloadavg()[0]

    rows = [bench(T, args) for T in args.lengths]
    for row in rows:
        print(row)
    first, last = rows[0], rows[-1]
    ratios = {
        key: round(last[key] / first[key], 3)
        for key in ("forward_ms_per_step", "forward_backward_ms_per_step")
    }
    command = shlex.join(["python", "scripts/bench_kalman.py", *sys.argv[1:]])
    report = {
        "command": command,
        "config": {k: v for k, v in vars(args).items() if k != "out_dir"} | {"dtype": "float32"},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average_1min_before": round(load_before, 2),
        },
        "results": rows,
        f"per_step_ratio_T{last['T']}_vs_T{first['T']}": ratios,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "kalman_timing.json").write_text(json.dumps(report, indent=2) + "\n")

    ratio = ratios["forward_backward_ms_per_step"]
    verdict = "linear in T" if 0.75 <= ratio <= 1.33 else "NOT linear in T"
    lines = [
        "# Kalman smoother timing",
        "",
        (
            f"`kalman_smoother` (filter + RTS smoother), float32, B={args.batch}, Dz={args.dz}, "
            f"Da={args.da}, Du={args.du}, state-dependent transition (MLP -> softmax over "
            f"{args.num_bases} base matrices). Median of {args.reps} runs after {args.warmup} warm-up "
            "runs; forward builds the autograd graph (as in training), forward+backward adds "
            "`(smoothed_mean.sum() + log_likelihood.sum()).backward()`."
        ),
        "",
        (
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.platform()}, "
            f"{os.cpu_count()} CPUs, 1-minute load average {load_before:.2f} before the run."
        ),
        "",
        "| T | forward (ms) | fwd+bwd (ms) | forward per step (ms) | fwd+bwd per step (ms) |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {r['T']} | {r['forward_ms']:.2f} | {r['forward_backward_ms']:.2f} | "
            f"{r['forward_ms_per_step']:.3f} | {r['forward_backward_ms_per_step']:.3f} |"
            for r in rows
        ),
        "",
        (
            f"Per-step time at T={last['T']} vs T={first['T']}: "
            f"forward x{ratios['forward_ms_per_step']:.2f}, fwd+bwd x{ratio:.2f}, so the cost is {verdict}."
        ),
        "",
        f"Produced by: `{command}`",
        "",
    ]
    (args.out_dir / "kalman_timing.md").write_text("\n".join(lines))
    print(f"wrote {args.out_dir / 'kalman_timing.json'} and {args.out_dir / 'kalman_timing.md'}")


if __name__ == "__main__":
    main()
