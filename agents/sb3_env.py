"""stable-baselines3 ``VecEnv`` over one tensor-batched latent env (no per-env Python objects).

The library (``latentworld``) does not import stable-baselines3; this adapter lives with the agents.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from latentworld.latent_envs.latent_vec_env import LatentVectorEnv


class SB3LatentVecEnv(VecEnv):
    """stable-baselines3 ``VecEnv`` over one :class:`LatentVectorEnv` (no per-env Python objects).

    Args: as :class:`LatentVectorEnv`, plus ``seed`` for the first reset and an optional fixed
    observation scaling: the agent sees ``(obs - obs_mean) / obs_std`` (``(D,)`` each), so that latent
    dims of very different spread reach its networks at order one. Rewards are not changed.
    """

    def __init__(self, num_envs: int, seed: int | None = None, obs_mean: np.ndarray | None = None,
                 obs_std: np.ndarray | None = None, **kwargs: Any) -> None:
        self.venv = LatentVectorEnv(num_envs=num_envs, **kwargs)
        super().__init__(num_envs, self.venv.single_observation_space, self.venv.single_action_space)
        dim = self.venv.single_observation_space.shape[0]
        self._shift = np.zeros(dim, np.float32) if obs_mean is None else np.asarray(obs_mean, np.float32)
        self._scale = np.ones(dim, np.float32) if obs_std is None else np.asarray(obs_std, np.float32)
        if self._shift.shape != (dim,) or self._scale.shape != (dim,) or not (self._scale > 0).all():
            raise ValueError(f"obs_mean and obs_std must have shape ({dim},), obs_std > 0")
        self._seed_next = seed
        self._actions: np.ndarray | None = None

    def _scaled(self, obs: np.ndarray) -> np.ndarray:
        return ((obs - self._shift) / self._scale).astype(np.float32)

    def reset(self) -> np.ndarray:
        obs, _ = self.venv.reset(seed=self._seed_next)
        self._seed_next = None
        return self._scaled(obs)

    def seed(self, seed: int | None = None) -> list[int | None]:
        self._seed_next = seed
        return [seed] * self.num_envs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, np.float32).reshape(self.venv.action_space.shape)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, rewards, terminated, truncated, infos = self.venv.step(self._actions)
        dones = terminated | truncated
        env_infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            env_infos[i] = {"terminal_observation": self._scaled(infos["final_obs"][i]),
                            "TimeLimit.truncated": bool(truncated[i])}
        return self._scaled(obs), rewards.astype(np.float32), dones, env_infos

    def close(self) -> None:
        self.venv.close()

    # The N envs are one tensor batch, so attributes and methods exist once for all of them.
    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        single = {"action_space": "single_action_space", "observation_space": "single_observation_space"}
        return [getattr(self.venv, single.get(attr_name, attr_name))] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        self._require_all(indices, f"set_attr({attr_name!r})")
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        self._require_all(indices, f"env_method({method_name!r})")
        return [getattr(self.venv, method_name)(*method_args, **method_kwargs)] * self.num_envs

    def _require_all(self, indices: Any, what: str) -> None:
        if sorted(self._get_indices(indices)) != list(range(self.num_envs)):
            raise ValueError(f"{what}: the latent envs are one batch; per-env indices are not supported")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))
