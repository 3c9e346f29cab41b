"""The learned dynamics as a Gymnasium environment (paper §6.4; README, "The learned dynamics as Gymnasium environments").

:class:`LatentDynamics` is the pure, batched, differentiable core — ``initial``, ``transition``,
``reward`` as functions of tensors — that a policy optimiser calls directly (gradients flow
from the reward through the sampled transitions into the actions). :class:`LatentEnv` is a real
``gymnasium.Env`` over it; ``latentworld.latent_envs.latent_vec_env`` steps N of them in one tensor op.

Constructor arguments are paths and plain values (so ``env.spec`` stays JSON-serialisable and
pickling an env only pickles those arguments, not the model).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from latentworld.common.errors import ConfigError, GoalError
from latentworld.evaluation.metrics import smoothed_means
from latentworld.experiment.checkpoint import (
    CONFIG_FILE,
    META_FILE,
    MODEL_FILE,
    CheckpointError,
    load_model,
    load_model_data,
    resolve_checkpoint,
)
from latentworld.latent_envs.goals import REWARD_KINDS, load_goal
from latentworld.models.base import StateSpaceModel
from latentworld.probability.gaussian import mvn_sample

INITIAL_KINDS = ("prior", "posterior", "given")
# A checkpoint may ship its default goal: an image, or (joint-angle models) an observation array.
DEFAULT_GOAL_FILES = ("goal.png", "goal.npy")
# A trained model keeps data states within about ±20 latent units (the shipped pendulum model: positions
# ±4.5, velocity ±19); far outside, a rollout has left the model's domain and can grow without limit.
DEFAULT_STATE_BOUND = 100.0


def cached_model(run_dir: Path) -> tuple[StateSpaceModel, Any, dict[str, Any]]:
    """The checkpoint's model, shared by the envs built from it until one of its files changes (the
    weights, the config or ``meta.json``: an edited record is seen without a restart)."""
    stamps = tuple((stat.st_mtime_ns, stat.st_size)
                   for stat in ((run_dir / name).stat() for name in (MODEL_FILE, CONFIG_FILE, META_FILE)))
    return _load_frozen(str(run_dir.resolve()), stamps)


@functools.lru_cache(maxsize=8)
def _load_frozen(run_dir: str, stamps: tuple[tuple[int, int], ...]) -> tuple[StateSpaceModel, Any, dict[str, Any]]:
    model, config, meta = load_model(run_dir)
    model.requires_grad_(False)  # the env never trains the model; gradients only reach actions
    return model, config, meta


class LatentDynamics:
    """Stateless batched core: z_1 sampling, one transition sample, the reward.

    Every state it returns is finite and inside the box ``[-state_bound, state_bound]^Dz``: a rollout
    that tries to leave it (sustained extreme actions can drive a learned model far outside its data)
    is clamped to the box, and :meth:`escaped` tells which states sit on its edge.

    Args:
        model: a Markov model (z alone is its state); for ``"pos"``/``"vel"`` one with the position/velocity
            split (the EKVAE with H the rectangular identity).
        reward: ``"pos"`` (first Da dims of z) or ``"vel"`` (last Dz − Da dims) for a model with the
            position/velocity split; ``"state"`` (all of z) for any model.
        initial: ``"prior"`` (the learned VHP), ``"posterior"`` (smoothed z_1 of data sequences) or
            ``"given"`` (drawn uniformly from ``initial_states``).
        posterior_z1: ``(mean (N, Dz), cov (N, Dz, Dz))`` of the data's smoothed z_1, for ``"posterior"``.
        noise_scale: multiplies the standard deviation of the learned process noise; 0 rolls out the
            mean dynamics, 1 samples p(z_{t+1} | z_t, u_t) as learned.
        initial_states: ``(K, Dz)`` start states for ``"given"`` (e.g. filtered beliefs of real frames).
        state_bound: half-width of the box states are kept in (latent units).
    """

    def __init__(self, model: StateSpaceModel, reward: str = "pos", initial: str = "prior",
                 posterior_z1: tuple[Tensor, Tensor] | None = None, noise_scale: float = 1.0,
                 initial_states: Tensor | None = None, state_bound: float = DEFAULT_STATE_BOUND) -> None:
        if reward not in REWARD_KINDS:
            raise ConfigError(f"reward must be one of {REWARD_KINDS}, got {reward!r}")
        if initial not in INITIAL_KINDS:
            raise ConfigError(f"initial must be one of {INITIAL_KINDS}, got {initial!r}")
        model.require_markovian("a latent env")
        if model.position_dims is None and reward != "state":
            raise CheckpointError(f"this {model.kind} model's z is not split into position and velocity, so it has no "
                                  f"{reward!r} reward; use reward='state' (a goal state from a goal image)")
        if not (np.isfinite(noise_scale) and noise_scale >= 0):
            raise ConfigError(f"noise_scale must be a finite number >= 0, got {noise_scale}")
        if not (np.isfinite(state_bound) and state_bound > 0):
            raise ConfigError(f"state_bound must be a finite number > 0, got {state_bound}")
        self.model, self.reward_kind, self.initial_kind = model, reward, initial
        self.posterior_z1 = posterior_z1
        self.noise_scale, self.state_bound = float(noise_scale), float(state_bound)
        self.dim_z = model.dim_z
        self.dim_a = model.dim_z if reward == "state" else model.position_dims
        self.initial_states = None if initial_states is None else self.bounded(check_states(initial_states, self.dim_z))
        if initial == "given" and self.initial_states is None:
            raise ConfigError("initial='given' needs initial_states, a (K, Dz) array of start states")
        self.reward_dims = slice(self.dim_a, self.dim_z) if reward == "vel" else slice(0, self.dim_a)

    def initial(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, Dz)`` initial states."""
        with torch.no_grad():
            if self.initial_kind == "prior":
                return self.bounded(self.model.sample_initial(n, generator))
            if self.initial_kind == "given":
                index = torch.randint(self.initial_states.shape[0], (n,), generator=generator)
                return self.initial_states[index].clone()
            mean, cov = self.posterior_z1
            index = torch.randint(mean.shape[0], (n,), generator=generator)
            return self.bounded(mvn_sample(mean[index], cov[index], generator))

    def transition(self, z: Tensor, u: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One reparameterised sample of p(z_{t+1} | z_t, u_t) with the process noise scaled by
        ``noise_scale``, kept inside the state box. Args ``(n, Dz)``, ``(n, Du)``. Returns ``(n, Dz)``."""
        return self.bounded(self.model.sample_next(z, u, generator, self.noise_scale))

    def bounded(self, z: Tensor) -> Tensor:
        """``z`` with non-finite values replaced and every entry clamped to ``±state_bound``."""
        bound = self.state_bound
        return torch.nan_to_num(z, nan=bound, posinf=bound, neginf=-bound).clamp(-bound, bound)

    def escaped(self, z: Tensor) -> Tensor:
        """``(n,)`` bool: the state reached the edge of the box (the rollout left the model's domain)."""
        return (z.abs() >= self.state_bound).any(-1)

    def reward(self, z: Tensor, goal: Tensor) -> Tensor:
        """r^pos, r^vel or r^state: −Σ (z_d − g_d)² over the reward dims (all of z for r^state).

        Args: z ``(n, Dz)``, goal ``(Dg,)`` or ``(n, Dg)``. Returns ``(n,)``."""
        return -(z[:, self.reward_dims] - goal).pow(2).sum(-1)


def check_states(states: Any, dim_z: int) -> Tensor:
    """Start states as a float32 ``(K, Dz)`` tensor: from a tensor, an array, nested lists or a ``.npy``
    path; one clear ``ConfigError`` for a missing file, a wrong shape or non-finite values."""
    if isinstance(states, (str, Path)):
        if not Path(states).is_file():
            raise ConfigError(f"initial_states file {states} does not exist")
        states = np.load(states, allow_pickle=False)
    array = torch.as_tensor(np.asarray(states, dtype=np.float32))
    if array.ndim != 2 or array.shape[1] != dim_z or array.shape[0] == 0:
        raise ConfigError(f"initial_states must have shape (K, {dim_z}) with K >= 1, got {tuple(array.shape)}")
    if not torch.isfinite(array).all():
        raise ConfigError("initial_states contain NaN or infinite values")
    return array


@dataclass
class LatentSetup:
    """Everything an env needs, built once from plain arguments by :func:`make_setup`."""

    core: LatentDynamics
    goal: Tensor | None  # (Dg,), fixed goal
    goal_pool: Tensor | None  # (K, Dg), goals sampled per episode (goal-conditioned mode)
    action_low: np.ndarray
    action_high: np.ndarray
    horizon: int

    @property
    def action_space(self) -> gym.spaces.Box:
        """One env's action space: the data set's action box."""
        return gym.spaces.Box(self.action_low, self.action_high, dtype=np.float32)

    @property
    def observation_space(self) -> gym.spaces.Box:
        """One env's observation space: z (Dz), with the goal appended in goal-conditioned mode."""
        extra = self.goal_pool.shape[1] if self.goal_pool is not None else 0
        return gym.spaces.Box(-np.inf, np.inf, (self.core.dim_z + extra,), np.float32)

    def seed_stream(self, generator: torch.Generator, np_random: np.random.Generator) -> None:
        """Seed an env's private torch stream from gymnasium's ``np_random`` (same seed, same rollout)."""
        generator.manual_seed(int(np_random.integers(2**62)))


def make_setup(model: str | Path | None, goal: Any = None, reward: str = "pos", horizon: int = 100,
               initial: str = "prior", data: str | None = None, goal_conditioned: bool = False,
               default_model: str | None = None, noise_scale: float = 1.0, initial_states: Any = None,
               state_bound: float = DEFAULT_STATE_BOUND) -> LatentSetup:
    """Load the checkpoint and resolve goal, initial states and action bounds (see :class:`LatentEnv`)."""
    if horizon < 1:
        raise ConfigError(f"horizon must be >= 1, got {horizon}")
    if model is None and default_model is None:
        raise CheckpointError("no model given and no pretrained checkpoint ships for this env; pass model=PATH")
    if not isinstance(model, (str, Path, type(None))):
        raise TypeError(f"model must be a checkpoint directory path, not {type(model).__name__}: paths keep "
                        "env.spec JSON-serialisable; wrap a model object in LatentDynamics(model, ...) instead")
    run_dir = resolve_checkpoint(model if model is not None else default_model)
    net, config, meta = cached_model(run_dir)
    data_path = data or config.data
    posterior_z1 = goal_pool = None
    if initial == "posterior" or goal_conditioned:
        train = load_model_data(meta, data_path, "train")
        if initial == "posterior":
            with torch.no_grad():
                posterior_z1 = net.posterior_initial(train.observations(np.s_[:, :5]), train.actions[:, :5])
        if goal_conditioned:
            if reward == "vel":
                raise ConfigError("goal_conditioned mode samples goal positions or states; use reward='pos' or 'state'")
            goal_pool = smoothed_means(net, train).flatten(0, 1)[:, : net.dim_z if reward == "state" else net.position_dims]
    given = None if initial_states is None else check_states(initial_states, net.dim_z)
    core = LatentDynamics(net, reward, initial, posterior_z1, noise_scale, given, state_bound)
    goal_tensor = None
    if not goal_conditioned:
        if goal is None:
            shipped = [run_dir / name for name in DEFAULT_GOAL_FILES if (run_dir / name).exists()]
            if not shipped:
                raise GoalError(f"{run_dir} ships no default goal; pass goal= (image path or latent vector), "
                                "or goal_conditioned=True")
            goal = shipped[0]
        goal_tensor = load_goal(net, goal, reward)
    low = np.asarray(meta.get("action_low") or [-1.0] * meta["dim_u"], np.float32)
    high = np.asarray(meta.get("action_high") or [1.0] * meta["dim_u"], np.float32)
    return LatentSetup(core, goal_tensor, goal_pool, low, high, int(horizon))


def validate_actions(actions: Any, low: np.ndarray, high: np.ndarray, shape: tuple[int, ...]) -> Tensor:
    """Actions as float32 tensor, or one clear ValueError for a wrong shape, NaN or out-of-bounds value."""
    array = np.asarray(actions, dtype=np.float32)
    if array.shape != shape:
        raise ValueError(f"action has shape {array.shape}, expected {shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"action contains NaN or infinite values: {array.tolist()}")
    if (array < low - 1e-6).any() or (array > high + 1e-6).any():
        raise ValueError(f"action {array.tolist()} is outside the action space [{low.tolist()}, {high.tolist()}]")
    return torch.from_numpy(array)


class LatentEnv(gym.Env):
    """One latent environment: observation z_t (with the goal appended in goal-conditioned mode),
    action u_t, reward r^pos, r^vel or r^state toward the goal, truncated after ``horizon`` steps.

    Args:
        model: checkpoint directory (or a shipped pretrained name); ``None`` = the env id's default.
        goal: image path / image-stack ``.npy`` (position), sequence ``.npz`` (velocity), or a latent
            vector; ``None`` = the checkpoint's shipped ``goal.png``.
        reward: ``"pos"`` or ``"vel"`` (models with a position/velocity split, e.g. the EKVAE), or
            ``"state"`` (any Markov model, e.g. the DKS and DVBS: the goal is a whole z, from a goal image
            through the model's filter).
        horizon: steps per episode.
        initial: ``"prior"`` (VHP sample), ``"posterior"`` (smoothed z_1 of data-set sequences) or
            ``"given"`` (one of ``initial_states``, drawn uniformly).
        data: data set for ``"posterior"`` and goal-conditioned mode (default: the training data).
        goal_conditioned: sample a goal per episode from the position part (``"pos"``) or the whole
            (``"state"``) of the data's smoothed latent states, and append it to the observation.
        render_mode: ``None`` or ``"rgb_array"`` (the decoded mean frame).
        default_model: set by the registration of each env id.
        noise_scale: scale of the learned process noise in ``step`` (0 = mean dynamics).
        initial_states: ``(K, Dz)`` start states for ``initial="given"``: nested lists or a ``.npy`` path keep
            ``env.spec`` JSON-serialisable (an array works too, but gymnasium's spec then holds the array).
        state_bound: states are kept in ``[-state_bound, state_bound]^Dz``; an episode whose state reaches
            that edge ends with ``terminated=True`` and ``info["out_of_bounds"] = True``, so no inf/NaN
            ever reaches an agent.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, model: str | None = None, goal: str | Sequence[float] | None = None, reward: str = "pos",
                 horizon: int = 100, initial: str = "prior", data: str | None = None,
                 goal_conditioned: bool = False, render_mode: str | None = None,
                 default_model: str | None = None, noise_scale: float = 1.0, initial_states: Any = None,
                 state_bound: float = DEFAULT_STATE_BOUND) -> None:
        if isinstance(initial_states, (np.ndarray, Tensor)):  # keep env.spec JSON-serialisable
            initial_states = np.asarray(initial_states).tolist()
        self._init_args = {"model": model, "goal": goal, "reward": reward, "horizon": horizon, "initial": initial,
                           "data": data, "goal_conditioned": goal_conditioned, "render_mode": render_mode,
                           "default_model": default_model, "noise_scale": noise_scale,
                           "initial_states": initial_states, "state_bound": state_bound}
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.setup = make_setup(model, goal, reward, horizon, initial, data, goal_conditioned, default_model,
                                noise_scale, initial_states, state_bound)
        self.render_mode = render_mode
        self.action_space, self.observation_space = self.setup.action_space, self.setup.observation_space
        self._generator = torch.Generator()
        self._seeded = False
        self._z: Tensor | None = None
        self._goal = self.setup.goal
        self._t = 0

    def _observation(self) -> np.ndarray:
        parts = [self._z[0]] if self.setup.goal_pool is None else [self._z[0], self._goal]
        return torch.cat(parts).numpy().astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None or not self._seeded:  # the private torch stream follows gymnasium's seeding
            self.setup.seed_stream(self._generator, self.np_random)
            self._seeded = True
        self._z = self.setup.core.initial(1, self._generator)
        if self.setup.goal_pool is not None:
            pool = self.setup.goal_pool
            self._goal = pool[torch.randint(pool.shape[0], (1,), generator=self._generator)[0]]
        self._t = 0
        return self._observation(), {"goal": self._goal.numpy().copy()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._z is None:
            raise RuntimeError("call reset() before step()")
        u = validate_actions(action, self.setup.action_low, self.setup.action_high, self.action_space.shape)
        with torch.no_grad():
            self._z = self.setup.core.transition(self._z, u[None], self._generator)
            reward = float(self.setup.core.reward(self._z, self._goal)[0])
            escaped = bool(self.setup.core.escaped(self._z)[0])
        self._t += 1
        info = {"out_of_bounds": True} if escaped else {}
        return self._observation(), reward, escaped, self._t >= self.setup.horizon and not escaped, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self._z is None:
            return None
        with torch.no_grad():
            frame = self.setup.core.model.decode_mean(self._z)[0]
        if frame.ndim != 3:  # angle observations have no picture
            return None
        image = (frame.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
        return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image

    def __getstate__(self) -> dict[str, Any]:
        # Only the plain arguments and the RNG state travel; the model is reloaded (and cached).
        return {"args": self._init_args, "generator": self._generator.get_state(), "seeded": self._seeded,
                "z": self._z, "goal": self._goal, "t": self._t,
                "np_random": (self._np_random, self._np_random_seed)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["args"])
        self._generator.set_state(state["generator"])
        self._seeded, self._z, self._goal, self._t = state["seeded"], state["z"], state["goal"], state["t"]
        self._np_random, self._np_random_seed = state["np_random"]
