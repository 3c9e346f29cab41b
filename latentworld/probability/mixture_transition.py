"""The neurally linearised transition of the EKVAE (paper Eq. 9, 10), declared as data so that the
Kalman smoother can run its whole filter in one fused kernel call.

    α = softmax(mlp([z, v])),   F = Σ_m α_m F_m,   Bu = Σ_m α_m B_m,   Q = diag(Σ_m α_m q_m),

the mixer an MLP of linear layers with ReLU between. Called like any
:data:`latentworld.probability.kalman.Transition`, it computes this with eager torch ops; passed to
:func:`latentworld.probability.kalman.kalman_smoother`, on the CPU the whole filter runs in
:class:`latentworld.probability.kalman_kernels.FusedMixtureFilter` with no Python between steps.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class MixtureTransition(NamedTuple):
    """A mixture of base matrices weighted by an MLP of the state and the inputs.

    Attributes:
        weights: the mixer's linear layers' weights, ``(out, in)`` each; the first reads
            ``in = Dz + Dv``, the last gives ``out = M`` logits.
        biases: their biases, ``(out,)`` each.
        F_bases: ``(M, Dz, Dz)``.
        B_bases: ``(M, Dz, Du)``; they act on the first Du columns of v (the actions), the other
            columns only steer the mixture.
        Q_bases: ``(M, Dz)``, the diagonals of the process-noise covariances (variances, positive).
    """

    weights: tuple[Tensor, ...]
    biases: tuple[Tensor, ...]
    F_bases: Tensor
    B_bases: Tensor
    Q_bases: Tensor

    @classmethod
    def from_mlp(cls, mixer: nn.Sequential, F_bases: Tensor, B_bases: Tensor, Q_bases: Tensor
                 ) -> MixtureTransition:
        """From a mixer built as ``Linear, ReLU, ..., Linear`` (:func:`latentworld.models.networks.mlp`).

        Raises:
            TypeError: for any other layer layout, which the fused kernel does not compute.
        """
        layers = list(mixer)
        linear = layers[0::2]
        if not (all(isinstance(layer, nn.Linear) and layer.bias is not None for layer in linear)
                and all(isinstance(layer, nn.ReLU) for layer in layers[1::2]) and len(layers) % 2 == 1):
            raise TypeError(f"the mixer must alternate Linear layers (with biases) and ReLU and end with a Linear, "
                            f"got {mixer}")
        return cls(tuple(layer.weight for layer in linear), tuple(layer.bias for layer in linear),
                   F_bases, B_bases, Q_bases)

    def to(self, *args, **kwargs) -> MixtureTransition:
        """The same transition with every tensor moved or cast by ``Tensor.to(*args, **kwargs)``."""
        def move(x: Tensor) -> Tensor:
            return x.to(*args, **kwargs)

        return MixtureTransition(tuple(map(move, self.weights)), tuple(map(move, self.biases)),
                                 move(self.F_bases), move(self.B_bases), move(self.Q_bases))

    def tensors(self) -> tuple[Tensor, ...]:
        """Every tensor it is made of (to check their device and dtype)."""
        return (*self.weights, *self.biases, self.F_bases, self.B_bases, self.Q_bases)

    def mixing_weights(self, z: Tensor, v: Tensor) -> Tensor:
        """α ``(N, M)`` at z ``(N, Dz)``, v ``(N, Dv)``."""
        h = torch.cat([z, v], dim=-1)
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            h = nn.functional.linear(h, weight, bias)
            if layer + 1 < len(self.weights):
                h = torch.relu(h)
        return torch.softmax(h, dim=-1)

    def __call__(self, z: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The transition at (z ``(N, Dz)``, v ``(N, Dv)``): see :func:`as_transition`."""
        alpha = self.mixing_weights(z, v)
        return as_transition(*mix_bases(alpha, self.F_bases, self.B_bases, self.Q_bases), v.shape[-1])


def mix_bases(alpha: Tensor, F_bases: Tensor, B_bases: Tensor, Q_bases: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The mixtures weighted by α ``(N, M)``: F ``(N, Dz, Dz)``, B ``(N, Dz, Du)`` and the diagonal of Q
    ``(N, Dz)``, from F_bases ``(M, Dz, Dz)``, B_bases ``(M, Dz, Du)``, Q_bases ``(M, Dz)``."""
    n, (dz, du) = alpha.shape[0], B_bases.shape[1:]
    return (alpha @ F_bases.flatten(1)).view(n, dz, dz), (alpha @ B_bases.flatten(1)).view(n, dz, du), alpha @ Q_bases


def as_transition(F: Tensor, B: Tensor, q_var: Tensor, dv: int) -> tuple[Tensor, Tensor, Tensor]:
    """The Kalman core's ``(F (N, Dz, Dz), Bu (N, Dz, Dv), Q (N, Dz, Dz))`` from mixtures ``F``, ``B (N, Dz,
    Du)`` and ``q_var (N, Dz)``: B padded with zeros to the Dv transition inputs (the columns beyond the
    actions only steer the mixture), Q diagonal."""
    if dv > B.shape[-1]:
        B = nn.functional.pad(B, (0, dv - B.shape[-1]))
    return F, B, torch.diag_embed(q_var)
