"""Priors of the initial state p(z_1): the variational hierarchical prior (VHP, paper Eq. 6)
and the standard normal (the ablation).

Both expose ``log_prob_bound(z) -> (B,)`` (a lower bound on ``log p(z_1)``, exact for the
standard normal) and ``sample(n, generator) -> (n, Dz)``, so any model can use either.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from latentworld.models.networks import mlp
from latentworld.probability.noise import batch_noise

LOG_2PI = math.log(2 * math.pi)


def diag_gaussian_log_prob(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """log N(x; mean, diag exp(logvar)) summed over the last dim. Shapes ``(..., D)`` → ``(...)``."""
    return -0.5 * (((x - mean) ** 2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)


class StandardNormalPrior(nn.Module):
    """p(z_1) = N(0, I)."""

    def __init__(self, dim_z: int) -> None:
        super().__init__()
        self.dim_z = dim_z
        # Follows the model's dtype and device (``.double()``, ``.to(...)``); not saved.
        self.register_buffer("anchor", torch.zeros(()), persistent=False)

    def log_prob_bound(self, z: Tensor) -> Tensor:
        """Args: z ``(B, Dz)``. Returns: log N(z; 0, I) ``(B,)``."""
        return diag_gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Returns: ``(n, Dz)`` samples."""
        return torch.randn(n, self.dim_z, generator=generator, dtype=self.anchor.dtype, device=self.anchor.device)


class VariationalHierarchicalPrior(nn.Module):
    """p(z_1) = ∫ p_ψ0(z_1|ζ) N(ζ; 0, I) dζ, trained through the VAE-style bound F_VHP of Eq. 6
    with an encoder q_φ0(ζ|z_1); both conditionals are diagonal Gaussians given by MLPs.

    Args:
        dim_z: size of z.
        dim_zeta: size of ζ.
        hidden: width of the two hidden layers.
    """

    def __init__(self, dim_z: int, dim_zeta: int = 2, hidden: int = 64) -> None:
        super().__init__()
        self.dim_z, self.dim_zeta = dim_z, dim_zeta
        self.encoder = mlp(dim_z, hidden, 2 * dim_zeta, activation=nn.Tanh)
        self.decoder = mlp(dim_zeta, hidden, 2 * dim_z, activation=nn.Tanh)

    def _decode(self, zeta: Tensor) -> tuple[Tensor, Tensor]:
        mean, logvar = self.decoder(zeta).chunk(2, dim=-1)
        return mean, logvar.clamp(-10.0, 4.0)

    def log_prob_bound(self, z: Tensor) -> Tensor:
        """F_VHP(z) = E_q(ζ|z)[log p(z|ζ)] − KL(q(ζ|z) ‖ N(0, I)), one reparameterised sample.

        Args: z ``(B, Dz)``. Returns: ``(B,)``.
        """
        mean_q, logvar_q = self.encoder(z).chunk(2, dim=-1)
        logvar_q = logvar_q.clamp(-10.0, 4.0)
        zeta = mean_q + batch_noise(mean_q) * torch.exp(0.5 * logvar_q)
        kl = 0.5 * (mean_q**2 + logvar_q.exp() - 1.0 - logvar_q).sum(-1)
        mean_p, logvar_p = self._decode(zeta)
        return diag_gaussian_log_prob(z, mean_p, logvar_p) - kl

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """ζ ~ N(0, I), z ~ p(z|ζ). Returns: ``(n, Dz)``."""
        reference = next(self.parameters())
        zeta = torch.randn(n, self.dim_zeta, generator=generator, dtype=reference.dtype, device=reference.device)
        mean, logvar = self._decode(zeta)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + noise * torch.exp(0.5 * logvar)


def make_prior(kind: str, dim_z: int, hidden: int = 64) -> nn.Module:
    """``"vhp"`` or ``"normal"``."""
    if kind == "vhp":
        return VariationalHierarchicalPrior(dim_z, hidden=hidden)
    if kind == "normal":
        return StandardNormalPrior(dim_z)
    raise ValueError(f"unknown prior {kind!r}; use 'vhp' or 'normal'")
