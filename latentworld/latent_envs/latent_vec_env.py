"""N latent environments stepped in one tensor operation.

:class:`LatentVectorEnv` is a ``gymnasium.vector.VectorEnv`` (the ``vector_entry_point`` of the
registered ids, so ``gymnasium.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point")``
returns it). Episodes auto-reset in the same step (``AutoresetMode.SAME_STEP``): the returned
observation of a finished env is its new first observation, and the last one is in
``infos["final_obs"]`` (a float ``(N, D)`` array; rows where ``infos["_final_obs"]`` is True count).
An env whose state reaches the edge of the state box is terminated (``infos["final_info"]["out_of_bounds"]``).
``agents.sb3_env.SB3LatentVecEnv`` adapts it to stable-baselines3's ``VecEnv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from latentworld.common.errors import ConfigError
from latentworld.latent_envs.latent_env import DEFAULT_STATE_BOUND, make_setup, validate_actions


class LatentVectorEnv(VectorEnv):
    """``num_envs`` latent envs sharing one model; arguments as :class:`latentworld.latent_envs.latent_env.LatentEnv`."""

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, model: str | None = None, goal: Any = None, reward: str = "pos",
                 horizon: int = 100, initial: str = "prior", data: str | None = None,
                 goal_conditioned: bool = False, default_model: str | None = None, noise_scale: float = 1.0,
                 initial_states: Any = None, state_bound: float = DEFAULT_STATE_BOUND) -> None:
        if num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1, got {num_envs}")
        self.setup = make_setup(model, goal, reward, horizon, initial, data, goal_conditioned, default_model,
                                noise_scale, initial_states, state_bound)
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
            terminated = self.setup.core.escaped(self._z).numpy()
        self._t += 1
        truncated = (self._t >= self.setup.horizon) & ~terminated
        done = terminated | truncated
        infos: dict[str, Any] = {}
        if done.any():
            final = self._observations()
            final_info = {"out_of_bounds": terminated.copy(), "_out_of_bounds": terminated.copy()} \
                if terminated.any() else {}
            infos = {"final_obs": final, "_final_obs": done.copy(), "final_info": final_info,
                     "_final_info": done.copy()}
            self._restart(torch.from_numpy(done))
            infos.update({"goal": self._goal.numpy().copy(), "_goal": done.copy()})
        return self._observations(), rewards, terminated, truncated, infos
