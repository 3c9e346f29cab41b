"""Time ``kalman_smoother`` forward and forward+backward for several sequence lengths: its fused CPU
kernels beside its eager torch form and dynamax's (JAX) linear-Gaussian smoother, in the same run.

Two transitions: a linear one (constant F, B, Q: the model dynamax's ``lgssm_smoother`` takes)
and the EKVAE's neurally linearised one (its mixer, an MLP of the state and the action, gives
softmax weights over M base matrices), declared as a ``MixtureTransition`` as the EKVAE declares
it and also as an undeclared callable (step by step). dynamax runs jit-compiled, vmapped over the batch, when JAX and dynamax
are installed (``pip install -e .[bench]``); without them the table shows the dynamax numbers
recorded in the last report. All variants are timed in interleaved rounds (see
:func:`interleaved_medians`), since this kind of machine has slow spells of seconds.

    python scripts/bench_kalman.py [--out-dir docs/results] [--reps 15] [--batch 64] [--device cuda]

Writes ``kalman_timing.json`` (machine-readable) and ``kalman_timing.md`` (a table) into
``--out-dir``; another batch size than 64 writes ``kalman_timing_batch<B>.*``, another device
``kalman_timing_<device>.*``.
"""

from __future__ import annotations

import argparse
import contextlib
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

from latentworld.models.networks import mlp
from latentworld.probability import kalman_kernels
from latentworld.probability.kalman import Transition, kalman_smoother
from latentworld.probability.mixture_transition import MixtureTransition


class LinearTransition(nn.Module):
    """Constant ``F``, ``B`` and ``Q = diag(softplus(q))``: a linear-Gaussian model."""

    def __init__(self, dz: int, du: int) -> None:
        super().__init__()
        self.F = nn.Parameter(torch.eye(dz) + 0.05 * torch.randn(dz, dz))
        self.B = nn.Parameter(0.1 * torch.randn(dz, du))
        self.q = nn.Parameter(torch.full((dz,), -3.0))

    def forward(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, (dz, du) = z.shape[0], self.B.shape
        Q = torch.diag_embed(nn.functional.softplus(self.q))
        return self.F.expand(b, dz, dz), self.B.expand(b, dz, du), Q.expand(b, dz, dz)


def ekvae_transition(dz: int, du: int, num_bases: int = 16, hidden: int = 64, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32) -> MixtureTransition:
    """The EKVAE's transition: ``F, B, diag Q = sum_m softmax(MLP([z, u]))_m (F_m, B_m, diag q_m)``, its
    mixer the EKVAE's (two hidden ReLU layers, :func:`latentworld.models.networks.mlp`)."""
    mixer = mlp(dz + du, hidden, num_bases).to(device, dtype)
    for parameter in mixer.parameters():  # larger than the default start, so that the mixture varies
        parameter.data.mul_(3.0)
    F_bases = (torch.eye(dz) + 0.05 * torch.randn(num_bases, dz, dz)).to(device, dtype).requires_grad_()
    B_bases = (0.1 * torch.randn(num_bases, dz, du)).to(device, dtype).requires_grad_()
    Q_bases = torch.full((num_bases, dz), 0.05, device=device, dtype=dtype).requires_grad_()
    return MixtureTransition.from_mlp(mixer, F_bases, B_bases, Q_bases)


def interleaved_medians(calls: dict[str, Callable[[], object]], reps: int, warmup: int) -> dict[str, float]:
    """Median ms of each call, timed in rounds: every round runs every call once, so that a slow spell
    of the machine (frequent here) falls on all of them alike instead of on whichever ran then. The
    order rotates by one call per round, so that no call always runs first or after the same other
    one (what runs before a call, a large one especially, can slow its first steps)."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for round_ in range(reps):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            fn = calls[name]
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


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


def kalman_form(eager: bool) -> contextlib.AbstractContextManager:
    """The Kalman smoother's eager form if ``eager``, else its default (the fused kernels on the CPU)."""
    return kalman_kernels.eager_only() if eager else contextlib.nullcontext()


def torch_calls(transition: Transition, inputs: tuple[Tensor, ...], eager: bool = False, **options: bool
                ) -> tuple[Callable[[], object], Callable[[], object], Tensor]:
    """The smoother's forward (building the graph, as in training) and forward+backward as calls to
    time, and its smoothed means ``(B, T, Dz)`` on the CPU; ``eager`` runs its eager torch form,
    ``options`` go to ``kalman_smoother`` (``linear_given_inputs``, ``parallel``)."""
    def sync() -> None:
        if inputs[0].is_cuda:
            torch.cuda.synchronize()

    def forward() -> Tensor:
        with kalman_form(eager):
            out = kalman_smoother(inputs[0], inputs[1], transition, *inputs[2:], **options)
        return out.smoothed_mean.sum() + out.log_likelihood.sum()

    def forward_backward() -> None:
        forward().backward()
        sync()

    with torch.no_grad(), kalman_form(eager):
        means = kalman_smoother(inputs[0], inputs[1], transition, *inputs[2:], **options).smoothed_mean
    return lambda: (forward(), sync()), forward_backward, means.cpu()


def no_graph_forward(transition: Transition, inputs: tuple[Tensor, ...]) -> Callable[[], object]:
    """The smoother's forward without the autograd graph, as evaluation and the real-env observer run it."""
    def call() -> None:
        with torch.no_grad():
            kalman_smoother(inputs[0], inputs[1], transition, *inputs[2:])
        if inputs[0].is_cuda:
            torch.cuda.synchronize()
    return call


def dynamax_calls(transition: LinearTransition, inputs: tuple[Tensor, ...]
                  ) -> tuple[Callable[[], object], Callable[[], object], Tensor]:
    """The same for dynamax's ``lgssm_smoother`` (jit, vmapped over the batch); the gradient is taken
    with respect to the observations, F, B, Q, H and R."""
    import jax
    import jax.numpy as jnp
    from dynamax.linear_gaussian_ssm.inference import (
        ParamsLGSSM,
        ParamsLGSSMDynamics,
        ParamsLGSSMEmissions,
        ParamsLGSSMInitial,
        lgssm_smoother,
    )

    def numpy(x: Tensor) -> jnp.ndarray:
        return jnp.asarray(x.detach().numpy())

    a, u, H, R, mean0, cov0 = map(numpy, inputs)
    # dynamax's z_{t+1} depends on inputs[t+1], ours on u[:, t]: shift the actions one step later.
    u = jnp.concatenate([jnp.zeros_like(u[:, :1]), u[:, :-1]], axis=1)
    F, Bm = numpy(transition.F), numpy(transition.B)
    Q = numpy(torch.diag(nn.functional.softplus(transition.q)))
    dz, da, du = F.shape[0], H.shape[0], Bm.shape[1]

    def smooth(a, F, Bm, Q, H, R):
        def one(a_b, u_b, m0, P0):
            params = ParamsLGSSM(
                initial=ParamsLGSSMInitial(m0, P0),
                dynamics=ParamsLGSSMDynamics(F, jnp.zeros(dz), Bm, Q),
                emissions=ParamsLGSSMEmissions(H, jnp.zeros(da), jnp.zeros((da, du)), R))
            post = lgssm_smoother(params, a_b, u_b)
            return post.smoothed_means, post.marginal_loglik
        return jax.vmap(one)(a, u, mean0, cov0)

    def objective(*args):
        means, log_lik = smooth(*args)
        return means.sum() + log_lik.sum()

    forward = jax.jit(smooth)
    gradient = jax.jit(jax.grad(objective, argnums=tuple(range(6))))
    args = (a, F, Bm, Q, H, R)
    return (lambda: jax.block_until_ready(forward(*args)), lambda: jax.block_until_ready(gradient(*args)),
            torch.from_numpy(jax.device_get(forward(*args)[0]).copy()))


def dynamax_available() -> bool:
    try:
        import dynamax  # noqa: F401
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def bench(T: int, args: argparse.Namespace, with_dynamax: bool) -> dict[str, float]:
    """One row: ours (linear, neurally linearised) and, if installed, dynamax (linear) at length T."""
    torch.manual_seed(0)
    inputs = kalman_inputs(args.batch, T, args.dz, args.da, args.du)
    linear = LinearTransition(args.dz, args.du).to(args.device)
    mixture = ekvae_transition(args.dz, args.du, args.num_bases, args.mixer_hidden, args.device)
    moved = tuple(x.detach().to(args.device).requires_grad_(x.requires_grad) for x in inputs)
    row: dict[str, float] = {"T": T}
    # The fused kernels serve the CPU; on a GPU both rows run the eager form. The linear model is run as
    # its user would declare it (linear given its inputs: the whole filter in one kernel call), and
    # also step by step, as a transition that may read z; the EKVAE's as the model declares it (a
    # MixtureTransition: the whole filter, mixer included, in one kernel call), and also step by step,
    # as an undeclared callable.
    def undeclared(z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return mixture(z, u)

    calls: dict[str, Callable[[], object]] = {}
    calls["linear_forward_ms"], calls["linear_forward_backward_ms"], ours = torch_calls(
        linear, moved, linear_given_inputs=True)
    calls["linear_stepwise_forward_ms"], calls["linear_stepwise_forward_backward_ms"], _ = torch_calls(linear, moved)
    calls["ekvae_forward_ms"], calls["ekvae_forward_backward_ms"], _ = torch_calls(mixture, moved)
    calls["ekvae_no_graph_forward_ms"] = no_graph_forward(mixture, moved)
    calls["ekvae_stepwise_forward_ms"], calls["ekvae_stepwise_forward_backward_ms"], _ = torch_calls(undeclared, moved)
    calls["linear_eager_forward_ms"], calls["linear_eager_forward_backward_ms"], eager = torch_calls(
        linear, moved, eager=True)
    calls["ekvae_eager_forward_ms"], calls["ekvae_eager_forward_backward_ms"], _ = torch_calls(
        mixture, moved, eager=True)
    row["max_abs_diff_smoothed_mean_fused_vs_eager"] = float((ours - eager).abs().max())
    calls["linear_parallel_forward_ms"], calls["linear_parallel_forward_backward_ms"], _ = torch_calls(
        linear, moved, parallel=True)
    if with_dynamax:
        calls["dynamax_forward_ms"], calls["dynamax_forward_backward_ms"], theirs = dynamax_calls(
            linear.cpu(), inputs)
        row["max_abs_diff_smoothed_mean_vs_dynamax"] = float((ours - theirs).abs().max())
    row |= interleaved_medians(calls, args.reps, args.warmup)
    return {key: value if key.startswith("max_abs_diff") else round(value, 3) for key, value in row.items()}


def recorded_dynamax(path: Path) -> dict[int, dict[str, float]]:
    """dynamax's rows from an earlier report (``{T: row}``), for a machine without JAX."""
    if not path.exists():
        return {}
    report = json.loads(path.read_text())
    return {row["T"]: {k: v for k, v in row.items() if k.startswith("dynamax")}
            for row in report.get("results", []) if "dynamax_forward_ms" in row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("docs/results"))
    parser.add_argument("--lengths", type=int, nargs="+", default=[15, 60, 240])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dz", type=int, default=5)
    parser.add_argument("--da", type=int, default=3)
    parser.add_argument("--du", type=int, default=1)
    parser.add_argument("--num-bases", type=int, default=16, help="M, as in the EKVAE presets")
    parser.add_argument("--mixer-hidden", type=int, default=64, help="the mixer's width, as in the EKVAE")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="torch device of our smoother (default cpu)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Other processes on the same cores inflate the timings; the load is recorded beside them.
    load_before = os.getloadavg()[0]
    on_cpu = torch.device(args.device).type == "cpu"
    stem = ("kalman_timing" + ("" if on_cpu else f"_{torch.device(args.device).type}")
            + ("" if args.batch == 64 else f"_batch{args.batch}"))
    with_dynamax = dynamax_available() and on_cpu  # dynamax's numbers are the CPU's
    recorded = {} if with_dynamax or not on_cpu else recorded_dynamax(args.out_dir / f"{stem}.json")

    rows = []
    for T in args.lengths:
        rows.append(bench(T, args, with_dynamax) | recorded.get(T, {}))
        print(rows[-1], flush=True)
    command = shlex.join(["python", "scripts/bench_kalman.py", *sys.argv[1:]])
    report = {
        "command": command,
        "config": {k: v for k, v in vars(args).items() if k != "out_dir"} | {"dtype": "float32"},
        "torch": torch.__version__,
        "device": args.device if on_cpu else torch.cuda.get_device_name(torch.device(args.device)),
        "dynamax": "measured in this run" if with_dynamax else "recorded in an earlier run" if recorded else None,
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
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")

    def ratio(row: dict[str, float], ours: str, theirs: str) -> str:
        return f"{row[ours] / row[theirs]:.1f}x" if theirs in row else "n/a"

    source = "measured in this run" if with_dynamax else (
        "recorded in an earlier run (JAX not installed here)" if recorded else "not run (CPU only)")
    def cells(r: dict[str, float], prefix: str) -> str:
        return (f"{r[f'{prefix}_forward_ms']:.2f} | {r[f'{prefix}_eager_forward_ms']:.2f} | "
                f"{ratio(r, f'{prefix}_forward_ms', 'dynamax_forward_ms')} | {r[f'{prefix}_forward_backward_ms']:.2f} | "
                f"{r[f'{prefix}_eager_forward_backward_ms']:.2f} | "
                f"{ratio(r, f'{prefix}_forward_backward_ms', 'dynamax_forward_backward_ms')}")

    header = ("| T | ours fwd (ms) | eager form fwd (ms) | ours / dynamax | ours fwd+bwd (ms) "
              "| eager form fwd+bwd (ms) | ours / dynamax |")
    rule = "|---:|---:|---:|---:|---:|---:|---:|"
    lines = [
        "# Kalman smoother timing",
        "",
        (
            f"`kalman_smoother` (filter + RTS smoother), float32, B={args.batch}, Dz={args.dz}, "
            f"Da={args.da}, Du={args.du}. *Ours*: as it runs by default (on the CPU, its fused C++ kernels); "
            f"*eager form*: the same smoother as eager torch ops (`kalman_kernels.eager_only()`). Median of "
            f"{args.reps} rounds after {args.warmup} warm-up rounds, each round timing every variant (dynamax "
            "too) once, so that the machine's slow spells fall on all alike; forward builds the autograd graph (as in "
            "training), forward+backward adds `(smoothed_mean.sum() + log_likelihood.sum()).backward()`. "
            f"dynamax: `lgssm_smoother` on the linear model, jit-compiled, vmapped over the batch, "
            f"its gradient by `jax.grad` of the same sum, {source}."
        ),
        "",
        (
            f"torch {torch.__version__} on {report['device']}, {torch.get_num_threads()} CPU threads, "
            f"{platform.platform()}, "
            f"{os.cpu_count()} CPUs, 1-minute load average {load_before:.2f} before the run."
        ),
        "",
        ("**Linear model** (constant F, B, Q), run as linear given its inputs (`linear_given_inputs=True`: "
         "the transition evaluated once, the whole filter in one call of the fused kernels):" if on_cpu else
         "**Linear model** (constant F, B, Q), eager form step by step (the fused kernels are the CPU's):"),
        "",
        "| T | dynamax fwd (ms) | dynamax grad (ms) " + header[4:],
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['T']} | {r.get('dynamax_forward_ms', float('nan')):.2f} | "
            f"{r.get('dynamax_forward_backward_ms', float('nan')):.2f} | {cells(r, 'linear')} |"
            for r in rows
        ),
        "",
        (f"**EKVAE model** (neurally linearised: the EKVAE's mixer, an MLP of the state and the action with two "
         f"hidden ReLU layers of {args.mixer_hidden}, gives softmax weights over {args.num_bases} base matrices F, B, "
         "Q; declared as a `MixtureTransition`, so that on the CPU the whole filter, mixer included, is one "
         "call of the fused kernels); the ratios are to dynamax's linear smoother, the nearest reference:"),
        "",
        header,
        rule,
        *(f"| {r['T']} | {cells(r, 'ekvae')} |" for r in rows),
        "",
        ("*EKVAE, forward without the autograd graph* (as evaluation runs it): "
         + "; ".join(f"T = {r['T']}: {r['ekvae_no_graph_forward_ms']:.2f} ms" + (
                         f" ({ratio(r, 'ekvae_no_graph_forward_ms', 'dynamax_forward_ms')} dynamax's forward)"
                         if "dynamax_forward_ms" in r else "") for r in rows)
         + "."),
        "",
        ("*Ours, step by step* (a transition the smoother knows nothing of: one kernel call per update and "
         "per prediction, the transition in Python between them), the linear model: "
         + "; ".join(f"T = {r['T']}: {r['linear_stepwise_forward_ms']:.2f} / "
                     f"{r['linear_stepwise_forward_backward_ms']:.2f} ms" for r in rows) + " (fwd / fwd+bwd); "
         "the EKVAE's mixture as an undeclared callable: "
         + "; ".join(f"T = {r['T']}: {r['ekvae_stepwise_forward_ms']:.2f} / "
                     f"{r['ekvae_stepwise_forward_backward_ms']:.2f} ms "
                     f"({ratio(r, 'ekvae_stepwise_forward_ms', 'dynamax_forward_ms')} / "
                     f"{ratio(r, 'ekvae_stepwise_forward_backward_ms', 'dynamax_forward_backward_ms')} dynamax)"
                     for r in rows) + "."),
        "",
        ("*Parallel* (our parallel-in-time form, `parallel=True`, linear model; meant for GPUs): "
         + "; ".join(f"T = {r['T']}: {r['linear_parallel_forward_ms']:.2f} / "
                     f"{r['linear_parallel_forward_backward_ms']:.2f} ms" for r in rows) + " (fwd / fwd+bwd)."),
        "",
        (f"Largest difference of the smoothed means, fused kernels against the eager form: "
         f"{max(r['max_abs_diff_smoothed_mean_fused_vs_eager'] for r in rows):.1e}"
         + (f"; against dynamax: {max(r['max_abs_diff_smoothed_mean_vs_dynamax'] for r in rows):.1e}."
            if with_dynamax else ".")),
        "",
        f"Produced by: `{command}`",
        "",
    ]
    (args.out_dir / f"{stem}.md").write_text("\n".join(lines))
    print(f"wrote {args.out_dir / stem}.json and .md")


if __name__ == "__main__":
    main()
