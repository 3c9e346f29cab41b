"""Control tasks (paper Fig. 6): what the goal is, how it is shown to the model, how the real env scores it.

- ``swingup``: r^pos toward the position encoded from an image of the upright pole. Real score: the
  dm_control swing-up return (1 per physics step with the pole within 8° of upright; 1000 at most).
- ``rotation``: r^vel toward the velocity encoded from an image sequence of the pole turning at
  ``goal_velocity`` rad/s. Real score: the mean angular velocity over the episode against the goal
  (and the env's return for reference).

Goal observations are rendered by the real env's own renderer: the upright pole at rest, and a
sequence whose angle advances by ``goal_velocity · dt`` per frame. They are pictures only (the
simulator is put into each pose and drawn; no physics step is taken, no real step is counted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from envs import RealEnv
from latentworld.goals import goal_from_images, goal_from_sequence

GOAL_SEQUENCE_LENGTH = 15  # frames of the rotation goal sequence (the data set's window length)


@dataclass(frozen=True)
class Task:
    """One control task of a real environment.

    Attributes:
        name: ``"swingup"`` or ``"rotation"``.
        env_name: the real env (``envs`` name) whose model the task needs.
        reward: ``"pos"`` or ``"vel"`` (paper §6.4).
        goal_velocity: rad/s of the rotation goal (``None`` for position tasks).
    """

    name: str
    env_name: str
    reward: str
    goal_velocity: float | None = None


def make_task(name: str, goal_velocity: float | None = None) -> Task:
    """``"swingup"`` or ``"rotation"`` (``goal_velocity`` rad/s, default 5; sign = direction)."""
    if name == "swingup":
        if goal_velocity is not None:
            raise ValueError("goal_velocity belongs to the rotation task, not to swingup")
        return Task("swingup", "pendulum", "pos")
    if name == "rotation":
        velocity = 5.0 if goal_velocity is None else float(goal_velocity)
        if not np.isfinite(velocity) or velocity == 0:
            raise ValueError(f"goal_velocity must be a finite non-zero number of rad/s, got {goal_velocity}")
        return Task("rotation", "pendulum", "vel", velocity)
    raise ValueError(f"unknown task {name!r}; choose 'swingup' or 'rotation'")


def render_pose(env: RealEnv, angle: float, velocity: float = 0.0) -> np.ndarray:
    """The observation frame of the pole at ``angle`` (0 = upright). Returns ``(H, W, C)`` uint8."""
    env.reset(seed=0, options={"state": np.array([angle, velocity])})
    return env._observe()


def goal_observations(task: Task, action_repeat: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The goal as the model must see it.

    Returns:
        swingup: the upright-pole image ``(H, W, C)`` and ``None``; rotation: frames ``(T, H, W, C)``
        of the pole turning at the goal velocity, and their actions ``(T, Du)`` (zeros).
    """
    env = RealEnv(task.env_name, action_repeat=action_repeat)
    try:
        if task.goal_velocity is None:
            return render_pose(env, 0.0), None
        angles = np.pi + task.goal_velocity * env.dt * np.arange(GOAL_SEQUENCE_LENGTH)
        frames = np.stack([render_pose(env, a, task.goal_velocity) for a in angles])
        actions = np.zeros((GOAL_SEQUENCE_LENGTH, *env.action_space.shape), np.float32)
        return frames, actions
    finally:
        env.close()


def encode_goal(model: torch.nn.Module, task: Task, action_repeat: int) -> Tensor:
    """The latent goal of ``task`` for ``model``: ``(Da,)`` position or ``(Dv,)`` velocity."""
    frames, actions = goal_observations(task, action_repeat)
    if actions is None:
        return goal_from_images(model, frames)
    return goal_from_sequence(model, frames, actions)
