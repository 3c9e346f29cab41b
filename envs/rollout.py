"""Random-action sequences from random initial states: the rollouts data sets are made of.

Every sequence draws everything it needs (initial state, the dm_control reset seed, its actions)
from its own ``np.random.SeedSequence``, and ``reset`` clears the simulator completely, so a
sequence does not depend on which process or env ran it, nor on what that env ran before: the
data set is byte-identical for any number of worker processes. This module avoids torch so that
worker processes start fast.
"""

from __future__ import annotations

import numpy as np

from envs.real_env import RealEnv

_WORKER_ENV: RealEnv | None = None


def rollout_sequences(
    env: RealEnv, seq_len: int, seeds: list[np.random.SeedSequence], action_hold: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Roll out one sequence per seed.

    Args:
        env: the environment (its action repeat is used as is).
        seq_len: frames per sequence, T.
        seeds: one seed sequence per rollout, N of them.
        action_hold: each uniformly random action is held for this many frames (1: a new one every frame).

    Returns:
        ``obs`` ``(N, T, *obs_shape)``, ``actions`` ``(N, T, Du)`` float32 (``actions[:, t]`` acts
        between frame t and t+1; the last one is drawn but never applied) and ``states``
        ``(N, T, S)`` float32 true states beside every frame.
    """
    space = env.action_space
    obs = np.empty((len(seeds), seq_len, *env.observation_space.shape), env.observation_space.dtype)
    actions = np.empty((len(seeds), seq_len, *space.shape), np.float32)
    states = np.empty((len(seeds), seq_len, len(env.env_spec.state_names)), np.float32)
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        initial_state = env.sample_initial_state(rng)
        reset_seed = int(rng.integers(2**31))  # fixes the task's own randomness (reacher target)
        drawn = rng.uniform(space.low, space.high, size=(-(-seq_len // action_hold), *space.shape))
        actions[i] = np.repeat(drawn, action_hold, axis=0)[:seq_len]
        obs[i, 0], info = env.reset(seed=reset_seed, options={"state": initial_state})
        states[i, 0] = info["state"]
        for t in range(seq_len - 1):
            obs[i, t + 1], _, terminated, truncated, info = env.step(actions[i, t])
            if terminated or truncated:
                raise RuntimeError(f"episode ended after {t + 1} steps; seq_len {seq_len} is too long")
            states[i, t + 1] = info["state"]
    return obs, actions, states


def init_worker(name: str, action_repeat: int) -> None:
    """Pool initializer: one env per worker process, reused for all its chunks."""
    global _WORKER_ENV
    _WORKER_ENV = RealEnv(name, action_repeat=action_repeat)


def worker_rollout(task: tuple[int, list[np.random.SeedSequence], int]) -> tuple[np.ndarray, ...]:
    """Pool task: roll out a chunk ``(seq_len, seeds, action_hold)`` with this worker's env."""
    seq_len, seeds, action_hold = task
    assert _WORKER_ENV is not None, "init_worker was not called"
    return rollout_sequences(_WORKER_ENV, seq_len, seeds, action_hold)
