"""Real environments (dm_control through shimmy) and data-set generation.

``MUJOCO_GL`` defaults to ``egl`` (headless) unless set before this package is imported.

- :func:`make_env` builds ``"pendulum"`` (16x16 grayscale images), ``"reacher_angles"`` (joint
  angle features) or ``"reacher_rgb"`` (64x64 RGB images; the target is not drawn);
  ``info["state"]`` holds the true state at every step.
- ``python -m envs.generate NAME`` writes a data set (see :mod:`envs.generate`).
- ``python -m envs.action_repeat_study`` measures how far the angles move per window.
"""

from __future__ import annotations

import os

# Headless rendering by default (must precede the first mujoco/dm_control import); see README.
os.environ.setdefault("MUJOCO_GL", "egl")

from envs.real_env import RealEnv, wrap_angle
from envs.specs import ENV_NAMES, SPECS, EnvSpec, get_spec

__all__ = ["ENV_NAMES", "SPECS", "EnvSpec", "RealEnv", "get_spec", "make_env", "wrap_angle"]


def make_env(name: str, action_repeat: int | None = None, render_mode: str | None = None) -> RealEnv:
    """Build a real environment.

    Args:
        name: ``"pendulum"``, ``"reacher_angles"`` or ``"reacher_rgb"``.
        action_repeat: control steps per env step; ``None`` uses the default the data sets use
            (``SPECS[name].action_repeat``). A policy evaluated in the real env must use the
            repeat of the data its model was trained on (``metadata["action_repeat"]``).
        render_mode: ``None`` or ``"rgb_array"``.

    Returns:
        The env; observations as in its ``observation_space``, ``info["state"]`` the true state.
    """
    return RealEnv(name, action_repeat=action_repeat, render_mode=render_mode)
