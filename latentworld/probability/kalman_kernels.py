"""Fused CPU kernels for the Kalman filter and RTS smoother (``csrc/kalman_kernels.cpp``).

Eager torch spends about 30 tiny batched ops per filter step, each a few microseconds of dispatch;
the kernels do one update, one prediction, the whole RTS pass, or the whole filter per call (for a
transition that ignores z, and for the EKVAE's declared mixture, mixer included), forward and
backward, so
:func:`latentworld.probability.kalman.kalman_smoother` is several times faster on the CPU with the
same results. They are compiled with torch's C++ extension tooling (a C++ compiler and ninja)
the first time they are needed (about a minute), for this machine's CPU (``-march=native``), into
the cache folder ``$LATENTWORLD_CACHE`` (default ``~/.cache/latentworld``), and reused after. Where
no compiler is found, the smoother runs its eager torch form and a warning says so once;
``LATENTWORLD_KALMAN_KERNELS=0`` chooses the eager form without trying, and :func:`eager_only`
chooses it within a block (to compare the two).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

SOURCE = Path(__file__).with_name("csrc") / "kalman_kernels.cpp"
DISABLE_VARIABLE = "LATENTWORLD_KALMAN_KERNELS"
_eager_only = False


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$LATENTWORLD_CACHE`` or ``~/.cache/latentworld``."""
    return Path(os.environ.get("LATENTWORLD_CACHE") or Path.home() / ".cache" / "latentworld")


def build_dir() -> Path:
    """This machine's build folder: one per source, torch version and CPU, so an upgrade never loads a
    stale library and a cache shared by machines with different CPUs never loads code for
    instructions a CPU lacks."""
    key = hashlib.sha256(SOURCE.read_bytes() + torch.__version__.encode() + _cpu_signature()).hexdigest()[:12]
    return cache_dir() / f"kalman_kernels_{key}"


@functools.cache
def kernels() -> ModuleType | None:
    """The compiled kernels, building them on first use; None where they cannot be built or are
    switched off (``LATENTWORLD_KALMAN_KERNELS=0``)."""
    if os.environ.get(DISABLE_VARIABLE, "1") == "0":
        return None
    folder = build_dir()
    try:
        from torch.utils.cpp_extension import load

        folder.mkdir(parents=True, exist_ok=True)
        with _exclusive(folder / "latentworld.lock"):
            # torch marks a build in progress with a file named "lock" and waits for it to vanish; a
            # process killed inside load() leaves it behind, and every later load would wait forever.
            # Under our lock (which the OS releases when its holder dies) such a file is stale.
            (folder / "lock").unlink(missing_ok=True)
            if not any(folder.glob("*.so")):
                print(f"[latentworld] compiling the Kalman kernels into {folder} (once, about a minute)",
                      file=sys.stderr, flush=True)
            return load(name=f"latentworld_kalman_{folder.name.rsplit('_', 1)[1]}", sources=[str(SOURCE)],
                        build_directory=str(folder), extra_cflags=["-O3", "-march=native"], verbose=False)
    except (RuntimeError, OSError, ImportError, subprocess.SubprocessError) as err:
        # No compiler, no ninja, a read-only cache: the eager form still works.
        warnings.warn(f"the fused Kalman kernels could not be built ({type(err).__name__}: {err}); the Kalman "
                      f"smoother runs its eager torch form, several times slower on the CPU. Set "
                      f"{DISABLE_VARIABLE}=0 to skip the attempt.", RuntimeWarning, stacklevel=2)
        return None


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (POSIX ``flock``; no lock where the platform has none)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _cpu_signature() -> bytes:
    """The CPU's model and instruction-set flags (Linux), else the platform's description."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        first = {key: next((line for line in lines if line.startswith(key)), "") for key in ("model name", "flags")}
        return "".join(first.values()).encode()
    except OSError:
        return (platform.machine() + platform.processor()).encode()


@contextlib.contextmanager
def eager_only() -> Iterator[None]:
    """Within the block the Kalman smoother runs its eager torch form (to compare the two forms)."""
    global _eager_only
    previous, _eager_only = _eager_only, True
    try:
        yield
    finally:
        _eager_only = previous


def usable(*tensors: Tensor) -> bool:
    """Whether the fused kernels serve these inputs: all on the CPU, float32/float64, kernels built,
    not inside :func:`eager_only`."""
    return (not _eager_only
            and all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in tensors)
            and kernels() is not None)


def _zeros_if_none(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


class FusedUpdate(torch.autograd.Function):
    """``(mean (B, n), cov (B, n, n), a (B, d), H (d, n), R (d, d)) -> (mean', cov', log_lik (B,))``,
    the Joseph-form update of :func:`latentworld.probability.kalman.kalman_update` (R already jittered)."""

    @staticmethod
    def forward(ctx: FunctionCtx, mean: Tensor, cov: Tensor, a: Tensor, H: Tensor, R: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        new_mean, new_cov, log_lik, chol, gain_t, white = kernels().update_forward(mean, cov, a, H, R)
        ctx.save_for_backward(mean, cov, H, chol, gain_t, white)
        return new_mean, new_cov, log_lik

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g_mean: Tensor | None, g_cov: Tensor | None, g_ll: Tensor | None
                 ) -> tuple[Tensor, ...]:
        mean, cov, H, chol, gain_t, white = ctx.saved_tensors
        return tuple(kernels().update_backward(
            _zeros_if_none(g_mean, mean), _zeros_if_none(g_cov, cov), _zeros_if_none(g_ll, mean[:, 0]),
            mean, cov, H, chol, gain_t, white, ctx.needs_input_grad[3]))


class FusedPredict(torch.autograd.Function):
    """``(mean (B, n), cov (B, n, n), F (B, n, n), Bu (B, n, k), u (B, k), Q (B, n, n)) -> (F m + Bu u,
    F P F^T + Q)``, as :func:`latentworld.probability.kalman.kalman_predict` after the transition."""

    @staticmethod
    def forward(ctx: FunctionCtx, mean: Tensor, cov: Tensor, F: Tensor, Bu: Tensor, u: Tensor, Q: Tensor
                ) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(mean, cov, F, Bu, u)
        return tuple(kernels().predict_forward(mean, cov, F, Bu, u, Q))

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g_mean: Tensor | None, g_cov: Tensor | None) -> tuple[Tensor, ...]:
        mean, cov, F, Bu, u = ctx.saved_tensors
        return tuple(kernels().predict_backward(_zeros_if_none(g_mean, mean), _zeros_if_none(g_cov, cov),
                                                mean, cov, F, Bu, u))


class FusedFilter(torch.autograd.Function):
    """The whole filter in one call, for a transition that does not read the state: ``a (B, T, d)`` (T >= 2),
    step t's ``F (B, T-1, n, n)``, ``Bu (B, T-1, n, k)``, acting action ``u (B, T-1, k)``, ``Q (B, T-1, n, n)``,
    ``H``, ``R`` (already jittered), ``mean0 (B, n)``, ``cov0 (B, n, n)`` -> filtered mean ``(B, T, n)`` and
    cov ``(B, T, n, n)``, log-likelihood ``(B,)``, predicted mean ``(B, T-1, n)`` and cov ``(B, T-1, n, n)``.
    The same arithmetic as :class:`FusedUpdate` and :class:`FusedPredict` step by step, without returning to
    Python between steps."""

    @staticmethod
    def forward(ctx: FunctionCtx, a: Tensor, F: Tensor, Bu: Tensor, u: Tensor, Q: Tensor, H: Tensor, R: Tensor,
                mean0: Tensor, cov0: Tensor) -> tuple[Tensor, ...]:
        mean, cov, log_lik, pred_mean, pred_cov, chol, gain_t, white = kernels().filter_forward(
            a, F, Bu, u, Q, H, R, mean0, cov0)
        ctx.save_for_backward(F, Bu, u, H, mean0, cov0, mean, cov, pred_mean, pred_cov, chol, gain_t, white)
        return mean, cov, log_lik, pred_mean, pred_cov

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g_mean: Tensor | None, g_cov: Tensor | None, g_ll: Tensor | None,
                 g_pred_mean: Tensor | None, g_pred_cov: Tensor | None) -> tuple[Tensor | None, ...]:
        F, Bu, u, H, mean0, cov0, mean, cov, pred_mean, pred_cov, chol, gain_t, white = ctx.saved_tensors
        grads = kernels().filter_backward(
            _zeros_if_none(g_mean, mean), _zeros_if_none(g_cov, cov), _zeros_if_none(g_ll, mean[:, 0, 0]),
            _zeros_if_none(g_pred_mean, pred_mean), _zeros_if_none(g_pred_cov, pred_cov), F, Bu, u, H, mean0, cov0,
            mean, cov, pred_mean, pred_cov, chol, gain_t, white, ctx.needs_input_grad[5])
        return tuple(grads)


class FusedRts(torch.autograd.Function):
    """The RTS pass: filtered ``mean (B, T, n)``, ``cov (B, T, n, n)``, predicted ``pred_mean (B, T-1, n)``,
    ``pred_cov``, ``F``, ``Q (B, T-1, n, n)`` -> smoothed mean ``(B, T, n)`` and covariance ``(B, T, n, n)``."""

    @staticmethod
    def forward(ctx: FunctionCtx, mean: Tensor, cov: Tensor, pred_mean: Tensor, pred_cov: Tensor, F: Tensor,
                Q: Tensor) -> tuple[Tensor, Tensor]:
        smoothed_mean, smoothed_cov, gains, pred_chol = kernels().rts_forward(mean, cov, pred_mean, pred_cov, F, Q)
        ctx.save_for_backward(cov, pred_mean, pred_cov, F, smoothed_mean, smoothed_cov, gains, pred_chol)
        return smoothed_mean, smoothed_cov

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g_mean: Tensor | None, g_cov: Tensor | None) -> tuple[Tensor | None, ...]:
        cov, pred_mean, pred_cov, F, smoothed_mean, smoothed_cov, gains, pred_chol = ctx.saved_tensors
        grads = kernels().rts_backward(_zeros_if_none(g_mean, smoothed_mean), _zeros_if_none(g_cov, smoothed_cov),
                                       cov, pred_mean, pred_cov, F, smoothed_mean, smoothed_cov, gains, pred_chol)
        # Q reaches the smoothed belief only through pred_cov = F P F^T + Q (see the C++ file's header).
        return (*grads, None)


class FusedMixtureFilter(torch.autograd.Function):
    """The whole filter in one call for a :class:`~latentworld.probability.mixture_transition.MixtureTransition`
    (the EKVAE's): ``a (B, T, d)`` (T >= 2), ``v (B, T-1, dv)`` (what the mixer reads beside z at steps
    1..T-1, its first Du columns the actions), ``H``, ``R`` (already jittered), ``mean0 (B, n)``, ``cov0 (B, n,
    n)``, ``F_bases (M, n, n)``, ``B_bases (M, n, Du)``, ``Q_bases (M, n)``, then the mixer's weights and
    biases interleaved (``W_1, b_1, W_2, b_2, ...``) -> filtered mean ``(B, T, n)`` and cov ``(B, T, n, n)``,
    log-likelihood ``(B,)``, predicted mean ``(B, T-1, n)`` and cov, and the transition's ``F`` and ``Q``
    ``(B, T-1, n, n)`` (which the RTS pass reads). The same arithmetic as the filter step by step with
    :class:`FusedUpdate`, the mixture in torch and :class:`FusedPredict`, without returning to Python
    between steps and without an autograd record per op."""

    @staticmethod
    def forward(ctx: FunctionCtx, a: Tensor, v: Tensor, H: Tensor, R: Tensor, mean0: Tensor, cov0: Tensor,
                F_bases: Tensor, B_bases: Tensor, Q_bases: Tensor, *layers: Tensor) -> tuple[Tensor, ...]:
        weights, biases = list(layers[0::2]), list(layers[1::2])
        with torch.autocast("cpu", enabled=False):  # the mixer's products run in the inputs' dtype, as eagerly
            (mean, cov, log_lik, pred_mean, pred_cov, F, Q, chol, gain_t, white, Bu, alpha,
             *hidden) = kernels().mixture_filter_forward(a, v, H, R, mean0, cov0, F_bases, B_bases, Q_bases,
                                                         weights, biases)
        ctx.depth = len(weights)
        ctx.save_for_backward(v, H, mean0, cov0, mean, cov, pred_mean, pred_cov, chol, gain_t, white, F, Bu, alpha,
                              F_bases, B_bases, Q_bases, *weights, *hidden)
        return mean, cov, log_lik, pred_mean, pred_cov, F, Q

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g_mean: Tensor | None, g_cov: Tensor | None, g_ll: Tensor | None,
                 g_pred_mean: Tensor | None, g_pred_cov: Tensor | None, g_F: Tensor | None, g_Q: Tensor | None
                 ) -> tuple[Tensor | None, ...]:
        (v, H, mean0, cov0, mean, cov, pred_mean, pred_cov, chol, gain_t, white, F, Bu, alpha, F_bases, B_bases,
         Q_bases, *rest) = ctx.saved_tensors
        weights, hidden = rest[:ctx.depth], rest[ctx.depth:]
        g_a, g_v, g_H, g_R, g_mean0, g_cov0, g_F_bases, g_B_bases, g_Q_bases, *g_layers = kernels(
            ).mixture_filter_backward(
            _zeros_if_none(g_mean, mean), _zeros_if_none(g_cov, cov), _zeros_if_none(g_ll, mean[:, 0, 0]),
            _zeros_if_none(g_pred_mean, pred_mean), _zeros_if_none(g_pred_cov, pred_cov), _zeros_if_none(g_F, F),
            _zeros_if_none(g_Q, F), v, H, mean0, cov0, mean, cov, pred_mean, pred_cov, chol, gain_t, white, F, Bu,
            alpha, list(hidden), F_bases, B_bases, Q_bases, list(weights), ctx.needs_input_grad[2])
        g_weights, g_biases = g_layers[:ctx.depth], g_layers[ctx.depth:]
        interleaved = [g for pair in zip(g_weights, g_biases) for g in pair]
        return g_a, g_v, g_H, g_R, g_mean0, g_cov0, g_F_bases, g_B_bases, g_Q_bases, *interleaved
