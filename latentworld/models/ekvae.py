"""The extended Kalman VAE (paper §4): the Kalman VAE (``kalman_vae.py``) whose mixing weights are
a function of the state, α = softmax(g(z_t, u_t)), so the transition is nonlinear in z and the
smoother linearises it at the filtered mean (neural linearisation, §4.1). z_t alone is the state:
the model imagines and filters one step at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from latentworld.common.settings import setting
from latentworld.models.base import Belief
from latentworld.models.kalman_vae import KalmanVAE, KalmanVAEConfig
from latentworld.models.networks import mlp
from latentworld.probability.kalman import Transition, kalman_filter_step, kalman_update
from latentworld.probability.mixture_transition import MixtureTransition


@dataclass
class EKVAEConfig(KalmanVAEConfig):
    """The EKVAE's sizes and options (``model.kind: ekvae``): the Kalman VAE's and the mixer's width."""

    kind: str = setting("ekvae", choices=("ekvae",))
    """The model (the registry name in ``latentworld.models.MODELS``)."""
    mixer_hidden: int = setting(64, low=1)
    """Width of the MLP g(z, u) that predicts the mixing weights."""


class EKVAE(KalmanVAE):
    """Extended Kalman VAE.

    Args:
        config: sizes and options.
        obs_shape: ``(C, H, W)`` for images, ``(Dobs,)`` for vectors.
        dim_u: action size.
    """

    kind = "ekvae"
    config_class = EKVAEConfig

    def build_mixing_network(self, config: EKVAEConfig) -> None:
        """g(z, u): an MLP from the state and the action to M logits."""
        self.mixer = mlp(config.dim_z + self.dim_u, config.mixer_hidden, config.num_bases)

    def mixing_weights(self, z: Tensor, v: Tensor) -> Tensor:
        """softmax(g(z, u)) ``(N, M)`` for z ``(N, Dz)``, u = v ``(N, Du)``."""
        return torch.softmax(self.mixer(torch.cat([z, v], dim=-1)), dim=-1)

    def smoother_transition(self) -> Transition:
        """The transition declared as a mixture, so that on the CPU the smoother's whole filter, the mixer
        included, runs in one call of the fused kernels. A subclass that changes how the transition is
        computed (overrides :meth:`mixing_weights`, :meth:`transition` or ``_mixture``) gets
        :meth:`transition` itself, which the declaration would not follow."""
        own = all(getattr(type(self), name) is getattr(EKVAE, name)
                  for name in ("mixing_weights", "transition", "_mixture"))
        if not own:
            return self.transition
        return MixtureTransition.from_mlp(self.mixer, self.F_bases, self.B_bases, self.Q_logvar_bases.exp())

    def sample_next(self, z: Tensor, u: Tensor, generator: torch.Generator | None = None,
                    noise_scale: float = 1.0) -> Tensor:
        """One reparameterised sample of p(z_{t+1} | z_t, u_t), the noise's standard deviation scaled by
        ``noise_scale`` (0 = the mean). Args ``(N, Dz)``, ``(N, Du)``. Returns ``(N, Dz)``."""
        mean, q_var = self.next_mean(z, u)
        if noise_scale == 0:
            return mean
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + noise_scale * noise * q_var.sqrt()

    @torch.no_grad()
    def predict(self, x: Tensor, u: Tensor, n_condition: int = 5, mode: str = "smoothed") -> Tensor:
        """Open-loop prediction (the metrics protocol): condition on the first ``n_condition`` frames, then
        roll the transition mean forward with the true actions and decode the mean observation.

        ``"smoothed"``: z_1 ~ smoothed q(z_1 | x_{1:n}, u_{1:n-1}), frames 1..T are predicted.
        ``"filtered"``: z_n ~ filter(x_{1:n}), frames n..T are predicted.

        Args: x ``(B, T, *obs_shape)``, u ``(B, T, Du)``.
        Returns: predicted mean observations ``(B, T', *obs_shape)`` (T' = T or T - n + 1).
        """
        z, start = self.conditioned_start(x, u, n_condition, mode)
        zs = [z]
        for t in range(start, x.shape[1] - 1):
            z = self.next_mean(z, u[:, t])[0]
            zs.append(z)
        return self.decode_mean(torch.stack(zs, dim=1))

    @torch.no_grad()
    def filter_step(self, belief: Belief | None, u_prev: Tensor | None, x: Tensor) -> Belief:
        """Online filtering, one frame at a time (the real-env controller).

        Args:
            belief: the filtered belief of z_{t-1} or None at the first frame.
            u_prev: the action ``(B, Du)`` applied since the last frame (ignored at the first).
            x: the new frame ``(B, *obs_shape)``.
        Returns: the filtered belief of z_t.
        """
        a = self.encoder(x)[0]
        if belief is None:
            mean, cov = self.initial_belief(x.shape[0])
            return kalman_update(mean, cov, a, self.H, self.R)[:2]
        return kalman_filter_step(belief[0], belief[1], u_prev, a, self.transition, self.H, self.R)

