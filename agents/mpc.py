"""Model-predictive control by the cross-entropy method (CEM) over the latent dynamics.

No policy is trained: at every step the planner searches action sequences u_1..u_P from the current
belief mean with the model's mean dynamics, keeps the ``elites`` best by predicted return, refits a
Gaussian over sequences, and after ``iterations`` rounds applies the first action of the mean. The
mean is shifted by one step and reused at the next step (warm start).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from agents.problem import LatentProblem
from latentworld.common.errors import ConfigError
from latentworld.common.settings import MAX_SEED, check_settings, setting


@dataclass
class MPCConfig:
    """Settings of the CEM planner."""

    plan_horizon: int = setting(30, low=1)
    """P, steps of each planned action sequence."""
    samples: int = setting(256, low=1)
    """Action sequences evaluated per CEM round."""
    elites: int = setting(32, low=2)  # a spread needs two
    """Best sequences the Gaussian is refitted to."""
    iterations: int = setting(4, low=1)
    """CEM rounds per control step."""
    init_std: float = setting(0.75, low=0, low_open=True)
    """Initial standard deviation of the sampled actions, as a fraction of the action range's half-width."""
    seed: int = setting(0, low=0, high=MAX_SEED)
    """Seed of the planner's sampling stream."""

    def __post_init__(self) -> None:
        check_settings(self)
        if self.elites > self.samples:
            raise ConfigError(f"elites ({self.elites}) must not exceed samples ({self.samples})")


class CEMPlanner:
    """Controller that plans from each belief mean with the problem's mean dynamics.

    Args:
        problem: the latent problem (its goal and reward; planning always uses the mean dynamics). For a
            goal-conditioned task the goal is the part of each observation after z.
        config: planner settings.
    """

    def __init__(self, problem: LatentProblem, config: MPCConfig) -> None:
        self.config = config
        self.dynamics = problem.with_noise(0.0).dynamics
        self.goal = problem.goal
        self.goal_conditioned = problem.task.goal_conditioned
        self.low, self.high = problem.action_low, problem.action_high
        self.generator = torch.Generator().manual_seed(config.seed)
        self._mean: Tensor | None = None

    def reset(self) -> None:
        self._mean = None

    @torch.no_grad()
    def plan(self, z: Tensor) -> Tensor:
        """Plan from a batch of states ``(N, Dz)``. Returns the first actions ``(N, Du)``."""
        cfg, n, dim_u = self.config, z.shape[0], self.low.shape[0]
        centre, half = (self.high + self.low) / 2, (self.high - self.low) / 2
        warm = self._mean is not None and self._mean.shape[0] == n  # a plan of another batch does not carry over
        mean = self._mean if warm else centre.expand(n, cfg.plan_horizon, dim_u).clone()
        std = (cfg.init_std * half).expand(n, cfg.plan_horizon, dim_u).clone()
        for _ in range(cfg.iterations):
            noise = torch.randn((n, cfg.samples, cfg.plan_horizon, dim_u), generator=self.generator)
            actions = torch.max(torch.min(mean[:, None] + std[:, None] * noise, self.high), self.low)
            returns = self._returns(z, actions)  # (N, S)
            elite = returns.topk(cfg.elites, dim=1).indices  # (N, E)
            chosen = torch.gather(actions, 1, elite[..., None, None].expand(-1, -1, cfg.plan_horizon, dim_u))
            mean, std = chosen.mean(1), chosen.std(1) + 1e-3 * half
        self._mean = torch.cat([mean[:, 1:], mean[:, -1:]], 1)  # warm start for the next step
        return mean[:, 0]

    def _returns(self, z: Tensor, actions: Tensor) -> Tensor:
        """Predicted returns ``(N, S)`` of action sequences ``(N, S, P, Du)`` from states ``(N, Dz)``."""
        n, samples = actions.shape[:2]
        state = z[:, None].expand(-1, samples, -1).reshape(n * samples, -1)
        flat = actions.reshape(n * samples, self.config.plan_horizon, -1)
        total = torch.zeros(n * samples)
        for t in range(self.config.plan_horizon):
            state = self.dynamics.transition(state, flat[:, t])
            total = total + self.dynamics.reward(state, self.goal)
        return total.reshape(n, samples)

    def act(self, observation: np.ndarray) -> np.ndarray:
        observation = torch.as_tensor(np.asarray(observation, np.float32))
        if self.goal_conditioned:
            self.goal = observation[self.dynamics.dim_z:]
        return self.plan(observation[None, :self.dynamics.dim_z])[0].numpy().astype(np.float32)
