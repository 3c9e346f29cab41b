"""The policy network π_ω(u | z) that the J(ω) optimiser trains.

Deterministic: u = low + (high − low) · (tanh(f_ω((o − μ) / σ)) + 1) / 2, with o the belief mean.
The observation scaling (μ, σ) is fixed at
construction from the training start states and saved with the weights, so the network sees
inputs of order one whatever the model's latent scale.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MLPPolicy(nn.Module):
    """Tanh-squashed MLP policy over latent observations.

    Args:
        obs_mean: ``(Do,)`` observation mean used for scaling.
        obs_std: ``(Do,)`` observation standard deviation used for scaling.
        action_low: ``(Du,)`` lower action bound.
        action_high: ``(Du,)`` upper action bound.
        hidden: width of the two hidden layers.
    """

    def __init__(self, obs_mean: Tensor, obs_std: Tensor, action_low: Tensor, action_high: Tensor,
                 hidden: int = 64) -> None:
        super().__init__()
        dim_obs, dim_u = obs_mean.shape[0], action_low.shape[0]
        self.register_buffer("obs_mean", obs_mean.float().clone())
        self.register_buffer("obs_std", obs_std.float().clamp_min(1e-6).clone())
        self.register_buffer("action_low", action_low.float().clone())
        self.register_buffer("action_high", action_high.float().clone())
        self.net = nn.Sequential(nn.Linear(dim_obs, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                                 nn.Linear(hidden, dim_u))

    def forward(self, obs: Tensor) -> Tensor:
        """Args: obs ``(N, Do)``. Returns actions ``(N, Du)`` inside the action box."""
        squashed = torch.tanh(self.net((obs - self.obs_mean) / self.obs_std))
        return self.action_low + (self.action_high - self.action_low) * (squashed + 1) / 2
