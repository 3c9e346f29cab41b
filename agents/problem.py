"""A control problem in latent space: model, dynamics, goal, start states and the validation score.

Every trainer (J(ω), PPO, SAC) and the MPC planner work on one :class:`LatentProblem`, so they
see the same goal, the same start states and are validated on the same fixed states.

Start states, all from the model's data set (no access to the simulator), are of two kinds:

- the smoothed posterior means at every time step: the states the data visited (every angle,
  velocities in both directions, the pole passing the top);
- first-frame beliefs: the filter's belief after a single frame, for every frame. One frame shows
  the angle but not the velocity, so this is exactly the belief a real episode starts from (the
  pole at rest at a random angle, the velocity at the filter's initial guess).

Validation uses first-frame beliefs of the data set's test split (a fixed subset, mean dynamics):
it scores what a real episode asks for, starting from an unknown velocity.

A goal-conditioned task (reach) has a goal per rollout instead of one goal: q(a|x) of the training
frames for training, of test frames for validation, and the policy observes ``[z, goal]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from agents.tasks import REACH_ENVS, ReachGoals, Task, encode_goal
from envs import get_spec
from latentworld.common.data import SequenceDataset
from latentworld.evaluation.metrics import smoothed_means
from latentworld.experiment.checkpoint import CheckpointError, load_model_data, resolve_checkpoint
from latentworld.latent_envs.latent_env import LatentDynamics, cached_model

Actor = Callable[[Tensor], Tensor]  # observations (N, Dz) or, goal-conditioned, (N, Dz + Dg) -> actions (N, Du)


@dataclass
class LatentProblem:
    """What a policy optimiser needs, built by :func:`make_problem`.

    Attributes:
        model_ref: the checkpoint as the user named it (path or shipped name), stored in saved policies.
        task: the task.
        dynamics: the batched latent core (its ``noise_scale`` is what training rollouts use).
        goal: ``(Dg,)`` latent goal (``(0,)`` for a goal-conditioned task).
        starts: ``(K, Dz)`` training start states.
        validation_starts: ``(V, Dz)`` fixed validation start states.
        action_low, action_high: ``(Du,)`` action bounds.
        action_repeat: the real env's action repeat the model was trained with.
        goals: goal-conditioned only: ``(K', Dg)`` training goals.
        validation_goals: goal-conditioned only: ``(V, Dg)``, one per validation start.
    """

    model_ref: str
    task: Task
    dynamics: LatentDynamics
    goal: Tensor
    starts: Tensor
    validation_starts: Tensor
    action_low: Tensor
    action_high: Tensor
    action_repeat: int
    goals: Tensor | None = None
    validation_goals: Tensor | None = None

    @property
    def model(self) -> torch.nn.Module:
        return self.dynamics.model

    @property
    def observation_dim(self) -> int:
        """What a policy observes: Dz, plus Dg for a goal-conditioned task."""
        return self.dynamics.dim_z + (self.dynamics.dim_a if self.task.goal_conditioned else 0)

    def observation_scaling(self) -> tuple[Tensor, Tensor]:
        """``(mean, std)`` ``(Do,)`` of the training start states (and goals): policy networks see
        ``(o − mean) / std``."""
        parts = [self.starts] if self.goals is None else [self.starts, self.goals]
        return torch.cat([p.mean(0) for p in parts]), torch.cat([p.std(0) for p in parts]).clamp_min(1e-6)

    def training_goals(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """The goal of ``n`` training rollouts: the fixed ``(Dg,)``, or ``(n, Dg)`` drawn from :attr:`goals`."""
        if self.goals is None:
            return self.goal
        return self.goals[torch.randint(len(self.goals), (n,), generator=generator)]

    def episode_goals(self) -> ReachGoals | None:
        """What gives a real episode its goal (goal-conditioned tasks), else ``None``. Close it after use."""
        return ReachGoals(self.model, self.task.env_name) if self.task.goal_conditioned else None

    def with_noise(self, noise_scale: float) -> LatentProblem:
        """The same problem with another process-noise scale for training rollouts."""
        core = self.dynamics
        dynamics = LatentDynamics(core.model, core.reward_kind, core.initial_kind, core.posterior_z1, noise_scale,
                                  core.initial_states, core.state_bound)
        return LatentProblem(**{**self.__dict__, "dynamics": dynamics})

    @torch.no_grad()
    def validation_return(self, actor: Actor, horizon: int) -> float:
        """Mean latent return of ``actor`` from the validation starts under the mean dynamics."""
        mean_dynamics = self.dynamics if self.dynamics.noise_scale == 0 else self.with_noise(0.0).dynamics
        goal = self.goal if self.validation_goals is None else self.validation_goals
        return float(rollout_return(actor, mean_dynamics, self.validation_starts, goal, horizon).mean())


def rollout_return(actor: Actor, dynamics: LatentDynamics, starts: Tensor, goal: Tensor, horizon: int,
                   generator: torch.Generator | None = None) -> Tensor:
    """J: the summed reward r_2..r_H of rollouts from ``starts`` ``(N, Dz)``; differentiable in the actor.

    ``goal``: one ``(Dg,)`` for all (the actor observes z), or ``(N, Dg)``, one per rollout (the actor
    observes ``[z, goal]``). Returns ``(N,)``.
    """
    z, total = starts, torch.zeros(starts.shape[0], dtype=starts.dtype)
    for _ in range(horizon - 1):
        z = dynamics.transition(z, actor(z if goal.ndim == 1 else torch.cat([z, goal], -1)), generator)
        total = total + dynamics.reward(z, goal)
    return total


def check_frames_drawn_alike(meta: dict[str, Any], env_name: str, run_dir: Path) -> None:
    """Raise :class:`CheckpointError` if the image model of ``meta`` learned from frames drawn otherwise
    (camera, hidden or recoloured geoms, ...) than the real env ``env_name`` draws them now: it would
    act on pictures it never saw, without an error. Checkpoints without the record (models of joint
    angles; models trained before checkpoints kept it) pass, and a record from before a setting was
    recorded (``geom_colours``, say) is compared on the settings it names."""
    trained = meta.get("camera")
    if trained is None:
        return
    now = json.loads(json.dumps(get_spec(env_name).render.record()))  # the JSON types a checkpoint holds
    differ = sorted(key for key in trained if trained[key] != now.get(key))
    if differ:
        raise CheckpointError(f"{run_dir} learned from {env_name} frames drawn otherwise than the env draws them now "
                              f"({', '.join(f'{k}: {trained.get(k)!r} then, {now.get(k)!r} now' for k in differ)}); "
                              f"retrain it on a freshly generated data set")


def make_problem(model: str, task: Task, noise_scale: float = 0.0, validation_size: int = 256, seed: int = 0,
                 data: str | None = None, goal: Tensor | None = None, with_starts: bool = True) -> LatentProblem:
    """Load ``model`` (checkpoint path or shipped name) and set up ``task`` on it.

    Args:
        noise_scale: process-noise scale of training rollouts (0 = mean dynamics).
        validation_size: number of fixed validation start states.
        seed: picks the validation states.
        data: the data set of the start states (default: the one the model was trained on).
        goal: the latent goal, if already known (else it is encoded from the task's goal observations).
        with_starts: False skips the data set (acting needs no start states; ``starts`` is then empty).

    Raises:
        CheckpointError: the checkpoint is missing, corrupt, was trained on another env than the task's,
            or (an image model) on frames drawn otherwise than the env draws them now.
    """
    run_dir = resolve_checkpoint(model)
    net, config, meta = cached_model(run_dir)
    if task.goal_conditioned and meta.get("dataset_name") in REACH_ENVS:  # angles or images: the model's own
        task = replace(task, env_name=meta["dataset_name"])
    expected = get_spec(task.env_name).env_id
    if meta.get("env_id") != expected:
        raise CheckpointError(f"{run_dir} models {meta.get('env_id')!r}, but task {task.name!r} needs a model of "
                              f"{expected!r}")
    check_frames_drawn_alike(meta, task.env_name, run_dir)
    action_repeat = int(meta.get("action_repeat") or get_spec(task.env_name).action_repeat)
    goal = encode_goal(net, task, action_repeat) if goal is None else goal
    starts = validation = torch.zeros(0, net.dim_z)
    goals = validation_goals = None
    if with_starts:
        data_path = data or config.data
        train = load_model_data(meta, data_path, "train")
        test = load_model_data(meta, data_path, "test")
        starts = torch.cat([smoothed_means(net, train).flatten(0, 1), first_frame_beliefs(net, train)])
        pool = first_frame_beliefs(net, test)
        pick = torch.randperm(pool.shape[0], generator=torch.Generator().manual_seed(seed))[:validation_size]
        validation = pool[pick].clone()
        if task.goal_conditioned:
            goals = encoded_positions(net, train)
            test_goals = encoded_positions(net, test)
            validation_goals = test_goals[torch.randperm(len(test_goals), generator=torch.Generator().manual_seed(
                seed + 1))[:len(validation)]].clone()
    dynamics = LatentDynamics(net, task.reward, "given" if with_starts else "prior", None, noise_scale,
                              starts if with_starts else None)
    low = torch.tensor(meta.get("action_low") or [-1.0] * meta["dim_u"], dtype=torch.float32)
    high = torch.tensor(meta.get("action_high") or [1.0] * meta["dim_u"], dtype=torch.float32)
    return LatentProblem(str(model), task, dynamics, goal, starts, validation, low, high, action_repeat, goals,
                         validation_goals)


def _frame_chunks(data: SequenceDataset, chunk: int) -> Iterator[Tensor]:
    """Every frame of ``data`` as model input, ``chunk`` sequences at a time: ``(chunk·T, *obs_shape)``."""
    for i in range(0, len(data), chunk):
        yield data.observations(slice(i, i + chunk)).flatten(0, 1)


@torch.no_grad()
def encoded_positions(model: torch.nn.Module, data: SequenceDataset, chunk: int = 128) -> Tensor:
    """q(a|x)'s mean for every frame of ``data``: the goals a goal-conditioned policy trains on. Returns ``(N·T, Da)``."""
    return torch.cat([model.encode_position(frames) for frames in _frame_chunks(data, chunk)])


@torch.no_grad()
def first_frame_beliefs(model: torch.nn.Module, data: SequenceDataset, chunk: int = 128) -> Tensor:
    """The filter's belief mean after one frame, for every frame of ``data``. Returns ``(N·T, Dz)``."""
    return torch.cat([model.filter_step(None, None, frames)[0] for frames in _frame_chunks(data, chunk)])
