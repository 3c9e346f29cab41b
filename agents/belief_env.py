"""The real MuJoCo env seen through the model's filter: a gymnasium env whose observation is the belief.

:class:`BeliefEnv` steps ``envs.RealEnv`` (with the action repeat the model was trained with) and
feeds every raw frame to a :class:`latentworld.latent_envs.observer.Observer`. The observation is the belief mean
over z (``(Dz,)`` float32: what the policy saw in the latent env), followed, for a goal-conditioned
task, by the episode's latent goal; the reward is the real env's own, and ``info`` carries the raw
frame (``"frame"``), the true state (``"state"``) and the goal for videos and metrics. Every physics
step taken is counted in ``info["physics_steps"]``; ``render()`` draws the real scene with the
task's markers (the reacher's target).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.tasks import ReachGoals
from envs import RealEnv
from latentworld.latent_envs.observer import Observer


class BeliefEnv(gym.Env):
    """Real env → filter → belief mean.

    Args:
        model: a model that can filter (see :class:`Observer`).
        env_name: the ``envs`` name (``"pendulum"``).
        action_repeat: physics control steps per env step (the model's data setting).
        goals: for a goal-conditioned task, what gives each episode its latent goal ``(Dg,)`` (it is
            appended to the observation); closed with the env.
    """

    def __init__(self, model: torch.nn.Module, env_name: str, action_repeat: int,
                 goals: ReachGoals | None = None) -> None:
        self.real = RealEnv(env_name, action_repeat=action_repeat, render_mode="rgb_array")
        self.observer = Observer(model)
        self.goals = goals
        self.goal = np.zeros(0, np.float32)
        self.action_space = self.real.action_space
        dim_goal = 0 if goals is None else model.position_dims
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (model.dim_z + dim_goal,), np.float32)
        self.physics_steps = 0
        self._pictures: RealEnv | None = None  # draws beliefs of joint-angle models (made on first use)

    def _observation(self, belief: np.ndarray) -> np.ndarray:
        return np.concatenate([belief, self.goal]) if self.goals is not None else belief

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        frame, info = self.real.reset(seed=seed, options=options)
        if self.goals is not None:
            # The goal pose's joint angles go into the reset's info, so an evaluation can tell a goal it
            # missed from one it reached.
            info["goal_angles"] = self.goals.angles(self.real)
            self.goal = self.goals.encode(info["goal_angles"]).numpy().astype(np.float32)
        belief = self.observer.reset(frame)
        return self._observation(belief), {**info, "frame": frame, "goal": self.goal, "physics_steps": self.physics_steps}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.clip(np.asarray(action, np.float32), self.action_space.low, self.action_space.high)
        frame, reward, terminated, truncated, info = self.real.step(action)
        self.physics_steps += self.real.action_repeat
        belief = self.observer.step(action, frame)
        return (self._observation(belief), reward, terminated, truncated,
                {**info, "frame": frame, "goal": self.goal, "physics_steps": self.physics_steps})

    def render(self) -> np.ndarray:
        """The real scene ``(H, W, 3)`` uint8, the task's markers drawn."""
        return self.real.render()

    @torch.no_grad()
    def render_belief(self, observation: np.ndarray) -> np.ndarray:
        """What the model believes, drawn like :meth:`render`: its decoded mean frame, or, for joint-angle
        observations, the system put (in a private copy of the env) into the decoded angles. ``(H, W, 3)`` uint8."""
        model = self.observer.model
        decoded = model.decode_mean(torch.as_tensor(observation[None, :model.dim_z]))[0]
        if decoded.ndim == 3:  # an image (C, H, W)
            image = (decoded.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            return np.repeat(image, 3, -1) if image.shape[-1] == 1 else image
        if self._pictures is None:
            self._pictures = RealEnv(self.real.env_spec.name, render_mode="rgb_array")
        features = decoded.numpy().reshape(-1, 2)  # (cos q, sin q) per joint
        angles = np.arctan2(features[:, 1], features[:, 0])
        markers = self._pictures.physics.model.geom_pos
        markers[:] = self.real.physics.model.geom_pos  # the same target, where the task has one
        self._pictures.set_state(np.concatenate([angles, np.zeros_like(angles)]))
        return self._pictures.render()

    def close(self) -> None:
        self.real.close()
        if self._pictures is not None:
            self._pictures.close()
        if self.goals is not None:
            self.goals.close()
