"""Control tasks (paper Fig. 6): what the goal is, how it is shown to the model, how the real env scores it.

- ``swingup``: r^pos toward the position encoded from an image of the upright pole. Real score: the
  dm_control swing-up return (1 per physics step with the pole within 8° of upright; 1000 at most).
- ``rotation``: r^vel toward the velocity encoded from a demonstration: a sequence of the real pole
  turning at ``goal_velocity`` rad/s, with its actions. Real score: the mean angular velocity over
  the episode against the goal (and the env's return for reference).
- ``reach`` (reacher, goal-conditioned): r^pos toward a goal that changes every episode. The policy
  sees the goal beside the state. In the latent env the goals are q(a|x) of data frames; in a real
  episode the target's position → the two-link inverse kinematics (the solution nearest the arm's
  start) → the observation of the arm in that pose (joint-angle features, or the rendered image) →
  q(a|x). Real score: dm_control reacher-easy's return (1 per physics step with the finger on the
  target; 1000 at most).

The upright-pole image is a picture only (the simulator is put into the pose and drawn; no physics
step). The rotation demonstration is physical, so that the model's smoother sees a motion its
dynamics can explain: this pendulum's motor cannot hold the pole against gravity, and a steady turn
exists only under a constant torque c between about 0.56 and 1 (mean speeds of about 3 to 9.7 rad/s).
c is found by bisection so that the steady turn's mean speed is the goal; the physics steps this takes
are counted (:data:`Demonstration.physics_steps`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from envs import RealEnv
from envs.reacher_kinematics import TwoLinkArm, target_position
from latentworld.latent_envs.goals import goal_from_images, goal_from_sequence

GOAL_SEQUENCE_LENGTH = 15  # frames of the rotation goal sequence (the data set's window length)
SPIN_UP_STEPS, MEASURE_STEPS, BISECTION_ROUNDS = 150, 50, 10


@dataclass(frozen=True)
class Task:
    """One control task of a real environment.

    Attributes:
        name: ``"swingup"``, ``"rotation"`` or ``"reach"``.
        env_name: the real env (``envs`` name) whose model the task needs; the reach task takes the
            reacher observations its model was trained on (``reacher_angles`` or ``reacher_rgb``).
        reward: ``"pos"`` or ``"vel"`` (paper §6.4).
        goal_velocity: rad/s of the rotation goal (``None`` for position tasks).
        goal_conditioned: a new goal every episode, shown to the policy beside the state.
    """

    name: str
    env_name: str
    reward: str
    goal_velocity: float | None = None
    goal_conditioned: bool = False


TASKS = ("swingup", "rotation", "reach")
REACH_ENVS = ("reacher_angles", "reacher_rgb")


def make_task(name: str, goal_velocity: float | None = None, env_name: str | None = None) -> Task:
    """``"swingup"``, ``"rotation"`` (``goal_velocity`` rad/s, default 8; sign = direction) or ``"reach"``
    (``env_name`` one of :data:`REACH_ENVS`, default ``reacher_angles``)."""
    if goal_velocity is not None and name != "rotation":
        raise ValueError(f"goal_velocity belongs to the rotation task, not to {name}")
    if env_name is not None and name != "reach":
        raise ValueError(f"the {name} task has one env, {'pendulum'!r}")
    if name == "swingup":
        return Task("swingup", "pendulum", "pos")
    if name == "reach":
        env_name = env_name or REACH_ENVS[0]
        if env_name not in REACH_ENVS:
            raise ValueError(f"the reach task runs on {' or '.join(REACH_ENVS)}, not {env_name!r}")
        return Task("reach", env_name, "pos", goal_conditioned=True)
    if name == "rotation":
        velocity = 8.0 if goal_velocity is None else float(goal_velocity)
        if not np.isfinite(velocity) or velocity == 0:
            raise ValueError(f"goal_velocity must be a finite non-zero number of rad/s, got {goal_velocity}")
        return Task("rotation", "pendulum", "vel", velocity)
    raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")


def pose_observation(env: RealEnv, angles: np.ndarray) -> np.ndarray:
    """The observation of the system at rest at joint ``angles`` ``(J,)`` (a picture only: the simulator is
    put into the pose, no physics step). Returns ``(H, W, C)`` uint8, or angle features ``(2J,)``."""
    angles = np.asarray(angles, dtype=np.float64)
    return env.reset(seed=0, options={"state": np.concatenate([angles, np.zeros_like(angles)])})[0]


class ReachGoals:
    """Per-episode goals of the reach task: the real env's target → inverse kinematics → the pose's
    observation (drawn in a private env of the same kind) → q(a|x).

    Args:
        model: the reacher model.
        env_name: ``reacher_angles`` or ``reacher_rgb``, the model's observations.
    """

    def __init__(self, model: torch.nn.Module, env_name: str) -> None:
        self.model = model
        self.pictures = RealEnv(env_name)
        self.arm = TwoLinkArm.of(self.pictures)

    def angles(self, env: RealEnv) -> np.ndarray:
        """The joint angles ``(2,)`` that put the finger on ``env``'s target, nearest the arm's present pose."""
        return self.arm.nearest_solution(target_position(env), env.state[:2])

    def encode(self, angles: np.ndarray) -> Tensor:
        """The latent goal ``(Da,)`` of the pose at joint ``angles`` ``(2,)``."""
        return goal_from_images(self.model, pose_observation(self.pictures, angles))

    def __call__(self, env: RealEnv) -> Tensor:
        """The latent goal ``(Da,)`` of ``env``'s present episode (call it right after the reset)."""
        return self.encode(self.angles(env))

    def close(self) -> None:
        self.pictures.close()


@dataclass
class Demonstration:
    """A real steady turn: frames ``(T, H, W, C)``, actions ``(T, Du)``, its measured mean velocity
    (rad/s), the constant torque that drives it and the physics steps spent finding and recording it."""

    frames: np.ndarray
    actions: np.ndarray
    mean_velocity: float
    torque: float
    physics_steps: int


def _steady_turn(env: RealEnv, torque: float, direction: float, record: bool) -> tuple[float, list[np.ndarray]]:
    """Spin the pole up under a constant ``torque`` (from a fast turn at the bottom) and measure the steady
    mean velocity; with ``record``, also return the last :data:`GOAL_SEQUENCE_LENGTH` frames."""
    env.reset(seed=0, options={"state": np.array([np.pi, direction * 11.0])})
    action = np.array([direction * torque], np.float32)
    velocities, frames = [], []
    for _ in range(SPIN_UP_STEPS + MEASURE_STEPS):
        frame, _, _, _, info = env.step(action)
        velocities.append(float(info["state"][-1]))
        frames.append(frame)
    return float(np.mean(velocities[-MEASURE_STEPS:])), frames[-GOAL_SEQUENCE_LENGTH:] if record else []


def rotation_demonstration(goal_velocity: float, action_repeat: int, env_name: str = "pendulum") -> Demonstration:
    """Find the constant torque whose steady turn has mean speed ``|goal_velocity|`` and record it.

    Raises:
        ValueError: no steady turn of that speed exists (the message gives the range that does).
    """
    direction, target = float(np.sign(goal_velocity)), abs(goal_velocity)
    env = RealEnv(env_name, action_repeat=action_repeat)
    steps_per_trial = (SPIN_UP_STEPS + MEASURE_STEPS) * env.action_repeat
    try:
        fastest, _ = _steady_turn(env, 1.0, direction, record=False)
        low, high, trials = 0.0, 1.0, 1
        if target > abs(fastest):
            raise ValueError(f"goal velocity {goal_velocity} rad/s is out of reach: at full torque the pole turns "
                             f"at {abs(fastest):.2f} rad/s at most")
        for _ in range(BISECTION_ROUNDS):
            middle = (low + high) / 2
            speed, _ = _steady_turn(env, middle, direction, record=False)
            trials += 1
            low, high = (middle, high) if abs(speed) < target else (low, middle)
        speed, frames = _steady_turn(env, high, direction, record=True)
        if abs(abs(speed) / target - 1) > 0.05:
            raise ValueError(f"goal velocity {goal_velocity} rad/s has no steady turn on this pendulum (slower turns "
                             f"stall at the top); choose a speed between about 3 and {abs(fastest):.1f} rad/s")
        actions = np.full((GOAL_SEQUENCE_LENGTH, *env.action_space.shape), direction * high, np.float32)
        return Demonstration(np.stack(frames), actions, speed, direction * high, (trials + 1) * steps_per_trial)
    finally:
        env.close()


def encode_goal(model: torch.nn.Module, task: Task, action_repeat: int) -> Tensor:
    """The latent goal of ``task`` for ``model``: ``(Da,)`` position or ``(Dv,)`` velocity; ``(0,)`` for a
    goal-conditioned task, whose goals change per episode."""
    if task.goal_conditioned:
        return torch.zeros(0)
    if task.goal_velocity is None:
        env = RealEnv(task.env_name, action_repeat=action_repeat)
        try:
            return goal_from_images(model, pose_observation(env, np.zeros(1)))
        finally:
            env.close()
    demo = rotation_demonstration(task.goal_velocity, action_repeat, task.env_name)
    return goal_from_sequence(model, demo.frames, demo.actions)
