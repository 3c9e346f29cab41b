"""Imagined rollouts: episodes of a latent env under random actions, decoded to frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from latentworld.evaluation.plots import plot_frame_grid
from latentworld.latent_envs.latent_env import LatentEnv


def imagine(model: str, goal: Any = None, reward: str = "pos", episodes: int = 4, horizon: int = 30,
            seed: int = 0, out: str | Path | None = None) -> dict[str, Any]:
    """Roll out ``episodes`` latent episodes with uniformly random actions.

    Returns:
        ``{"returns": [...], "mean_return": float, "figure": path or None}``; the figure shows the
        decoded mean frame of every step (image models only).
    """
    env = LatentEnv(model=model, goal=goal, reward=reward, horizon=horizon, render_mode="rgb_array")
    env.action_space.seed(seed)
    returns, frames = [], []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        episode_frames, total, done = [env.render()], 0.0, False
        while not done:
            _, reward_t, terminated, truncated, _ = env.step(env.action_space.sample())
            total += reward_t
            done = terminated or truncated
            episode_frames.append(env.render())
        returns.append(total)
        frames.append(episode_frames)
    figure = None
    if out is not None and frames[0][0] is not None:
        figure = plot_frame_grid(np.array(frames), Path(out), title=f"imagined episodes ({reward} reward, "
                                 f"random actions); returns {', '.join(f'{r:.1f}' for r in returns)}")
    return {"returns": returns, "mean_return": float(np.mean(returns)), "figure": str(figure) if figure else None}
