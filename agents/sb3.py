"""PPO and SAC from stable-baselines3 on the tensor-batched latent env: a thin factory.

The agents train on :class:`agents.sb3_env.SB3LatentVecEnv` with the problem's goal, start states
and noise scale; every ``validate_every`` env steps the deterministic actor is scored on the
problem's fixed validation states (the same score as J(ω)), and the best snapshot is kept. What is
saved is the deterministic actor (:class:`SB3Actor`): the SB3 policy's weights plus the action
bounds, loadable with ``weights_only=True``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from torch import Tensor, nn
from tqdm import tqdm

from agents.problem import LatentProblem
from agents.sb3_env import SB3LatentVecEnv
from latentworld.common.settings import MAX_SEED, check_settings, setting

ALGORITHMS = {"ppo": PPO, "sac": SAC}
# Runs that learned the swing-up (tuned on real seeds 100-109), about 2.5 (PPO) and 5.5 (SAC) minutes on one
# core: SAC does 4 gradient steps per vector step of 256 envs, so it needs far fewer env steps than PPO.
METHOD_DEFAULTS = {"ppo": {"timesteps": 4_000_000, "batch_size": 2048}, "sac": {"timesteps": 800_000, "batch_size": 512}}


@dataclass
class SB3Config:
    """Settings of an SB3 run on the latent env."""

    timesteps: int | None = setting(None, low=1)
    """Total latent env steps; None = the method's default (:data:`METHOD_DEFAULTS`)."""
    num_envs: int = setting(256, low=1)
    """Latent envs stepped together (one tensor batch)."""
    episode_horizon: int = setting(100, low=1)
    """Steps per latent episode."""
    validate_every: int | None = setting(None, low=1)
    """Env steps between validations (the best validated snapshot is kept); None = 1/30 of the run."""
    validation_horizon: int = setting(60, low=1)
    """Steps of each validation rollout (as J(ω)'s)."""
    gradient_steps: int = setting(4, low=1)
    """SAC only: gradient steps per vector step."""
    n_steps: int = setting(128, low=1)
    """PPO only: steps per env between updates (a rollout is n_steps × num_envs transitions)."""
    gamma: float = setting(0.98, low=0, low_open=True, high=1)
    """Discount; 0.98 weighs about 50 steps (4 s on the pendulum), the time a swing-up takes."""
    learning_rate: float = setting(3e-4, low=0, low_open=True)
    """Adam learning rate."""
    batch_size: int | None = setting(None, low=1)
    """Minibatch size of each gradient step; None = the method's default (:data:`METHOD_DEFAULTS`)."""
    seed: int = setting(0, low=0, high=MAX_SEED)
    """Seed of the algorithm and the env stream."""

    def __post_init__(self) -> None:
        check_settings(self)


class SB3Actor(nn.Module):
    """The deterministic action of an SB3 policy as a torch module ``(N, Dz) -> (N, Du)``, with the
    fixed observation scaling the policy was trained with (the spread of the training start states)."""

    def __init__(self, policy: nn.Module, low: Tensor, high: Tensor, squashed: bool, obs_mean: Tensor,
                 obs_std: Tensor) -> None:
        super().__init__()
        self.policy, self.squashed = policy, squashed
        self.register_buffer("action_low", low.float().clone())
        self.register_buffer("action_high", high.float().clone())
        self.register_buffer("obs_mean", obs_mean.float().clone())
        self.register_buffer("obs_std", obs_std.float().clone())

    def forward(self, obs: Tensor) -> Tensor:
        actions = self.policy._predict((obs - self.obs_mean) / self.obs_std, deterministic=True)
        if self.squashed:  # SAC acts in [-1, 1]
            actions = self.action_low + (actions + 1) / 2 * (self.action_high - self.action_low)
        return torch.max(torch.min(actions, self.action_high), self.action_low)


def make_env(problem: LatentProblem, method: str, config: SB3Config) -> VecEnv:
    """The latent vector env of ``problem`` with scaled observations. For PPO the rewards are normalised
    during training (the saved actor does not depend on it); SAC keeps the raw rewards, whose scale is
    what its entropy bonus is weighed against (normalised, the bonus dominates and SAC stays random)."""
    mean, std = problem.observation_scaling()
    env = SB3LatentVecEnv(config.num_envs, seed=config.seed, obs_mean=mean.numpy(), obs_std=std.numpy(),
                          model=problem.model_ref, goal=problem.goal.tolist(), reward=problem.task.reward,
                          horizon=config.episode_horizon, initial="given", initial_states=problem.starts.numpy(),
                          noise_scale=problem.dynamics.noise_scale)
    return VecNormalize(env, norm_obs=False, norm_reward=True, gamma=config.gamma) if method == "ppo" else env


def sb3_actor(method: str, problem: LatentProblem) -> SB3Actor:
    """A fresh actor of ``method``'s default policy (the architecture a saved actor's weights fit)."""
    if method not in ALGORITHMS:
        raise ValueError(f"unknown SB3 method {method!r}; choose from {sorted(ALGORITHMS)}")
    from gymnasium.spaces import Box

    dim_z = problem.starts.shape[1]
    obs_space = Box(-float("inf"), float("inf"), (dim_z,))
    act_space = Box(problem.action_low.numpy(), problem.action_high.numpy())
    policy_class = ALGORITHMS[method].policy_aliases["MlpPolicy"]
    policy = policy_class(obs_space, act_space, lambda _: 0.0)
    # The scaling buffers are placeholders until a saved actor's weights are loaded.
    return SB3Actor(policy, problem.action_low, problem.action_high, method == "sac", torch.zeros(dim_z),
                    torch.ones(dim_z)).eval()


class _BestSnapshot(BaseCallback):
    """Validates the deterministic actor every ``every`` env steps and keeps the best weights."""

    def __init__(self, problem: LatentProblem, method: str, config: SB3Config, bar: tqdm) -> None:
        super().__init__()
        self.problem, self.method, self.config, self.bar = problem, method, config, bar
        self.best_return, self.best_step, self.best_state = -float("inf"), 0, None
        self.history: list[dict[str, float]] = []
        self._next, self._start = config.validate_every, time.perf_counter()

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        if self.num_timesteps >= self._next:
            self._next += self.config.validate_every
            self.validate()
        return True

    def validate(self) -> None:
        actor = SB3Actor(self.model.policy, self.problem.action_low, self.problem.action_high,
                         self.method == "sac", *self.problem.observation_scaling())
        self.model.policy.set_training_mode(False)
        value = self.problem.validation_return(actor, self.config.validation_horizon)
        self.history.append({"timesteps": self.num_timesteps, "validation_return": value,
                             "seconds": time.perf_counter() - self._start})
        self.logger.record("eval/validation_return", value)
        if value > self.best_return:
            self.best_return, self.best_step = value, self.num_timesteps
            self.best_state = copy.deepcopy(actor.state_dict())
        self.bar.set_postfix(val=f"{value:.1f}", best=f"{self.best_return:.1f}")


def train_sb3(problem: LatentProblem, method: str, config: SB3Config, log_dir: Path | None = None,
              progress: bool = True) -> tuple[SB3Actor, dict[str, Any]]:
    """Train PPO or SAC on the latent env of ``problem``; returns the best validated actor and a report."""
    if method not in ALGORITHMS:
        raise ValueError(f"unknown SB3 method {method!r}; choose from {sorted(ALGORITHMS)}")
    defaults = METHOD_DEFAULTS[method]
    timesteps = config.timesteps or defaults["timesteps"]
    config = replace(config, timesteps=timesteps, batch_size=config.batch_size or defaults["batch_size"],
                     validate_every=config.validate_every or max(timesteps // 30, 1))
    env = make_env(problem, method, config)
    kwargs: dict[str, Any] = {"seed": config.seed, "device": "cpu", "verbose": 0, "gamma": config.gamma,
                              "learning_rate": config.learning_rate}
    if method == "ppo":
        kwargs.update(n_steps=config.n_steps, batch_size=min(config.batch_size, config.n_steps * config.num_envs),
                      n_epochs=10)
    else:
        kwargs.update(gradient_steps=config.gradient_steps, learning_starts=1000, batch_size=config.batch_size)
    algorithm = ALGORITHMS[method]("MlpPolicy", env, **kwargs)
    # A configured logger keeps SB3 from leaving SB3-* folders in the temp dir.
    algorithm.set_logger(configure(str(log_dir) if log_dir else None, ["tensorboard"] if log_dir else []))
    start = time.perf_counter()
    with tqdm(total=config.timesteps, desc=method.upper(), disable=not progress, unit="step") as bar:
        callback = _BestSnapshot(problem, method, config, bar)
        algorithm.learn(config.timesteps, callback=callback)
        callback.validate()
    env.close()
    actor = sb3_actor(method, problem)
    actor.load_state_dict(callback.best_state)
    report = {"best_validation_return": callback.best_return, "best_timesteps": callback.best_step,
              "history": callback.history, "train_seconds": time.perf_counter() - start, "config": asdict(config)}
    return actor, report
