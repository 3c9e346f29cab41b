"""Kalman VAE (KVAE; Fraccaro, Kamronn, Paquet and Winther, "A Disentangled Recognition and Nonlinear
Dynamics Model for Unsupervised Learning", 2017), the paper's Table 2 baseline.

The Kalman VAE of ``kalman_vae.py`` with the mixing weights of the base matrices from a recurrent
network over the pseudo-observations: α_t = softmax(W h_t), h_t = LSTM(a_{1:t}), so the transition
z_t → z_{t+1} is linear-Gaussian given a_{1:t} and the posterior of z is exact Kalman smoothing.
As in the KVAE, the observation matrix H (the KVAE's C) is learned by default (``learn_h``); here it
is one matrix rather than a mixture, since the smoother's observation model is time-invariant.

The LSTM state h_t is part of the model's state beside z_t (the paper's point in §6.3: the
velocity ends up in h, not in z), so the KVAE is not Markov in z: it trains, is evaluated and
predicts (carrying h inside ``predict``), but latent envs and the real-env observer refuse it.
Predictions from the smoothed z_1 start the LSTM from a_1 alone, as the paper's Table 2 does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from latentworld.common.settings import setting
from latentworld.models.base import Belief
from latentworld.models.kalman_vae import KalmanVAE, KalmanVAEConfig


@dataclass
class KVAEConfig(KalmanVAEConfig):
    """The KVAE's sizes and options (``model.kind: kvae``): the Kalman VAE's and the LSTM's width."""

    kind: str = setting("kvae", choices=("kvae",))
    """The model (the registry name in ``latentworld.models.MODELS``)."""
    learn_h: bool = True
    """Learn H (the KVAE's C) instead of the rectangular identity."""
    lstm_hidden: int = setting(32, low=1)
    """Width of the LSTM over a_{1:t} whose state sets the mixing weights."""


class KVAE(KalmanVAE):
    """Kalman VAE.

    Args:
        config: sizes and options.
        obs_shape: ``(C, H, W)`` for images, ``(Dobs,)`` for vectors.
        dim_u: action size.
    """

    kind = "kvae"
    config_class = KVAEConfig
    markovian = False
    linear_given_inputs = True

    def build_mixing_network(self, config: KVAEConfig) -> None:
        """The LSTM over a_{1:t} and its linear read-out W to M logits."""
        self.lstm = nn.LSTM(config.dim_a, config.lstm_hidden, batch_first=True)
        self.mixing_out = nn.Linear(config.lstm_hidden, config.num_bases)

    def _weights(self, hidden: Tensor) -> Tensor:
        """softmax(W h) ``(..., M)`` from LSTM outputs ``(..., H)``."""
        return torch.softmax(self.mixing_out(hidden), dim=-1)

    def transition_inputs(self, a: Tensor, u: Tensor) -> Tensor:
        """(u_t, α_t) ``(B, T, Du + M)``, α_t from the LSTM over a_{1:t} ``(B, T, Da)``."""
        hidden, _ = self.lstm(a)
        return torch.cat([u, self._weights(hidden)], dim=-1)

    def mixing_weights(self, z: Tensor, v: Tensor) -> Tensor:
        """α, the columns of v ``(N, Du + M)`` after the actions (they do not depend on z)."""
        return v[:, self.dim_u:]

    @torch.no_grad()
    def predict(self, x: Tensor, u: Tensor, n_condition: int = 5, mode: str = "smoothed") -> Tensor:
        """Open-loop prediction as the EKVAE's, carrying the LSTM: from the smoothed z_1 with the LSTM
        after a_1 (``"smoothed"``), or from the filtered z_n with the LSTM after a_{1:n} (``"filtered"``);
        each predicted z gives the next LSTM input a = H z.

        Args: x ``(B, T, *obs_shape)``, u ``(B, T, Du)``.
        Returns: ``(B, T', *obs_shape)`` (T' = T or T - n + 1).
        """
        z, start = self.conditioned_start(x, u, n_condition, mode)
        a_seen = self.encode(x[:, :start + 1])[0]  # a_1 (smoothed) or a_{1:n} (filtered)
        hidden, state = self.lstm(a_seen)
        hidden = hidden[:, -1]
        zs = [z]
        for t in range(start, x.shape[1] - 1):
            z = self.next_mean(z, torch.cat([u[:, t], self._weights(hidden)], dim=-1))[0]
            zs.append(z)
            output, state = self.lstm((z @ self.H.T)[:, None], state)
            hidden = output[:, 0]
        return self.decode_mean(torch.stack(zs, dim=1))

    def sample_next(self, z: Tensor, u: Tensor, generator: torch.Generator | None = None,
                    noise_scale: float = 1.0) -> Tensor:
        self.refuse_step_by_step("sample_next (imagination)")

    def filter_step(self, belief: Belief | None, u_prev: Tensor | None, x: Tensor) -> Belief:
        self.refuse_step_by_step("filter_step (online filtering)")
