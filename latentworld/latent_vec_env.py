"""N latent environments stepped in one tensor operation.

:class:`LatentVectorEnv` is a ``gymnasium.vector.VectorEnv`` (the ``vector_entry_point`` of the
registered ids, so ``gymnasium.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point")``
returns it). Episodes auto-reset in the same step (``AutoresetMode.SAME_STEP``): the returned
observation of a finished env is its new first observation, and the last one is in
``infos["final_obs"]`` (a float ``(N, D)`` array; rows where ``infos["_final_obs"]`` is True count). :class:`SB3LatentVecEnv` adapts it to stable-baselines3's ``VecEnv``,
so SB3 trains on N envs without N Python env objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.vec_env import VecEnv

from latentworld.latent_env import make_setup, validate_actions


class LatentVectorEnv(VectorEnv):
    """``num_envs`` latent envs sharing one model; arguments as :class:`latentworld.latent_env.LatentEnv`."""

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, model: str | None = None, goal: Any = None, reward: str = "pos",
                 horizon: int = 100, initial: str = "prior", data: str | None = None,
                 goal_conditioned: bool = False, default_model: str | None = None) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.setup = make_setup(model, goal, reward, horizon, initial, data, goal_conditioned, default_model)
        self.num_envs = num_envs
        self.single_action_space = self.setup.action_space
        self.single_observation_space = self.setup.observation_space
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._generator = torch.Generator()
        self._seeded = False
        self._z = torch.zeros(num_envs, self.setup.core.dim_z)
        self._goal = self._fixed_goals()
        self._t = np.zeros(num_envs, np.int64)

    def _fixed_goals(self) -> torch.Tensor:
        if self.setup.goal is None:
            return torch.zeros(self.num_envs, self.setup.goal_pool.shape[1])
        return self.setup.goal.expand(self.num_envs, -1)

    def _restart(self, mask: torch.Tensor) -> None:
        """New episodes for the envs in ``mask`` ``(N,)`` bool."""
        count = int(mask.sum())
        if count == 0:
            return
        self._z[mask] = self.setup.core.initial(count, self._generator)
        if self.setup.goal_pool is not None:
            pool = self.setup.goal_pool
            self._goal = self._goal.clone()
            self._goal[mask] = pool[torch.randint(pool.shape[0], (count,), generator=self._generator)]
        self._t[mask.numpy()] = 0

    def _observations(self) -> np.ndarray:
        obs = self._z if self.setup.goal_pool is None else torch.cat([self._z, self._goal], 1)
        return obs.numpy().astype(np.float32)

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Restart all envs. ``seed``: an int, or one per env (they seed the one shared stream together)."""
        if isinstance(seed, Sequence):
            seed = int(np.random.SeedSequence([int(s) for s in seed]).generate_state(1)[0])
        super().reset(seed=seed)
        if seed is not None or not self._seeded:  # the private torch stream follows gymnasium's seeding
            self.setup.seed_stream(self._generator, self.np_random)
            self._seeded = True
        self._restart(torch.ones(self.num_envs, dtype=torch.bool))
        return self._observations(), {"goal": self._goal.numpy().copy()}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._seeded:
            raise RuntimeError("call reset() before step()")
        u = validate_actions(actions, self.setup.action_low, self.setup.action_high, self.action_space.shape)
        with torch.no_grad():
            self._z = self.setup.core.transition(self._z, u, self._generator)
            rewards = self.setup.core.reward(self._z, self._goal).numpy().astype(np.float64)
        self._t += 1
        truncated = self._t >= self.setup.horizon
        terminated = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        if truncated.any():
            final = self._observations()
            infos = {"final_obs": final, "_final_obs": truncated.copy(), "final_info": {},
                     "_final_info": truncated.copy()}
            self._restart(torch.from_numpy(truncated))
            infos.update({"goal": self._goal.numpy().copy(), "_goal": truncated.copy()})
        return self._observations(), rewards, terminated, truncated, infos


class SB3LatentVecEnv(VecEnv):
    """stable-baselines3 ``VecEnv`` over one :class:`LatentVectorEnv` (no per-env Python objects).

    Args: as :class:`LatentVectorEnv`, plus ``seed`` for the first reset.
    """

    def __init__(self, num_envs: int, seed: int | None = None, **kwargs: Any) -> None:
        self.venv = LatentVectorEnv(num_envs=num_envs, **kwargs)
        super().__init__(num_envs, self.venv.single_observation_space, self.venv.single_action_space)
        self._seed_next = seed
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        obs, _ = self.venv.reset(seed=self._seed_next)
        self._seed_next = None
        return obs

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
            env_infos[i] = {"terminal_observation": infos["final_obs"][i], "TimeLimit.truncated": bool(truncated[i])}
        return obs, rewards.astype(np.float32), dones, env_infos

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
