"""Parallel-in-time Kalman filter and RTS smoother for models that are linear-Gaussian given their inputs.

Särkkä and García-Fernández ("Temporal Parallelization of Bayesian Smoothers", IEEE TAC 2021) write
both recursions as prefix sums of an associative operator. Each time step becomes an *element*; an
inclusive scan over the elements gives every filtered belief, and a reverse scan over smoothing
elements every smoothed one. With a Hillis-Steele scan that is ``ceil(log2 T)`` rounds of batched
matrix ops over the whole sequence instead of T rounds of tiny ones: what costs time on a CPU (or a
GPU) in eager PyTorch is the number of ops launched, not their arithmetic.

It applies where the transition does not read the state, e.g. a linear system or the KVAE (its
mixing weights come from an LSTM over the observations). The EKVAE linearises at the filtered
mean, so its filter is sequential by nature; :func:`~latentworld.probability.kalman.kalman_smoother`
with ``parallel=True`` dispatches here.

Notation of one step (as in :mod:`latentworld.probability.kalman`): ``z_{t+1} = F_t z_t + c_t +
N(0, Q_t)`` with ``c_t = B_t u_t``, ``a_t = H z_t + N(0, R)``, ``z_1 ~ N(mean0, cov0)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from latentworld.probability.kalman import (
    KalmanResult,
    Transition,
    _innovation_log_lik,
    _smoothing_offsets,
    _symmetric_baddbmm,
    _symmetrise,
    _update,
    transitions_given_inputs,
)

FilterElements = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]
"""``(A (..., Dz, Dz), b (..., Dz, 1), C (..., Dz, Dz), eta (..., Dz, 1), J (..., Dz, Dz))``."""

SmootherElements = tuple[Tensor, Tensor, Tensor]
"""``(E (..., Dz, Dz), g (..., Dz, 1), L (..., Dz, Dz))``."""


def _joseph(gain: Tensor, H: Tensor, P: Tensor, R: Tensor) -> Tensor:
    """``(I - K H) P (I - K H)^T + K R K^T``, positive definite under rounding. Args: gain K
    ``(..., Dz, Da)``, P ``(..., Dz, Dz)``."""
    eye = torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
    a_mat = eye - gain @ H
    return _symmetrise(a_mat @ P @ a_mat.mT + gain @ R @ gain.mT)


def _filter_elements(a: Tensor, F: Tensor, c: Tensor, Q: Tensor, H: Tensor, R: Tensor, mean0: Tensor,
                     cov0: Tensor) -> FilterElements:
    """The filtering element of every step, ``(B, T, ...)``: the first conditions the prior on a_1,
    step t > 1 is the map from the filtered z_{t-1} to the filtered z_t given a_t alone."""
    dz = F.shape[-1]
    # Step 1: the filter's own update of the prior (A = 0, eta = 0, J = 0).
    mean1, C0, _, _ = _update(mean0, cov0, a[:, 0], H, R)
    b0 = mean1.unsqueeze(-1)
    # Steps 2..T, from (F, c, Q) of the step before and a_t.
    HQ = H @ Q  # (B, T-1, Da, Dz)
    S = HQ @ H.mT + R
    # One solve for S^{-1} H Q (the gain Q H^T S^{-1}, transposed) and S^{-1} H.
    gain_t, S_inv_H = torch.linalg.solve(S, torch.cat([HQ, H.expand_as(HQ)], -1)).split(dz, -1)
    gain = gain_t.mT
    innovation = (a[:, 1:] - c @ H.mT).unsqueeze(-1)  # y_t - H c_{t-1}, (B, T-1, Da, 1)
    eye = torch.eye(dz, dtype=F.dtype, device=F.device)
    A = (eye - gain @ H) @ F
    b = c.unsqueeze(-1) + gain @ innovation
    C = _joseph(gain, H, Q, R)
    HF = H @ F
    eta = F.mT @ (S_inv_H.mT @ innovation)  # F^T H^T S^{-1} (y - H c)
    J = _symmetrise(HF.mT @ (S_inv_H @ F))  # F^T H^T S^{-1} H F

    def first(x: Tensor, rest: Tensor) -> Tensor:
        return torch.cat([x.unsqueeze(1), rest], 1)

    zero_mat, zero_vec = torch.zeros_like(cov0), torch.zeros_like(b0)
    return first(zero_mat, A), first(b0, b), first(C0, C), first(zero_vec, eta), first(zero_mat, J)


def _combine_filter(earlier: FilterElements, later: FilterElements) -> FilterElements:
    """The associative operator of the filtering elements (earlier ⊗ later)."""
    A_i, b_i, C_i, eta_i, J_i = earlier
    A_j, b_j, C_j, eta_j, J_j = later
    dz = A_i.shape[-1]
    eye = torch.eye(dz, dtype=A_i.dtype, device=A_i.device)
    lu, pivots = torch.linalg.lu_factor(eye + C_i @ J_j)  # M = (I + C_i J_j)^{-1}; M^T = (I + J_j C_i)^{-1}
    m_rhs = torch.linalg.lu_solve(lu, pivots, torch.cat([A_i, b_i + C_i @ eta_j, C_i], -1))
    mt_rhs = torch.linalg.lu_solve(lu, pivots, torch.cat([eta_j - J_j @ b_i, J_j @ A_i], -1), adjoint=True)
    MA, Mb, MC = m_rhs.split([dz, 1, dz], -1)
    Mt_eta, Mt_JA = mt_rhs.split([1, dz], -1)
    return (
        A_j @ MA,
        A_j @ Mb + b_j,
        _symmetrise(A_j @ MC @ A_j.mT + C_j),
        A_i.mT @ Mt_eta + eta_i,
        _symmetrise(A_i.mT @ Mt_JA + J_i),
    )


def _combine_smoother(earlier: SmootherElements, later: SmootherElements) -> SmootherElements:
    """The associative operator of the smoothing elements (earlier ⊗ later, later already smoothed)."""
    E_i, g_i, L_i = earlier
    E_j, g_j, L_j = later
    return E_i @ E_j, E_i @ g_j + g_i, _symmetrise(E_i @ L_j @ E_i.mT + L_i)


def _prefix_scan(elements: tuple[Tensor, ...],
                 combine: Callable[[tuple[Tensor, ...], tuple[Tensor, ...]], tuple[Tensor, ...]],
                 reverse: bool = False) -> tuple[Tensor, ...]:
    """Hillis-Steele inclusive scan over dim 1: ``ceil(log2 T)`` rounds, each one batched combine of
    every element with the one ``2^k`` steps before it (after it when ``reverse``)."""
    T = elements[0].shape[1]
    offset = 1
    while offset < T:
        if reverse:  # element t absorbs the (already scanned) span starting at t + offset
            head = combine(tuple(x[:, :-offset] for x in elements), tuple(x[:, offset:] for x in elements))
            elements = tuple(torch.cat([h, x[:, -offset:]], 1) for h, x in zip(head, elements))
        else:  # element t absorbs the span ending at t - offset
            tail = combine(tuple(x[:, :-offset] for x in elements), tuple(x[:, offset:] for x in elements))
            elements = tuple(torch.cat([x[:, :offset], t], 1) for t, x in zip(tail, elements))
        offset *= 2
    return elements


def parallel_kalman_smoother(a: Tensor, u: Tensor, transition: Transition, H: Tensor, R: Tensor,
                             mean0: Tensor, cov0: Tensor) -> KalmanResult:
    """Filter and RTS smoother as associative scans; the transition is evaluated once for all steps.

    Args: as :func:`~latentworld.probability.kalman.kalman_smoother` (inputs already checked and R
    jittered); ``transition`` must not read its z argument (it gets zeros).

    Returns:
        The :class:`KalmanResult`, equal to the sequential one up to rounding.
    """
    B, T, _ = a.shape
    dz = mean0.shape[-1]
    if T == 1:
        mean, cov, innovation, chol = _update(mean0, cov0, a[:, 0], H, R)
        log_lik = _innovation_log_lik(innovation, chol)
        return KalmanResult(mean[:, None], cov[:, None], mean[:, None], cov[:, None], log_lik)
    F, Bu, Q = transitions_given_inputs(transition, u, dz)
    c = (Bu @ u[:, :-1].unsqueeze(-1)).squeeze(-1)  # (B, T-1, Dz)

    _, b, C, _, _ = _prefix_scan(_filter_elements(a, F, c, Q, H, R, mean0, cov0), _combine_filter)
    filtered_mean, filtered_cov = b.squeeze(-1), C
    pred_mean = (F @ filtered_mean[:, :-1].unsqueeze(-1)).squeeze(-1) + c  # (B, T-1, Dz)
    pred_cov = _symmetric_baddbmm(Q.flatten(0, 1), (F @ filtered_cov[:, :-1]).flatten(0, 1),
                                  F.mT.flatten(0, 1)).view(B, T - 1, dz, dz)

    # Innovation log-likelihood of every step at once (step 1 against the prior).
    prior_mean = torch.cat([mean0.unsqueeze(1), pred_mean], 1)
    prior_cov = torch.cat([cov0.unsqueeze(1), pred_cov], 1)
    chol = torch.linalg.cholesky(H @ prior_cov @ H.mT + R)
    innovation = (a - prior_mean @ H.mT).unsqueeze(-1)
    log_likelihood = _innovation_log_lik(innovation, chol).sum(-1)

    gain, _, offsets_mean, offsets_cov = _smoothing_offsets(filtered_mean, filtered_cov, pred_mean, pred_cov, F, Q)
    last = (torch.zeros_like(filtered_cov[:, -1:]), filtered_mean[:, -1:].unsqueeze(-1), filtered_cov[:, -1:])
    elements = tuple(torch.cat([x, y], 1) for x, y in zip((gain, offsets_mean, offsets_cov), last))
    _, smoothed_mean, smoothed_cov = _prefix_scan(elements, _combine_smoother, reverse=True)
    return KalmanResult(filtered_mean, filtered_cov, smoothed_mean.squeeze(-1), smoothed_cov, log_likelihood)
