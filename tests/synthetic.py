"""A tiny synthetic pendulum data set in the project's format, for tests that need no MuJoCo."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latentworld.common.data import save_dataset


def write_synthetic_pendulum(path: Path, n: int = 12, steps: int = 6, size: int = 16, seed: int = 0) -> Path:
    """Damped pendulum under random torques, drawn as a bright pole on black. Returns the path."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(-np.pi, np.pi, n)
    velocity = rng.uniform(-3, 3, n)
    actions = rng.uniform(-1, 1, (n, steps, 1)).astype(np.float32)
    obs = np.zeros((n, steps, size, size, 1), np.uint8)
    states = np.zeros((n, steps, 2), np.float32)
    radius = np.linspace(0, size / 2 - 1, 12)
    for t in range(steps):
        states[:, t] = np.stack([np.angle(np.exp(1j * angle)), velocity], 1)
        rows = np.clip((size / 2 - np.cos(angle)[:, None] * radius).astype(int), 0, size - 1)
        cols = np.clip((size / 2 + np.sin(angle)[:, None] * radius).astype(int), 0, size - 1)
        for i in range(n):
            obs[i, t, rows[i], cols[i], 0] = 255
        velocity = velocity + 0.1 * (-np.sin(angle) + actions[:, t, 0])
        angle = angle + 0.1 * velocity
    split = n // 4
    metadata = {"env_id": "synthetic/pendulum", "name": "pendulum", "obs_type": "image", "seed": seed,
                "action_repeat": 1, "image_size": size, "state_names": ["hinge_angle", "hinge_velocity"],
                "angle_state_dims": [0], "action_low": [-1.0], "action_high": [1.0]}
    return save_dataset(path, obs, actions, states, np.arange(split, n), np.arange(split), metadata)
