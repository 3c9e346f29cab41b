"""Registration of the latent env ids with gymnasium.

``import latentworld`` registers ``LatentPendulum-v0`` and ``LatentReacher-v0``. Without that
import, gymnasium 1.x (which loads no plugins) finds them through its ``module:id`` syntax:
``gymnasium.make("latentworld:LatentPendulum-v0")`` imports ``latentworld`` first.
"""

from __future__ import annotations

import gymnasium as gym

LATENT_ENVS = {
    # id: default checkpoint (a shipped pretrained name) or None when a model path is required
    "LatentPendulum-v0": "pendulum_ekvae",
    "LatentReacher-v0": "reacher_angles_ekvae",
}


def register_envs() -> None:
    """Register the ids (idempotent)."""
    for env_id, default_model in LATENT_ENVS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="latentworld.latent_envs.latent_env:LatentEnv",
            vector_entry_point="latentworld.latent_envs.latent_vec_env:LatentVectorEnv",
            kwargs={"default_model": default_model},
            disable_env_checker=False,
        )
