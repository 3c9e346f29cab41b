"""Batched, differentiable Kalman filter and Rauch-Tung-Striebel smoother.

The state-space model (as in the extended Kalman VAE) is

    z_{t+1} = F(m_t, u_t) z_t + B(m_t, u_t) u_t + N(0, Q(m_t, u_t)),    a_t = H z_t + N(0, R),

where the transition matrices are *neurally linearised*: a network is evaluated once per
time step at the filtered mean ``m_t = m_{t|t}`` and the action ``u_t`` (which acts between
frames t and t+1, so the last action is never used). A linear system is a ``transition``
that ignores ``z``.

Everything is batched over ``B`` and differentiable with respect to every input and the
transition's parameters. On the CPU :func:`kalman_smoother` runs its steps through fused C++
kernels with their own backward passes (:mod:`latentworld.probability.kalman_kernels`); elsewhere,
or where those cannot be built, as eager torch ops. Both compute the same formulas. Covariances
are kept symmetric and positive definite with a Joseph-form filter update, a Joseph-form smoother
step and a small jitter on the innovation covariance; nothing is ever inverted (Cholesky factors
and solves only).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from latentworld.probability import kalman_kernels
from latentworld.probability.mixture_transition import MixtureTransition

Transition = Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]
"""``transition(z (B, Dz), u (B, Du)) -> (F (B, Dz, Dz), Bu (B, Dz, Du), Q (B, Dz, Dz))``.

All three must carry the batch dimension; a time-invariant matrix can be ``expand``-ed to it
for free."""

_LOG_2PI = math.log(2.0 * math.pi)


class KalmanResult(NamedTuple):
    """Output of :func:`kalman_smoother`.

    Attributes:
        filtered_mean: ``(B, T, Dz)`` mean of ``p(z_t | a_{1:t}, u_{1:t-1})``.
        filtered_cov: ``(B, T, Dz, Dz)`` its covariance.
        smoothed_mean: ``(B, T, Dz)`` mean of ``p(z_t | a_{1:T}, u_{1:T-1})``.
        smoothed_cov: ``(B, T, Dz, Dz)`` its covariance.
        log_likelihood: ``(B,)`` ``log p(a_{1:T} | u)``, the sum of the innovation terms
            ``log N(a_t; H m_{t|t-1}, H P_{t|t-1} H^T + R)``.
    """

    filtered_mean: Tensor
    filtered_cov: Tensor
    smoothed_mean: Tensor
    smoothed_cov: Tensor
    log_likelihood: Tensor


def default_jitter(dtype: torch.dtype) -> float:
    """Jitter added to the innovation covariance: ``10 * eps``, about 1e-6 in float32.

    Scaling with the machine epsilon keeps float32 factorisations safe while leaving float64
    results exact to ~1e-15.
    """
    return 10.0 * torch.finfo(dtype).eps


def _symmetrise(cov: Tensor) -> Tensor:
    # Exactly symmetric in floating point, since addition commutes.
    return 0.5 * (cov + cov.mT)


def _symmetric_baddbmm(x: Tensor, b1: Tensor, b2: Tensor) -> Tensor:
    """``_symmetrise(x + b1 @ b2)`` in two ops (a hot path): baddbmm forms half the sum (halving
    is exact in floating point) and adding the transpose makes it exactly symmetric."""
    half = torch.baddbmm(x, b1, b2, beta=0.5, alpha=0.5)
    return half + half.mT


def _jittered(R: Tensor, jitter: float | None) -> Tensor:
    eps = default_jitter(R.dtype) if jitter is None else jitter
    return R + eps * torch.eye(R.shape[-1], dtype=R.dtype, device=R.device)


def _update(
    mean: Tensor, cov: Tensor, a: Tensor, H: Tensor, R: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`kalman_update` with ``R`` already jittered (the smoother jitters it once, not per step).

    Returns:
        ``(mean (B, Dz), cov (B, Dz, Dz), innovation (B, Da, 1), chol (B, Da, Da))`` where
        ``chol`` is the Cholesky factor of the innovation covariance; the log-likelihood is
        left to :func:`_innovation_log_lik` so the smoother can evaluate it for all t at once.
    """
    HP = H @ cov  # (B, Da, Dz)
    chol = torch.linalg.cholesky(HP @ H.mT + R)  # innovation covariance S = L L^T
    gain_t = torch.cholesky_solve(HP, chol)  # K^T = S^{-1} H P, (B, Da, Dz)
    innovation = (a - mean @ H.mT).unsqueeze(-1)  # (B, Da, 1)
    mean = torch.baddbmm(mean.unsqueeze(-2), innovation.mT, gain_t).squeeze(-2)  # m + K y
    # Joseph form (I - KH) P (I - KH)^T + K R K^T: a sum of PSD terms, so it stays positive
    # definite under rounding where the shorter P - K H P turns indefinite in float32.
    gain = gain_t.mT
    a_mat = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device) - gain @ H
    cov = _symmetric_baddbmm(a_mat @ cov @ a_mat.mT, gain @ R, gain_t)
    return mean, cov, innovation, chol


def _innovation_log_lik(innovation: Tensor, chol: Tensor) -> Tensor:
    """``log N(y; 0, L L^T)`` for innovations ``y (..., Da, 1)`` and factors ``L (..., Da, Da)``."""
    white = torch.linalg.solve_triangular(chol, innovation, upper=False)  # L^{-1} y
    half_log_det = chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # log|S| / 2
    return -0.5 * (white.square().sum((-2, -1)) + innovation.shape[-2] * _LOG_2PI) - half_log_det


def kalman_update(
    mean: Tensor, cov: Tensor, a: Tensor, H: Tensor, R: Tensor, *, jitter: float | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Condition a Gaussian belief on one observation ``a = H z + N(0, R)``.

    Args:
        mean: ``(B, Dz)`` prior mean.
        cov: ``(B, Dz, Dz)`` prior covariance.
        a: ``(B, Da)`` observation.
        H: ``(Da, Dz)`` observation matrix.
        R: ``(Da, Da)`` observation noise covariance.
        jitter: added to the diagonal of the innovation covariance; ``None`` uses
            :func:`default_jitter` of the dtype.

    Returns:
        ``(mean (B, Dz), cov (B, Dz, Dz), log_lik (B,))``, the posterior and the innovation
        log-likelihood ``log N(a; H mean, H cov H^T + R)``.
    """
    mean, cov, innovation, chol = _update(mean, cov, a, H, _jittered(R, jitter))
    return mean, cov, _innovation_log_lik(innovation, chol)


def kalman_predict(
    mean: Tensor, cov: Tensor, u: Tensor, transition: Transition
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Propagate a belief one step, linearising the transition at ``mean``.

    Args:
        mean: ``(B, Dz)`` filtered mean at t (the linearisation point).
        cov: ``(B, Dz, Dz)`` filtered covariance at t.
        u: ``(B, Du)`` action acting between t and t+1.
        transition: the linearised dynamics, called exactly once.

    Returns:
        ``(mean (B, Dz), cov (B, Dz, Dz), F (B, Dz, Dz), Q (B, Dz, Dz))``: the prediction for
        t+1 and the transition and noise matrices used, which the smoother reuses.
    """
    F, Bu, Q = transition(mean, u)
    return (*_predict(mean, cov, F, Bu, u, Q), F, Q)


def _predict(mean: Tensor, cov: Tensor, F: Tensor, Bu: Tensor, u: Tensor, Q: Tensor) -> tuple[Tensor, Tensor]:
    """``(F m + Bu u, F P F^T + Q)`` for given matrices; shapes as in :func:`kalman_predict`."""
    mean = torch.baddbmm(Bu @ u.unsqueeze(-1), F, mean.unsqueeze(-1)).squeeze(-1)
    return mean, _symmetric_baddbmm(Q, F @ cov, F.mT)


def kalman_filter_step(
    mean: Tensor,
    cov: Tensor,
    u_prev: Tensor,
    a: Tensor,
    transition: Transition,
    H: Tensor,
    R: Tensor,
    *,
    jitter: float | None = None,
) -> tuple[Tensor, Tensor]:
    """One online filter step: predict from the belief at t-1 with ``u_{t-1}``, update with ``a_t``.

    Args:
        mean: ``(B, Dz)`` filtered mean at t-1.
        cov: ``(B, Dz, Dz)`` filtered covariance at t-1.
        u_prev: ``(B, Du)`` action taken at t-1.
        a: ``(B, Da)`` observation at t.
        transition: the linearised dynamics, evaluated at ``mean``.
        H: ``(Da, Dz)`` observation matrix.
        R: ``(Da, Da)`` observation noise covariance.
        jitter: see :func:`kalman_update`.

    Returns:
        ``(mean (B, Dz), cov (B, Dz, Dz))``, the filtered belief at t.
    """
    mean, cov, _, _ = kalman_predict(mean, cov, u_prev, transition)
    mean, cov, _, _ = _update(mean, cov, a, H, _jittered(R, jitter))
    return mean, cov


def _smoothing_offsets(filtered_mean: Tensor, filtered_cov: Tensor, pred_mean: Tensor, pred_cov: Tensor,
                       F: Tensor, Q: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The parts of every RTS step that do not depend on the smoothed belief, for all t at once:

    - gain ``G_t = P_t F_t^T P_{t+1|t}^{-1}``;
    - so that ``m^s_t = G_t m^s_{t+1} + o_t`` and ``P^s_t = G_t P^s_{t+1} G_t^T + c_t``, the offsets
      ``o_t = m_t - G_t m_{t+1|t}`` and ``c_t = Cov(z_t | z_{t+1}, a_{1:t})``, the latter in Joseph form
      ``(I - G F) P (I - G F)^T + G Q G^T``: a sum of PSD terms rather than the cancellation-prone
      ``P_t - G_t P_{t+1|t} G_t^T``.

    Args: filtered_mean ``(B, T, Dz)``, filtered_cov ``(B, T, Dz, Dz)``, pred_mean ``(B, T-1, Dz)`` and
    pred_cov ``(B, T-1, Dz, Dz)`` (of z_{t+1} given a_{1:t}), F and Q ``(B, T-1, Dz, Dz)``.

    Returns: G and its transpose ``(B, T-1, Dz, Dz)`` (both, so the smoother's loop reuses the very
    tensors the offsets were built from), o ``(B, T-1, Dz, 1)``, c ``(B, T-1, Dz, Dz)``.
    """
    P = filtered_cov[:, :-1]
    gain_t = torch.cholesky_solve(F @ P, torch.linalg.cholesky(pred_cov))  # G^T
    gain = gain_t.mT
    a_mat = torch.eye(F.shape[-1], dtype=F.dtype, device=F.device) - gain @ F
    offsets_cov = a_mat @ P @ a_mat.mT + gain @ Q @ gain_t
    offsets_mean = filtered_mean[:, :-1].unsqueeze(-1) - gain @ pred_mean.unsqueeze(-1)
    return gain, gain_t, offsets_mean, offsets_cov


def _check_shape(name: str, x: Tensor, labels: str, dims: dict[str, int], dtype: torch.dtype) -> None:
    names = labels.split()
    expected = tuple(dims.get(n) for n in names)
    if x.ndim != len(names) or any(e is not None and s != e for s, e in zip(x.shape, expected)):
        shown = ", ".join(str(dims.get(n, n)) for n in names)
        raise ValueError(f"{name} must have shape ({', '.join(names)}) = ({shown}), got {tuple(x.shape)}")
    if x.dtype != dtype:
        raise ValueError(f"{name} has dtype {x.dtype}, but a has {dtype}; all inputs must share one dtype")


def kalman_smoother(
    a: Tensor,
    u: Tensor,
    transition: Transition,
    H: Tensor,
    R: Tensor,
    mean0: Tensor,
    cov0: Tensor,
    *,
    jitter: float | None = None,
    linear_given_inputs: bool = False,
    parallel: bool = False,
) -> KalmanResult:
    """Kalman filter forward, RTS smoother backward, with neural linearisation.

    The transition is evaluated once per forward step, at the filtered mean ``m_{t|t}`` and
    ``u_t`` (a declared mixture inside the fused kernel, any other transition by a call); the
    backward pass reuses those matrices.

    With ``linear_given_inputs=True`` the caller declares that the transition does not read z (a
    linear system, the KVAE); where the fused kernels run (the CPU, T >= 2) the transition is then
    called once for all steps (with zeros for z) and the whole filter runs in one kernel call, with
    no Python between steps; elsewhere the flag changes nothing. A
    :class:`~latentworld.probability.mixture_transition.MixtureTransition` (the EKVAE's) is known to the
    fused kernels too: its whole filter, the mixer included, runs in one call. With ``parallel=True`` (only for
    such a transition, declared or not) both passes run as associative scans in ``ceil(log2 T)``
    rounds (:mod:`latentworld.probability.parallel_kalman`), much faster for long sequences on a
    GPU. The results are the same up to rounding.

    Args:
        a: ``(B, T, Da)`` pseudo-observations.
        u: ``(B, T, Du)`` actions; ``u[:, t]`` acts between t and t+1, ``u[:, -1]`` is unused.
        transition: the linearised dynamics (see :data:`Transition`).
        H: ``(Da, Dz)`` observation matrix.
        R: ``(Da, Da)`` observation noise covariance.
        mean0: ``(B, Dz)`` prior mean of ``z_1`` (the first step is an update only).
        cov0: ``(B, Dz, Dz)`` prior covariance of ``z_1``.
        jitter: see :func:`kalman_update`.
        linear_given_inputs: the transition ignores z (the fused kernels evaluate it once for all steps).
        parallel: run the parallel-in-time form (only for a transition that ignores z).

    Returns:
        A :class:`KalmanResult` in the dtype of ``a``.

    Raises:
        ValueError: if the shapes or dtypes of the inputs do not fit together.
    """
    if a.ndim != 3 or a.shape[1] == 0:
        raise ValueError(f"a must have shape (B, T, Da) with T >= 1, got {tuple(a.shape)}")
    if mean0.ndim != 2:
        raise ValueError(f"mean0 must have shape (B, Dz), got {tuple(mean0.shape)}")
    dims = dict(zip(("B", "T", "Da"), a.shape), Dz=mean0.shape[1])
    for name, x, labels in (
        ("u", u, "B T Du"),
        ("H", H, "Da Dz"),
        ("R", R, "Da Da"),
        ("mean0", mean0, "B Dz"),
        ("cov0", cov0, "B Dz Dz"),
    ):
        _check_shape(name, x, labels, dims, a.dtype)

    R = _jittered(R, jitter)
    if parallel:
        from latentworld.probability.parallel_kalman import (
            parallel_kalman_smoother,  # it builds on this module
        )

        return parallel_kalman_smoother(a, u, transition, H, R, mean0, cov0)
    fused = kalman_kernels.usable(a, u, H, R, mean0, cov0)
    if fused and linear_given_inputs and a.shape[1] > 1:
        return _fused_sequence_smoother(a, u, transition, H, R, mean0, cov0)
    if (fused and isinstance(transition, MixtureTransition) and a.shape[1] > 1
            and kalman_kernels.usable(*transition.tensors())):
        return _fused_mixture_smoother(a, u, transition, H, R, mean0, cov0)
    if fused:  # one kernel call per update and per prediction
        passed = _filter_pass(a, u, transition, mean0, cov0,
                              lambda mean, cov, a_t: kalman_kernels.FusedUpdate.apply(mean, cov, a_t, H, R),
                              kalman_kernels.FusedPredict.apply)
        log_likelihood = torch.stack(passed.scores, 1).sum(-1)
    else:
        def update(mean: Tensor, cov: Tensor, a_t: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
            mean, cov, innovation, chol = _update(mean, cov, a_t, H, R)
            return mean, cov, (innovation, chol)

        passed = _filter_pass(a, u, transition, mean0, cov0, update, _predict)
        # The log-likelihood needs nothing from later steps, so it is evaluated for all t at once.
        innovations, chols = zip(*passed.scores)
        log_likelihood = _innovation_log_lik(torch.stack(innovations, 1), torch.stack(chols, 1)).sum(-1)
    filtered_mean, filtered_cov = passed.mean, passed.cov
    if a.shape[1] == 1:
        return KalmanResult(filtered_mean, filtered_cov, filtered_mean, filtered_cov, log_likelihood)
    rts = kalman_kernels.FusedRts.apply if fused else _rts_pass
    smoothed_mean, smoothed_cov = rts(filtered_mean, filtered_cov, passed.pred_mean, passed.pred_cov, passed.F,
                                      passed.Q)
    return KalmanResult(filtered_mean, filtered_cov, smoothed_mean, smoothed_cov, log_likelihood)


class _FilterPass(NamedTuple):
    """What :func:`_filter_pass` returns: the filtered beliefs ``mean (B, T, Dz)``, ``cov (B, T, Dz, Dz)``;
    per step, what the update returned beside the belief (``scores``); the predictions ``pred_mean
    (B, T-1, Dz)``, ``pred_cov`` and their matrices ``F``, ``Q (B, T-1, Dz, Dz)`` (None when T = 1)."""

    mean: Tensor
    cov: Tensor
    scores: list
    pred_mean: Tensor | None
    pred_cov: Tensor | None
    F: Tensor | None
    Q: Tensor | None


def _filter_pass(a: Tensor, u: Tensor, transition: Transition, mean0: Tensor, cov0: Tensor,
                 update: Callable[[Tensor, Tensor, Tensor], tuple],
                 predict: Callable[..., tuple[Tensor, Tensor]]) -> _FilterPass:
    """The sequential filter of both forms: per step ``update(mean, cov, a_t) -> (mean, cov, score)``,
    then the transition at the filtered mean and ``predict(mean, cov, F, Bu, u_t, Q) -> (mean, cov)``."""
    a_steps, u_steps = a.unbind(1), u.unbind(1)
    T = len(a_steps)
    means, covs, scores, pred_means, pred_covs, Fs, Qs = [], [], [], [], [], [], []
    mean, cov = mean0, cov0
    for t in range(T):
        mean, cov, score = update(mean, cov, a_steps[t])
        means.append(mean)
        covs.append(cov)
        scores.append(score)
        if t + 1 < T:
            F, Bu, Q = transition(mean, u_steps[t])
            mean, cov = predict(mean, cov, F, Bu, u_steps[t], Q)
            pred_means.append(mean)
            pred_covs.append(cov)
            Fs.append(F)
            Qs.append(Q)
    stacked = [torch.stack(x, 1) if x else None for x in (pred_means, pred_covs, Fs, Qs)]
    return _FilterPass(torch.stack(means, 1), torch.stack(covs, 1), scores, *stacked)


def _rts_pass(filtered_mean: Tensor, filtered_cov: Tensor, pred_mean: Tensor, pred_cov: Tensor, F: Tensor,
              Q: Tensor) -> tuple[Tensor, Tensor]:
    """The RTS smoother as eager torch ops (shapes as in :func:`_smoothing_offsets`): smoothed mean
    ``(B, T, Dz)`` and covariance ``(B, T, Dz, Dz)``."""
    # Everything in the RTS step that does not depend on the smoothed belief is computed for
    # all t at once (_smoothing_offsets), leaving two matrix products and two additions per step.
    gain, gain_t, offsets_mean, offsets_cov = _smoothing_offsets(filtered_mean, filtered_cov, pred_mean, pred_cov,
                                                                 F, Q)
    gains, gains_t = gain.unbind(1), gain_t.unbind(1)
    c_cov, c_mean = offsets_cov.unbind(1), offsets_mean.unbind(1)
    mean, cov = filtered_mean[:, -1].unsqueeze(-1), filtered_cov[:, -1]
    smoothed_means, smoothed_covs = [mean], [cov]
    for t in range(filtered_mean.shape[1] - 2, -1, -1):
        mean = torch.baddbmm(c_mean[t], gains[t], mean)
        cov = torch.baddbmm(c_cov[t], gains[t] @ cov, gains_t[t])
        smoothed_means.append(mean)
        smoothed_covs.append(cov)
    # G X G^T + c keeps symmetry up to rounding, so one batched symmetrisation at the end
    # replaces T small ones.
    return torch.stack(smoothed_means[::-1], 1).squeeze(-1), _symmetrise(torch.stack(smoothed_covs[::-1], 1))


def transitions_given_inputs(transition: Transition, u: Tensor, dz: int) -> tuple[Tensor, Tensor, Tensor]:
    """Every step's matrices of a transition that ignores z, in one call (zeros for z).

    Args: u ``(B, T, Du)`` (``u[:, -1]`` is unused), dz = Dz.

    Returns: ``F (B, T-1, Dz, Dz)``, ``Bu (B, T-1, Dz, Du)``, ``Q (B, T-1, Dz, Dz)``.
    """
    B, T, du = u.shape
    steps = u[:, :-1].reshape(-1, du)
    F, Bu, Q = transition(torch.zeros(len(steps), dz, dtype=u.dtype, device=u.device), steps)
    return F.view(B, T - 1, dz, dz), Bu.view(B, T - 1, dz, du), Q.view(B, T - 1, dz, dz)


def _fused_sequence_smoother(a: Tensor, u: Tensor, transition: Transition, H: Tensor, R: Tensor, mean0: Tensor,
                             cov0: Tensor) -> KalmanResult:
    """:func:`kalman_smoother` for a transition that ignores z, through the fused kernels (``R`` already
    jittered, T >= 2): one call for the whole filter, one for the whole RTS pass."""
    F, Bu, Q = transitions_given_inputs(transition, u, mean0.shape[-1])
    filtered_mean, filtered_cov, log_likelihood, pred_mean, pred_cov = kalman_kernels.FusedFilter.apply(
        a, F, Bu, u[:, :-1], Q, H, R, mean0, cov0)
    smoothed_mean, smoothed_cov = kalman_kernels.FusedRts.apply(filtered_mean, filtered_cov, pred_mean, pred_cov, F, Q)
    return KalmanResult(filtered_mean, filtered_cov, smoothed_mean, smoothed_cov, log_likelihood)


def _fused_mixture_smoother(a: Tensor, u: Tensor, transition: MixtureTransition, H: Tensor, R: Tensor,
                            mean0: Tensor, cov0: Tensor) -> KalmanResult:
    """:func:`kalman_smoother` for the EKVAE's mixture transition through the fused kernels (``R`` already
    jittered, T >= 2): one call for the whole filter, mixer included, one for the whole RTS pass."""
    layers = [x for pair in zip(transition.weights, transition.biases) for x in pair]
    filtered_mean, filtered_cov, log_likelihood, pred_mean, pred_cov, F, Q = kalman_kernels.FusedMixtureFilter.apply(
        a, u[:, :-1], H, R, mean0, cov0, transition.F_bases, transition.B_bases, transition.Q_bases, *layers)
    smoothed_mean, smoothed_cov = kalman_kernels.FusedRts.apply(filtered_mean, filtered_cov, pred_mean, pred_cov, F, Q)
    return KalmanResult(filtered_mean, filtered_cov, smoothed_mean, smoothed_cov, log_likelihood)
