"""The real MuJoCo env seen through the model's filter: a gymnasium env whose observation is the belief.

:class:`BeliefEnv` steps ``envs.RealEnv`` (with the action repeat the model was trained with) and
feeds every raw frame to a :class:`latentworld.latent_envs.observer.Observer`. The observation is the belief mean
over z (``(Dz,)`` float32: what the policy saw in the latent env), the reward is the real env's own,
and ``info`` carries the raw frame (``"frame"``) and the true state (``"state"``) for videos and
metrics. Every physics step taken is counted in ``info["physics_steps"]``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from envs import RealEnv
from latentworld.latent_envs.observer import Observer


class BeliefEnv(gym.Env):
    """Real env → filter → belief mean.

    Args:
        model: a model that can filter (see :class:`Observer`).
        env_name: the ``envs`` name (``"pendulum"``).
        action_repeat: physics control steps per env step (the model's data setting).
    """

    def __init__(self, model: torch.nn.Module, env_name: str, action_repeat: int) -> None:
        self.real = RealEnv(env_name, action_repeat=action_repeat)
        self.observer = Observer(model)
        self.action_space = self.real.action_space
        dim_z = model.dim_z
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim_z,), np.float32)
        self.physics_steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        frame, info = self.real.reset(seed=seed, options=options)
        return self.observer.reset(frame), {**info, "frame": frame, "physics_steps": self.physics_steps}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.clip(np.asarray(action, np.float32), self.action_space.low, self.action_space.high)
        frame, reward, terminated, truncated, info = self.real.step(action)
        self.physics_steps += self.real.action_repeat
        belief = self.observer.step(action, frame)
        return belief, reward, terminated, truncated, {**info, "frame": frame, "physics_steps": self.physics_steps}

    def close(self) -> None:
        self.real.close()
