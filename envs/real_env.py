"""The real MuJoCo environments: dm_control tasks (through shimmy) with our observations.

:class:`RealEnv` wraps shimmy's ``dm_control/<domain>-<task>-v0`` Gymnasium env and adds

- observations chosen by the spec: fast-rendered images (``(H, W, C)`` uint8) or joint-angle
  features ``[cos q1, sin q1, ...]`` (float32);
- an action repeat (the rewards of the repeated control steps are summed, as floats: shimmy
  returns an int 0 when dm_control gives no reward);
- the true physical state in ``info["state"]`` at every step and in :attr:`RealEnv.state`
  (float32 ``[angles..., angular velocities...]``, angles wrapped to [-pi, pi));
- ``reset(options={"state": s})`` to start from any state, and :meth:`RealEnv.sample_initial_state`
  for the data generator's random angles *and* angular velocities.

The reacher target is never in the observations (see :mod:`envs.specs`): they show the arm only;
``render()`` draws it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
import shimmy

from envs.rendering import FastRenderer, restyle_model
from envs.specs import EnvSpec, get_spec

gymnasium.register_envs(shimmy)


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Map angles (radians) to [-pi, pi)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi


def angle_features(angles: np.ndarray) -> np.ndarray:
    """The joint-angle observation: (cos, sin) of each angle, ``(..., J) -> (..., 2J)``."""
    return np.stack([np.cos(angles), np.sin(angles)], axis=-1).reshape(*np.shape(angles)[:-1], -1)


def feature_angles(features: np.ndarray) -> np.ndarray:
    """The inverse of :func:`angle_features`: joint angles ``(..., J)`` from ``(..., 2J)`` features (any
    point of a (cos, sin) pair's ray gives its angle, so decoded features need not be unit length)."""
    pairs = np.reshape(features, (*np.shape(features)[:-1], -1, 2))
    return np.arctan2(pairs[..., 1], pairs[..., 0])


class RealEnv(gymnasium.Env):
    """A dm_control task with image or angle observations, action repeat and the true state.

    Args:
        name: ``"pendulum"``, ``"reacher_angles"`` or ``"reacher_rgb"``.
        action_repeat: control steps per env step; ``None`` takes the spec's default.
        render_mode: ``None`` or ``"rgb_array"`` (``render()`` returns the RGB frame of the
            observation camera, ``(H, W, 3)`` uint8).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, name: str, action_repeat: int | None = None, render_mode: str | None = None) -> None:
        self.env_spec: EnvSpec = get_spec(name)
        self.action_repeat = self.env_spec.action_repeat if action_repeat is None else int(action_repeat)
        if self.action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self._dm = gymnasium.make(self.env_spec.env_id).unwrapped
        self._renderer: FastRenderer | None = None
        restyle_model(self.physics.model.ptr, self.env_spec.render)

        low, high = self._dm.action_space.low, self._dm.action_space.high
        self.action_space = gymnasium.spaces.Box(low.astype(np.float32), high.astype(np.float32))
        n_joints = len(self.env_spec.joints)
        if self.env_spec.obs_type == "image":
            r = self.env_spec.render
            self.observation_space = gymnasium.spaces.Box(0, 255, (r.size, r.size, r.channels), np.uint8)
        else:
            self.observation_space = gymnasium.spaces.Box(-1.0, 1.0, (2 * n_joints,), np.float32)
        self.metadata = {**self.metadata, "render_fps": 1.0 / self.dt}

    @property
    def physics(self) -> Any:
        """The dm_control ``Physics`` of the task (``physics.model.ptr``, ``physics.data.ptr``)."""
        return self._dm.physics

    @property
    def control_timestep(self) -> float:
        """Seconds per dm_control control step (before the action repeat)."""
        return float(self._dm.dt)

    @property
    def dt(self) -> float:
        """Seconds of simulated time per env step: ``action_repeat * control_timestep``."""
        return self.action_repeat * self.control_timestep

    @property
    def state(self) -> np.ndarray:
        """The true state ``(S,)`` float32: joint angles wrapped to [-pi, pi), then velocities."""
        joints = list(self.env_spec.joints)
        qpos = self.physics.named.data.qpos[joints]
        qvel = self.physics.named.data.qvel[joints]
        return np.concatenate([wrap_angle(qpos), qvel]).astype(np.float32)

    def set_state(self, state: np.ndarray) -> None:
        """Put the simulator into ``state`` (``(S,)``: angles, then angular velocities)."""
        state = np.asarray(state, dtype=np.float64)
        n = len(self.env_spec.joints)
        if state.shape != (2 * n,):
            raise ValueError(f"state must have shape ({2 * n},), got {state.shape}")
        joints = list(self.env_spec.joints)
        self.physics.named.data.qpos[joints] = state[:n]
        self.physics.named.data.qvel[joints] = state[n:]
        # Recompute positions (xmat, geom poses) so observations and rendering see the new state.
        self.physics.forward()

    def sample_initial_state(self, rng: np.random.Generator) -> np.ndarray:
        """A random state: angles uniform in the joint ranges, velocities uniform in ``[-v, v]``.

        Returns:
            ``(S,)`` float64, to pass as ``reset(options={"state": ...})``.
        """
        low, high = np.array(self.env_spec.joint_ranges).T
        angles = rng.uniform(low, high)
        v = self.env_spec.max_init_velocity
        return np.concatenate([angles, rng.uniform(-v, v, size=len(self.env_spec.joints))])

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the task (its own random start), then optionally set ``options["state"]``."""
        super().reset(seed=seed)
        self._dm.reset(seed=seed)
        if options and options.get("state") is not None:
            self.set_state(options["state"])
        return self._observe(), {"state": self.state}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` for ``action_repeat`` control steps; the reward is their sum."""
        action = np.clip(np.asarray(action, dtype=np.float64), self.action_space.low, self.action_space.high)
        total = 0.0
        terminated = truncated = False
        for _ in range(self.action_repeat):
            _, reward, terminated, truncated, _ = self._dm.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return self._observe(), total, terminated, truncated, {"state": self.state}

    def render(self) -> np.ndarray | None:
        """The RGB frame ``(H, W, 3)`` uint8 of the observation camera, with the task's markers (the
        reacher's target) drawn, if ``render_mode`` asks."""
        if self.render_mode != "rgb_array":
            return None
        return self._get_renderer().render_rgb(self.physics.data.ptr, markers=True)

    def close(self) -> None:
        """Free the renderer's GL context and the MuJoCo physics (idempotent)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._dm is not None:
            self._dm.close()
            self._dm = None

    def _get_renderer(self) -> FastRenderer:
        # Created on first use so angle envs without render() never open a GL context.
        if self._renderer is None:
            self._renderer = FastRenderer(self.physics.model.ptr, self.env_spec.render)
        return self._renderer

    def _observe(self) -> np.ndarray:
        if self.env_spec.obs_type == "image":
            return self._get_renderer().render(self.physics.data.ptr)
        return angle_features(self.physics.named.data.qpos[list(self.env_spec.joints)]).astype(np.float32)
