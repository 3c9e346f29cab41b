"""What acts: one interface, ``act(belief) -> action``, whoever trained (or planned) it.

``belief`` is the belief mean over z, ``(Dz,)`` float32 (see ``latentworld.latent_envs.observer``: the policy
observes the belief mean, in the latent env and in the real one). ``reset()`` is called at the start
of every episode (planners drop their warm start there; policies are stateless).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn


class Controller(Protocol):
    """Anything that acts from a belief mean."""

    def reset(self) -> None:
        """A new episode starts."""

    def act(self, belief: np.ndarray) -> np.ndarray:
        """Args: belief mean ``(Dz,)``. Returns the action ``(Du,)`` float32 inside the action box."""


class NetworkController:
    """A torch policy ``(N, Dz) -> (N, Du)`` (the J(ω) policy, or an SB3 actor wrapped as one)."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network.eval()

    def reset(self) -> None:
        pass

    @torch.no_grad()
    def act(self, belief: np.ndarray) -> np.ndarray:
        obs = torch.as_tensor(np.asarray(belief, np.float32))[None]
        return self.network(obs)[0].numpy().astype(np.float32)


class RandomController:
    """Uniformly random actions (a baseline), from its own seeded stream."""

    def __init__(self, low: np.ndarray, high: np.ndarray, seed: int = 0) -> None:
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def act(self, belief: np.ndarray) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)


class ZeroController:
    """Always the zero action (a baseline: the pendulum hangs where it falls)."""

    def __init__(self, dim_u: int) -> None:
        self.dim_u = dim_u

    def reset(self) -> None:
        pass

    def act(self, belief: np.ndarray) -> np.ndarray:
        return np.zeros(self.dim_u, np.float32)
