"""Tests of the batched Kalman filter / RTS smoother against dense joint-Gaussian conditioning."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch import Tensor

from latentworld.models.networks import mlp
from latentworld.probability import kalman_kernels
from latentworld.probability.kalman import (
    KalmanResult,
    Transition,
    kalman_filter_step,
    kalman_predict,
    kalman_smoother,
    kalman_update,
)
from latentworld.probability.mixture_transition import MixtureTransition

F64 = torch.float64
FORMS = ["fused", "eager"]  # the smoother's fused CPU kernels and its eager torch form


def in_form(form: str) -> contextlib.AbstractContextManager:
    """The block runs the smoother in ``form``; fails if the fused kernels could not be built here."""
    if form == "fused":
        assert kalman_kernels.kernels() is not None, "the fused Kalman kernels did not build on this machine"
        return contextlib.nullcontext()
    return kalman_kernels.eager_only()


def random_spd(gen: torch.Generator, *shape: int, dtype: torch.dtype = F64) -> Tensor:
    """A well-conditioned random SPD matrix of shape ``(*shape[:-1], n, n)``."""
    n = shape[-1]
    x = torch.randn(*shape, n, generator=gen, dtype=dtype)
    return x @ x.mT / n + 0.5 * torch.eye(n, dtype=dtype)


def linear_transition(gen: torch.Generator, dz: int, du: int, action_dependent: bool) -> Transition:
    """A linear system (ignores z); time-varying through the action when ``action_dependent``."""
    F0 = 0.9 * torch.linalg.qr(torch.randn(dz, dz, generator=gen, dtype=F64))[0]
    B0 = torch.randn(dz, du, generator=gen, dtype=F64)
    Q0 = 0.3 * random_spd(gen, dz)
    W = 0.3 * torch.randn(du, dz * dz, generator=gen, dtype=F64)

    def transition(z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b = u.shape[0]
        F, Bu, Q = F0.expand(b, dz, dz), B0.expand(b, dz, du), Q0.expand(b, dz, dz)
        if action_dependent:
            F = F + torch.tanh(u @ W).view(b, dz, dz)
            Bu = Bu * (1.0 + u.square().sum(-1))[:, None, None]
            Q = Q + torch.diag_embed(0.1 * u.square().sum(-1, keepdim=True).expand(b, dz))
        return F, Bu, Q

    return transition


def mixture_transition(
    theta: Tensor, W: Tensor, B0: Tensor, q: Tensor, calls: list[Tensor] | None = None
) -> Transition:
    """State-dependent transition as in the EKVAE: a softmax mixture of base matrices ``theta``.

    ``calls`` (when given) records every ``z`` the transition is evaluated at.
    """

    def transition(z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if calls is not None:
            calls.append(z)
        alpha = torch.softmax(torch.cat([z, u], -1) @ W, -1)  # (B, M)
        F = torch.einsum("bm,mij->bij", alpha, theta)
        Bu = torch.einsum("bm,mij->bij", alpha, B0)
        return F, Bu, torch.diag_embed(q.expand(z.shape[0], -1))

    return transition


def dense_reference(
    a: Tensor, u: Tensor, transition: Transition, H: Tensor, R: Tensor, mean0: Tensor, cov0: Tensor
) -> KalmanResult:
    """Filter/smoother by conditioning the explicit joint Gaussian of (z_1..z_T, a_1..a_T).

    ``z = mu_z + A e`` with independent noise ``e = (z_1 - mean0, w_1, .., w_{T-1})``, so
    ``Cov(z) = A blockdiag(cov0, Q_1..) A^T``; ``a = (I_T (x) H) z + v``.
    """
    B, T, Da = a.shape
    Dz = mean0.shape[1]
    mats = [transition(torch.zeros_like(mean0), u[:, t]) for t in range(T - 1)]
    eye = torch.eye(Dz, dtype=F64).expand(B, Dz, Dz)
    mu = [mean0]
    rows = [torch.cat([eye, torch.zeros(B, Dz, (T - 1) * Dz, dtype=F64)], -1)]
    for t, (F, Bu, _) in enumerate(mats):
        mu.append((F @ mu[-1].unsqueeze(-1) + Bu @ u[:, t].unsqueeze(-1)).squeeze(-1))
        row = F @ rows[-1]
        row[:, :, (t + 1) * Dz : (t + 2) * Dz] += eye
        rows.append(row)
    mu_z, A = torch.cat(mu, -1), torch.cat(rows, 1)
    cov_e = torch.zeros(B, T * Dz, T * Dz, dtype=F64)
    for t, c in enumerate([cov0] + [Q for _, _, Q in mats]):
        cov_e[:, t * Dz : (t + 1) * Dz, t * Dz : (t + 1) * Dz] = c
    cov_z = A @ cov_e @ A.mT
    H_big = torch.kron(torch.eye(T, dtype=F64), H)
    cov_a = H_big @ cov_z @ H_big.T + torch.kron(torch.eye(T, dtype=F64), R)
    cross = cov_z @ H_big.T  # Cov(z, a)
    resid = a.reshape(B, -1) - mu_z @ H_big.T

    def condition(k: int) -> tuple[Tensor, Tensor]:
        gain = torch.linalg.solve(cov_a[:, :k, :k], cross[:, :, :k].mT).mT
        mean = mu_z + (gain @ resid[:, :k].unsqueeze(-1)).squeeze(-1)
        cov = cov_z - gain @ cross[:, :, :k].mT
        return mean.view(B, T, Dz), torch.stack(
            [cov[:, t * Dz : (t + 1) * Dz, t * Dz : (t + 1) * Dz] for t in range(T)], 1
        )

    filtered = [condition((t + 1) * Da) for t in range(T)]
    smoothed_mean, smoothed_cov = condition(T * Da)
    log_lik = torch.distributions.MultivariateNormal(mu_z @ H_big.T, cov_a).log_prob(a.reshape(B, -1))
    return KalmanResult(
        torch.stack([m[:, t] for t, (m, _) in enumerate(filtered)], 1),
        torch.stack([c[:, t] for t, (_, c) in enumerate(filtered)], 1),
        smoothed_mean,
        smoothed_cov,
        log_lik,
    )


def random_problem(
    gen: torch.Generator, B: int, T: int, Dz: int, Da: int, Du: int, dtype: torch.dtype = F64
) -> dict[str, Tensor]:
    """Random inputs of :func:`kalman_smoother` (all but the transition)."""
    return {
        "a": torch.randn(B, T, Da, generator=gen, dtype=dtype),
        "u": torch.randn(B, T, Du, generator=gen, dtype=dtype),
        "H": torch.randn(Da, Dz, generator=gen, dtype=dtype),
        "R": 0.5 * random_spd(gen, Da, dtype=dtype),
        "mean0": torch.randn(B, Dz, generator=gen, dtype=dtype),
        "cov0": random_spd(gen, B, Dz, dtype=dtype),
    }


@pytest.mark.parametrize("action_dependent", [False, True])
@pytest.mark.parametrize(
    "B,T,Dz,Da,Du",
    [(3, 6, 4, 2, 1), (2, 5, 2, 4, 3), (2, 1, 3, 3, 2), (2, 8, 5, 5, 2), (1, 10, 3, 1, 1), (2, 9, 5, 5, 2),
     (2, 2, 3, 2, 1)],
)
@pytest.mark.parametrize("form", [*FORMS, "whole filter", "parallel"])
def test_linear_matches_dense_conditioning(
    action_dependent: bool, B: int, T: int, Dz: int, Da: int, Du: int, form: str
) -> None:
    gen = torch.Generator().manual_seed(B * 1000 + T * 100 + Dz * 10 + Da + action_dependent)
    p = random_problem(gen, B, T, Dz, Da, Du)
    transition = linear_transition(gen, Dz, Du, action_dependent)
    with in_form("eager" if form == "eager" else "fused"):
        got = kalman_smoother(p["a"], p["u"], transition, p["H"], p["R"], p["mean0"], p["cov0"],
                              linear_given_inputs=form == "whole filter", parallel=form == "parallel")
    want = dense_reference(p["a"], p["u"], transition, p["H"], p["R"], p["mean0"], p["cov0"])
    for name in KalmanResult._fields:
        assert getattr(got, name).dtype == F64
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=1e-8, atol=1e-9, msg=name)


@pytest.mark.parametrize("form", FORMS)
def test_gradcheck(form: str) -> None:
    gen = torch.Generator().manual_seed(0)
    B, T, Dz, Da, Du, M = 2, 3, 2, 2, 1, 3
    p = random_problem(gen, B, T, Dz, Da, Du)
    theta = 0.5 * torch.randn(M, Dz, Dz, generator=gen, dtype=F64)
    W = torch.randn(Dz + Du, M, generator=gen, dtype=F64)
    B0 = torch.randn(M, Dz, Du, generator=gen, dtype=F64)
    q = torch.full((Dz,), 0.2, dtype=F64)
    r_factor = torch.linalg.cholesky(p["R"])
    c_factor = torch.linalg.cholesky(p["cov0"])
    # R and cov0 enter through factors so that gradcheck's one-entry perturbations keep them
    # symmetric positive definite.
    inputs = [x.requires_grad_() for x in (p["a"], p["u"], p["H"], p["mean0"], c_factor, r_factor, theta, W)]

    def f(
        a: Tensor,
        u: Tensor,
        H: Tensor,
        mean0: Tensor,
        c_factor: Tensor,
        r_factor: Tensor,
        theta: Tensor,
        W: Tensor,
    ) -> tuple[Tensor, ...]:
        out = kalman_smoother(
            a,
            u,
            mixture_transition(theta, W, B0, q),
            H,
            r_factor @ r_factor.mT,
            mean0,
            c_factor @ c_factor.mT,
        )
        return out.smoothed_mean, out.smoothed_cov, out.filtered_mean, out.log_likelihood

    with in_form(form):
        assert torch.autograd.gradcheck(f, inputs)


def test_state_dependent_transition_is_linearised_at_filtered_mean_and_online_filter_agrees() -> None:
    gen = torch.Generator().manual_seed(1)
    B, T, Dz, Da, Du, M = 4, 7, 3, 2, 2, 4
    p = random_problem(gen, B, T, Dz, Da, Du)
    theta = 0.6 * torch.randn(M, Dz, Dz, generator=gen, dtype=F64)
    W = 2.0 * torch.randn(Dz + Du, M, generator=gen, dtype=F64)
    B0 = torch.randn(M, Dz, Du, generator=gen, dtype=F64)
    q = torch.full((Dz,), 0.1, dtype=F64)
    calls: list[Tensor] = []
    transition = mixture_transition(theta, W, B0, q, calls)
    out = kalman_smoother(p["a"], p["u"], transition, p["H"], p["R"], p["mean0"], p["cov0"])
    assert len(calls) == T - 1  # once per forward step, never in the backward pass
    torch.testing.assert_close(torch.stack(calls, 1), out.filtered_mean[:, :-1], rtol=0, atol=0)

    mean, cov, _ = kalman_update(p["mean0"], p["cov0"], p["a"][:, 0], p["H"], p["R"])
    means, covs = [mean], [cov]
    for t in range(1, T):
        mean, cov = kalman_filter_step(mean, cov, p["u"][:, t - 1], p["a"][:, t], transition, p["H"], p["R"])
        means.append(mean)
        covs.append(cov)
    torch.testing.assert_close(torch.stack(means, 1), out.filtered_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.stack(covs, 1), out.filtered_cov, rtol=1e-12, atol=1e-12)

    # The last action is never used; the prediction step is the one the smoother uses.
    u = p["u"].clone()
    u[:, -1] += 100.0
    again = kalman_smoother(p["a"], u, transition, p["H"], p["R"], p["mean0"], p["cov0"])
    torch.testing.assert_close(again.smoothed_mean, out.smoothed_mean, rtol=0, atol=0)
    pred_mean, pred_cov, _, _ = kalman_predict(
        out.filtered_mean[:, 0], out.filtered_cov[:, 0], p["u"][:, 0], transition
    )
    torch.testing.assert_close(
        kalman_update(pred_mean, pred_cov, p["a"][:, 1], p["H"], p["R"])[0], out.filtered_mean[:, 1]
    )


@pytest.mark.parametrize("h_scale,q", [(100.0, 1e-6), (1.0, 1e-8)])
def test_float32_long_nearly_unobservable_stays_positive_definite(h_scale: float, q: float) -> None:
    # One coordinate observed very precisely, one barely, two not at all (one of them slowly
    # growing), almost no process noise: the textbook P - K S K^T update loses definiteness
    # here in float32 (it fails both cases); the Joseph forms must not.
    gen = torch.Generator().manual_seed(2)
    B, T, Dz, Da, Du = 8, 200, 4, 2, 1
    angle = torch.tensor(0.05)
    rot = torch.stack([torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])])
    F = torch.block_diag(rot, 1.001 * torch.eye(2))
    H = torch.tensor([[h_scale, 0.0, 0.0, 0.0], [0.0, 0.0, 1e-3, 0.0]])
    R = 1e-4 * torch.eye(Da)
    Q = q * torch.eye(Dz)

    def transition(z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return F.expand(z.shape[0], Dz, Dz), torch.ones(z.shape[0], Dz, Du), Q.expand(z.shape[0], Dz, Dz)

    a = torch.randn(B, T, Da, generator=gen)
    u = 0.1 * torch.randn(B, T, Du, generator=gen)
    out = kalman_smoother(a, u, transition, H, R, torch.zeros(B, Dz), 100.0 * torch.eye(Dz).expand(B, Dz, Dz))
    assert all(x.dtype == torch.float32 for x in out)
    assert all(torch.isfinite(x).all() for x in out)
    for cov in (out.filtered_cov, out.smoothed_cov):
        assert torch.equal(cov, cov.mT)
        assert torch.linalg.eigvalsh(cov.double()).min() > 0
        assert (torch.linalg.cholesky_ex(cov).info == 0).all()


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda p: p.update(a=p["a"][0]), "a must"),
        (lambda p: p.update(H=p["H"][:, :-1]), "H must"),
        (lambda p: p.update(u=p["u"][:, :-1]), "u must"),
        (lambda p: p.update(R=p["R"][:-1]), "R must"),
        (lambda p: p.update(cov0=p["cov0"][0]), "cov0 must"),
        (lambda p: p.update(mean0=p["mean0"].float()), "dtype"),
    ],
)
def test_shape_errors(change, match: str) -> None:
    p = random_problem(torch.Generator().manual_seed(3), 2, 4, 3, 2, 1)
    change(p)
    with pytest.raises(ValueError, match=match):
        kalman_smoother(
            p["a"],
            p["u"],
            linear_transition(torch.Generator(), 3, 1, False),
            p["H"],
            p["R"],
            p["mean0"],
            p["cov0"],
        )


@pytest.mark.parametrize("form", ["parallel", "linear_given_inputs"])  # scans; the whole-filter kernel call
def test_gradcheck_of_the_forms_for_a_transition_that_ignores_z(form: str) -> None:
    gen = torch.Generator().manual_seed(1)
    B, T, Dz, Da, Du = 2, 5, 2, 2, 1
    p = random_problem(gen, B, T, Dz, Da, Du)
    F0 = 0.5 * torch.randn(Dz, Dz, generator=gen, dtype=F64)
    B0 = torch.randn(Dz, Du, generator=gen, dtype=F64)
    q_factor = torch.linalg.cholesky(0.3 * random_spd(gen, Dz))
    inputs = [x.requires_grad_() for x in (p["a"], p["u"], p["H"], p["mean0"], torch.linalg.cholesky(p["cov0"]),
                                           torch.linalg.cholesky(p["R"]), F0, B0, q_factor)]

    def f(a: Tensor, u: Tensor, H: Tensor, mean0: Tensor, c_factor: Tensor, r_factor: Tensor, F0: Tensor,
          B0: Tensor, q_factor: Tensor) -> tuple[Tensor, ...]:
        def transition(z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            n = z.shape[0]
            return F0.expand(n, Dz, Dz), B0.expand(n, Dz, Du), (q_factor @ q_factor.mT).expand(n, Dz, Dz)

        out = kalman_smoother(a, u, transition, H, r_factor @ r_factor.mT, mean0, c_factor @ c_factor.mT,
                              **{form: True})
        return out.smoothed_mean, out.smoothed_cov, out.filtered_mean, out.filtered_cov, out.log_likelihood

    with in_form("fused"):
        assert torch.autograd.gradcheck(f, inputs)


def test_parallel_float32_long_sequence_agrees_with_sequential() -> None:
    # The KVAE's case in training precision: T = 240, a mixture of base matrices from inputs alone.
    gen = torch.Generator().manual_seed(4)
    B, T, Dz, Da, Du, M = 8, 240, 5, 3, 1, 4
    theta = torch.eye(Dz) + 0.05 * torch.randn(M, Dz, Dz, generator=gen)
    B0 = 0.1 * torch.randn(M, Dz, Du, generator=gen)
    W = torch.randn(Du, M, generator=gen)
    q = torch.full((Dz,), 0.05)

    def transition(z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        alpha = torch.softmax(u @ W, -1)
        return (torch.einsum("bm,mij->bij", alpha, theta), torch.einsum("bm,mij->bij", alpha, B0),
                torch.diag_embed(q.expand(z.shape[0], -1)))

    a, u = torch.randn(B, T, Da, generator=gen), torch.randn(B, T, Du, generator=gen)
    H, R = torch.eye(Da, Dz), 0.1 * torch.eye(Da)
    mean0, cov0 = torch.zeros(B, Dz), torch.eye(Dz).expand(B, Dz, Dz)
    sequential = kalman_smoother(a, u, transition, H, R, mean0, cov0)
    parallel = kalman_smoother(a, u, transition, H, R, mean0, cov0, parallel=True)
    for name in KalmanResult._fields:
        want = getattr(sequential, name)
        torch.testing.assert_close(getattr(parallel, name), want, rtol=1e-3, atol=1e-3 * want.abs().max().item(),
                                   msg=name)
    assert (torch.linalg.cholesky_ex(parallel.smoothed_cov).info == 0).all()


@pytest.mark.parametrize(
    "B,T,reads_z",
    # Batches around the kernels' 8 lanes, T = 1; a transition that reads only its inputs (the KVAE's
    # case) is declared linear_given_inputs in the fused form, so its whole filter is one kernel call.
    [(5, 7, True), (17, 4, True), (9, 1, True), (5, 7, False), (9, 2, False), (1, 4, False)],
)
def test_fused_kernels_agree_with_the_eager_form_in_every_output_and_gradient(B: int, T: int, reads_z: bool) -> None:
    gen = torch.Generator().manual_seed(B + T)
    Dz, Da, Du, M = 5, 3, 2, 4
    p = random_problem(gen, B, T, Dz, Da, Du)
    theta = 0.5 * torch.randn(M, Dz, Dz, generator=gen, dtype=F64)
    W = torch.randn(Dz + Du if reads_z else Du, M, generator=gen, dtype=F64)
    B0 = torch.randn(M, Dz, Du, generator=gen, dtype=F64)
    q = torch.full((Dz,), 0.2, dtype=F64)  # Q is expanded over the batch: read through stride 0
    c_factor = torch.linalg.cholesky(p["cov0"])
    inputs = [x.requires_grad_() for x in (p["a"], p["u"], p["H"], p["R"], p["mean0"], c_factor, theta, W, B0, q)]
    weights = [torch.randn(shape, generator=gen, dtype=F64)
               for shape in ((B, T, Dz), (B, T, Dz, Dz), (B, T, Dz), (B, T, Dz, Dz), (B,))]

    def outputs_and_gradients(fused: bool) -> tuple[KalmanResult, tuple[Tensor, ...]]:
        a, u, H, R, mean0, c_factor, theta, W, B0, q = inputs
        mixer = W if reads_z else torch.cat([W.new_zeros(Dz, M), W])  # no weight on z
        # Layouts the kernels read in place: a view strided in time, a prior mean expanded over the batch.
        a_strided = torch.stack([a, torch.zeros_like(a)], 2).flatten(1, 2)[:, ::2]
        out = kalman_smoother(a_strided, u, mixture_transition(theta, mixer, B0, q), H, R, mean0[0].expand(B, Dz),
                              c_factor @ c_factor.mT, linear_given_inputs=fused and not reads_z)
        loss = sum((o * w).sum() for o, w in zip(out, weights, strict=True))
        grads = torch.autograd.grad(loss, inputs, allow_unused=True)  # T = 1 uses no action
        return out, tuple(torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads, strict=True))

    with in_form("fused"):
        fused, fused_grads = outputs_and_gradients(fused=True)
    with in_form("eager"):
        eager, eager_grads = outputs_and_gradients(fused=False)
    for name in KalmanResult._fields:
        torch.testing.assert_close(getattr(fused, name), getattr(eager, name), rtol=1e-10, atol=1e-11, msg=name)
    names = ("a", "u", "H", "R", "mean0", "cov0 factor", "theta", "W", "B0", "q")
    for name, got, want in zip(names, fused_grads, eager_grads, strict=True):
        if name == "R":  # a covariance: compare the gradient among symmetric matrices
            got, want = 0.5 * (got + got.mT), 0.5 * (want + want.mT)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10, msg=name)


class CountingMixture(MixtureTransition):
    """A :class:`MixtureTransition` that counts its eager evaluations (the fused filter makes none)."""

    calls = 0

    def __call__(self, z: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        CountingMixture.calls += 1
        return super().__call__(z, v)


def random_mixture(gen: torch.Generator, Dz: int, Dv: int, Du: int, M: int, layers: int) -> MixtureTransition:
    """A mixture with ``layers`` linear layers in its mixer, weights large enough that α varies a lot."""
    torch.manual_seed(int(torch.randint(1 << 30, (1,), generator=gen)))
    mixer = mlp(Dz + Dv, 6, M, n_layers=layers - 1).double()
    for parameter in mixer.parameters():
        parameter.data.mul_(3.0)
    return CountingMixture.from_mlp(mixer, torch.eye(Dz, dtype=F64) + 0.4 * torch.randn(M, Dz, Dz, generator=gen,
                                                                                        dtype=F64),
                                    torch.randn(M, Dz, Du, generator=gen, dtype=F64),
                                    0.1 + torch.rand(M, Dz, generator=gen, dtype=F64))


@pytest.mark.parametrize(
    "B,T,layers,Du,extra_inputs",
    # Batches around the kernels' 8 lanes; a mixer of one to three layers; inputs v beyond the actions
    # (they steer the mixture only, as the KVAE's appended columns would); no actions at all.
    [(5, 7, 3, 2, 1), (17, 2, 1, 2, 0), (9, 4, 2, 2, 2), (1, 3, 3, 2, 0), (6, 5, 2, 0, 0), (6, 5, 2, 0, 1)],
)
def test_the_ekvae_mixture_runs_its_whole_filter_in_one_call_and_agrees_with_the_eager_form(
        B: int, T: int, layers: int, Du: int, extra_inputs: int) -> None:
    gen = torch.Generator().manual_seed(10 * B + T + Du)
    Dz, Da, M = 4, 3, 5
    p = random_problem(gen, B, T, Dz, Da, Du + extra_inputs)
    transition = random_mixture(gen, Dz, Du + extra_inputs, Du, M, layers)
    c_factor = torch.linalg.cholesky(p["cov0"])
    inputs = [x.requires_grad_() for x in (p["a"], p["u"], p["H"], p["R"], p["mean0"], c_factor,
                                           *transition.tensors())]
    weights = [torch.randn(shape, generator=gen, dtype=F64)
               for shape in ((B, T, Dz), (B, T, Dz, Dz), (B, T, Dz), (B, T, Dz, Dz), (B,))]

    def outputs_and_gradients() -> tuple[KalmanResult, tuple[Tensor, ...]]:
        a, u, H, R, mean0, c_factor = inputs[:6]
        a_strided = torch.stack([a, torch.zeros_like(a)], 2).flatten(1, 2)[:, ::2]  # read in place
        out = kalman_smoother(a_strided, u, transition, H, R, mean0[0].expand(B, Dz), c_factor @ c_factor.mT)
        loss = sum((o * w).sum() for o, w in zip(out, weights, strict=True))
        return out, torch.autograd.grad(loss, inputs)

    CountingMixture.calls = 0
    with in_form("fused"):
        fused, fused_grads = outputs_and_gradients()
    assert CountingMixture.calls == 0  # no step ran the mixture in Python
    with in_form("eager"):
        eager, eager_grads = outputs_and_gradients()
    assert CountingMixture.calls == T - 1
    for name in KalmanResult._fields:
        torch.testing.assert_close(getattr(fused, name), getattr(eager, name), rtol=1e-10, atol=1e-11, msg=name)
    for index, (got, want) in enumerate(zip(fused_grads, eager_grads, strict=True)):
        if index == 3:  # R, a covariance: compare the gradient among symmetric matrices
            got, want = 0.5 * (got + got.mT), 0.5 * (want + want.mT)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10, msg=f"input {index}")


def test_gradcheck_of_the_fused_mixture_filter() -> None:
    gen = torch.Generator().manual_seed(3)
    B, T, Dz, Da, Du, M = 2, 4, 3, 2, 1, 3
    p = random_problem(gen, B, T, Dz, Da, Du)
    transition = random_mixture(gen, Dz, Du, Du, M, layers=2)
    inputs = [x.requires_grad_() for x in (p["a"], p["u"], p["mean0"], torch.linalg.cholesky(p["cov0"]),
                                           *transition.tensors())]

    def f(a: Tensor, u: Tensor, mean0: Tensor, c_factor: Tensor, *parts: Tensor) -> tuple[Tensor, ...]:
        weights, biases, (F_bases, B_bases, Q_bases) = parts[:2], parts[2:4], parts[4:]
        out = kalman_smoother(a, u, MixtureTransition(weights, biases, F_bases, B_bases, Q_bases), p["H"], p["R"],
                              mean0, c_factor @ c_factor.mT)
        return out.smoothed_mean, out.smoothed_cov, out.filtered_cov, out.log_likelihood

    with in_form("fused"):
        assert torch.autograd.gradcheck(f, inputs)


def test_the_fused_mixture_filter_agrees_with_the_eager_form_in_float32() -> None:
    gen = torch.Generator().manual_seed(4)
    B, T, Dz, Da, Du, M = 64, 30, 5, 3, 1, 16
    p = {name: x.float() for name, x in random_problem(gen, B, T, Dz, Da, Du).items()}
    transition = random_mixture(gen, Dz, Du, Du, M, layers=3).to(torch.float32)
    with torch.no_grad(), in_form("fused"):
        fused = kalman_smoother(p["a"], p["u"], transition, p["H"], p["R"], p["mean0"], p["cov0"])
    with torch.no_grad(), in_form("eager"):
        eager = kalman_smoother(p["a"], p["u"], transition, p["H"], p["R"], p["mean0"], p["cov0"])
    for name in KalmanResult._fields:
        want = getattr(eager, name)
        torch.testing.assert_close(getattr(fused, name), want, rtol=1e-4, atol=1e-4 * want.abs().max().item(),
                                   msg=name)


def test_a_mixer_the_fused_kernel_does_not_compute_is_refused() -> None:
    F_bases, B_bases, Q_bases = torch.eye(2).repeat(3, 1, 1), torch.zeros(3, 2, 1), torch.ones(3, 2)
    with pytest.raises(TypeError, match="alternate Linear layers"):
        MixtureTransition.from_mlp(mlp(3, 4, 3, activation=torch.nn.Tanh), F_bases, B_bases, Q_bases)
    without_bias = torch.nn.Sequential(torch.nn.Linear(3, 3, bias=False))
    with pytest.raises(TypeError, match="with biases"):
        MixtureTransition.from_mlp(without_bias, F_bases, B_bases, Q_bases)


@pytest.mark.parametrize("part", ["F_bases", "B_bases", "Q_bases"])
def test_mixture_parts_that_do_not_fit_are_an_error_not_a_silent_result(part: str) -> None:
    gen = torch.Generator().manual_seed(5)
    p = random_problem(gen, 3, 4, 3, 2, 1)
    transition = random_mixture(gen, 3, 1, 1, 4, layers=2)
    wrong = {"F_bases": transition.F_bases[:, :2, :2], "B_bases": transition.B_bases[:3],  # 3 bases, 4 logits
             "Q_bases": transition.Q_bases[:, :2]}
    with in_form("fused"), pytest.raises(RuntimeError, match=f"{part} must be"):
        kalman_smoother(p["a"], p["u"], transition._replace(**{part: wrong[part]}), p["H"], p["R"], p["mean0"],
                        p["cov0"])


def test_fused_kernels_report_a_covariance_that_is_not_positive_definite() -> None:
    gen = torch.Generator().manual_seed(0)
    p = random_problem(gen, 3, 4, 3, 2, 1)
    transition = linear_transition(gen, 3, 1, False)
    with in_form("fused"), pytest.raises(RuntimeError, match="not positive definite"):
        kalman_smoother(p["a"], p["u"], transition, p["H"], -p["R"], p["mean0"], p["cov0"])


def test_without_a_compiler_the_smoother_warns_once_and_runs_its_eager_form(tmp_path) -> None:
    script = (
        "import warnings, torch\n"
        "from latentworld.probability import kalman_kernels\n"
        "from latentworld.probability.kalman import kalman_smoother\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    for _ in range(2):\n"
        "        out = kalman_smoother(torch.randn(2, 3, 1), torch.randn(2, 3, 1),\n"
        "            lambda z, u: (torch.eye(2).expand(2, 2, 2), torch.ones(2, 2, 1), 0.1 * torch.eye(2).expand(2, 2, 2)),\n"
        "            torch.ones(1, 2), torch.eye(1), torch.zeros(2, 2), torch.eye(2).expand(2, 2, 2))\n"
        "assert kalman_kernels.kernels() is None and torch.isfinite(out.smoothed_mean).all()\n"
        "print(sum('could not be built' in str(w.message) for w in caught))\n"
    )
    env = os.environ | {"CXX": "/bin/false", "LATENTWORLD_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"  # one warning, not one per call


def test_a_build_lock_left_by_a_killed_process_does_not_block_loading(tmp_path) -> None:
    # torch marks a build with a file named "lock" and waits for it to vanish; a process killed
    # inside the build (or the fault-injection test's kill) leaves it behind.
    built = kalman_kernels.build_dir()
    assert kalman_kernels.kernels() is not None
    copy = tmp_path / "cache" / built.name
    shutil.copytree(built, copy, ignore=shutil.ignore_patterns("*lock*"))
    (copy / "lock").touch()
    script = "from latentworld.probability import kalman_kernels\nassert kalman_kernels.kernels() is not None\n"
    env = os.environ | {"LATENTWORLD_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert not (copy / "lock").exists()


def test_the_kernels_can_be_switched_off(monkeypatch) -> None:
    monkeypatch.setenv(kalman_kernels.DISABLE_VARIABLE, "0")
    kalman_kernels.kernels.cache_clear()
    try:
        assert kalman_kernels.kernels() is None and not kalman_kernels.usable(torch.zeros(1))
    finally:
        monkeypatch.undo()
        kalman_kernels.kernels.cache_clear()
    assert kalman_kernels.kernels() is not None
