"""Closed-form Gaussian quantities with full covariances, batched over leading dims.

Everything is computed through Cholesky factors and triangular solves (no inverses).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from latentworld.probability.kalman import default_jitter
from latentworld.probability.noise import batch_noise

LOG_2PI = math.log(2 * math.pi)


def safe_cholesky(cov: Tensor) -> Tensor:
    """Cholesky factor of a symmetric PD matrix ``(..., D, D)`` with the dtype's small diagonal jitter."""
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    return torch.linalg.cholesky(0.5 * (cov + cov.mT) + default_jitter(cov.dtype) * eye)


def mvn_log_prob(x: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """log N(x; mean, cov). Args: x, mean ``(..., D)``; cov ``(..., D, D)``. Returns ``(...)``."""
    chol = safe_cholesky(cov)
    white = torch.linalg.solve_triangular(chol, (x - mean).unsqueeze(-1), upper=False).squeeze(-1)
    half_logdet = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * (white**2).sum(-1) - half_logdet - 0.5 * x.shape[-1] * LOG_2PI


def mvn_entropy(cov: Tensor) -> Tensor:
    """Differential entropy of N(·, cov). Args: cov ``(..., D, D)``. Returns ``(...)``."""
    chol = safe_cholesky(cov)
    dim = cov.shape[-1]
    return 0.5 * dim * (1.0 + LOG_2PI) + torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)


def mvn_kl(mean0: Tensor, cov0: Tensor, mean1: Tensor, cov1: Tensor) -> Tensor:
    """KL(N(mean0, cov0) ‖ N(mean1, cov1)). Means ``(..., D)``, covs ``(..., D, D)``. Returns ``(...)``."""
    chol0, chol1 = safe_cholesky(cov0), safe_cholesky(cov1)
    # tr(cov1^-1 cov0) = ||chol1^-1 chol0||_F^2
    trace = torch.linalg.solve_triangular(chol1, chol0, upper=False).pow(2).sum((-2, -1))
    white = torch.linalg.solve_triangular(chol1, (mean1 - mean0).unsqueeze(-1), upper=False).squeeze(-1)
    logdet1 = 2 * torch.log(torch.diagonal(chol1, dim1=-2, dim2=-1)).sum(-1)
    logdet0 = 2 * torch.log(torch.diagonal(chol0, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * (trace + (white**2).sum(-1) - mean0.shape[-1] + logdet1 - logdet0)


def expected_observation_nll(a: Tensor, mean: Tensor, cov: Tensor, H: Tensor, R: Tensor) -> Tensor:
    """E_{z ~ N(mean, cov)}[−log N(a; H z, R)] in closed form (paper Eq. 18's first term), R diagonal:
    −log N(a; H mean, R) + tr(R⁻¹ H cov Hᵀ) / 2.

    Args: a ``(B, Da)``, mean ``(B, Dz)``, cov ``(B, Dz, Dz)``, H ``(Da, Dz)``, R ``(Da, Da)``. Returns ``(B,)``.
    """
    trace = 0.5 * torch.diagonal(H @ cov @ H.T, dim1=-2, dim2=-1).div(torch.diagonal(R)).sum(-1)
    return -mvn_log_prob(a, mean @ H.T, R.expand(a.shape[0], -1, -1)) + trace


def mvn_sample(mean: Tensor, cov: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One reparameterised sample. Args: mean ``(..., D)``, cov ``(..., D, D)``. Returns ``(..., D)``."""
    noise = batch_noise(mean, generator)
    return mean + (safe_cholesky(cov) @ noise.unsqueeze(-1)).squeeze(-1)
