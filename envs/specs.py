"""What each real environment is: dm_control task, observation, camera, state and data defaults.

One :class:`EnvSpec` per name in :data:`SPECS`; the env, the renderer, the data generator and the
action-repeat study read their settings from here, so each choice is written once.

Choices and why (numbers from ``python -m envs.action_repeat_study``, 200 windows, seed 0):

- **Pendulum**: 16x16 grayscale, 500 x 15 steps. The pole is drawn flat white (no lighting) on
  black with its visual radius widened from 0.02 to 0.06 m (the pole geom has zero mass and
  contacts are off, so the dynamics are untouched), rendered at 64x64 and area-averaged to 16x16:
  at every angle a bright anti-aliased bar spans half the frame. Initial state: angle uniform in
  [-pi, pi), angular velocity uniform in [-8, 8] rad/s (from the bottom the pole needs ~8.9 rad/s
  to reach the top, so swings, the upright pole and full rotations all appear).
  Action repeat 4 (80 ms per frame; a window spans 1.2 s, ~85 % of the 1.42 s small-swing period):
  median per-frame |dq| 0.28 rad (p99 0.76 < pi/4), median path over a window 4.2 rad. Repeat 5
  would push p99 per-frame motion to 0.94 rad and the control interval to 100 ms.
- **Reacher**: 64x64 RGB (or joint-angle features), 2000 x 30 steps, top-down free camera, floor
  and walls hidden (black background). The target is NOT in the observations: the arm alone is the
  state; goals are given as images of the arm (``RealEnv.render()`` draws the target for videos).
  Initial state: shoulder uniform in [-pi, pi), wrist uniform
  in its joint range (+-160 deg), both velocities uniform in [-4, 4] rad/s (about the range random
  actions keep them in: p99 ~4-5 rad/s). **Action repeat 1** (20 ms), chosen for the velocities and
  for control (joint-angle model, Dz = 6 / Da = 4, the library's default noise starts, 6000 steps, data
  and model seed 0; the real returns on the tuning seeds 100-119 of dm_control reacher-easy, J(ω)
  reach policy):

  ============  =====================  ====================  ===============================
  repeat        velocity R² (sh / wr)  real return           note
  ============  =====================  ====================  ===============================
  4 (80 ms)     0.78 / -0.01           not run               wrist velocity ~ echo of u_t-1
  2 (40 ms)     0.87 / 0.90            889 (2 of 20 fail)    the policy pushes the wrist through its limit
  1 (20 ms)     0.89 / 0.86            987 (none fail)
  ============  =====================  ====================  ===============================

  The wrist is so damped that its velocity after a frame is nearly a function of the last action
  (R² from u alone 0.83 / 0.94 / 0.96 at repeat 1 / 2 / 4), so at long repeats a model has no use
  for it. Holding each random action for 5 frames (``--action-hold 5``) made it worse (wrist
  velocity R² 0.02 at repeat 2). At repeat 1 a window's net |dq| median is ~0.2 rad.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

ENV_NAMES = ("pendulum", "reacher_angles", "reacher_rgb")


@dataclass(frozen=True)
class CameraSpec:
    """A MuJoCo free camera (``mjCAMERA_FREE``), in world coordinates and degrees."""

    lookat: tuple[float, float, float]
    distance: float
    azimuth: float
    elevation: float


@dataclass(frozen=True)
class RenderSpec:
    """How observations are drawn.

    Attributes:
        size: output height = width in pixels.
        channels: 1 (grayscale, the mean of R, G, B) or 3 (RGB).
        camera: the free camera.
        supersample: render at ``size * supersample`` and area-average down (anti-aliasing).
        hide_geoms: geoms made fully transparent (floor, walls).
        marker_geoms: geoms of the task, not of the system (the reacher's target): left out of the
            observations, drawn by ``RealEnv.render()`` for people to watch.
        recolor_geoms: ``(geom, rgba)`` pairs that replace the geom's material colour.
        visual_radius: ``(geom, radius)`` pairs that change a geom's drawn size only.
        flat_lighting: full ambient light, no diffuse/specular, model lights off: flat colours.
    """

    size: int
    channels: int
    camera: CameraSpec
    supersample: int = 1
    hide_geoms: tuple[str, ...] = ()
    marker_geoms: tuple[str, ...] = ()
    recolor_geoms: tuple[tuple[str, tuple[float, float, float, float]], ...] = ()
    visual_radius: tuple[tuple[str, float], ...] = ()
    flat_lighting: bool = False

    def record(self) -> dict[str, Any]:
        """How the frames are drawn, in JSON types, as data sets (``metadata["camera"]``) and image models'
        checkpoints record it: two equal records mean frames drawn alike."""
        camera = self.camera
        return {
            "type": "free",
            "lookat": list(camera.lookat),
            "distance": camera.distance,
            "azimuth": camera.azimuth,
            "elevation": camera.elevation,
            "supersample": self.supersample,
            "hidden_geoms": list(self.hide_geoms + self.marker_geoms),
            "recolored_geoms": [g for g, _ in self.recolor_geoms],
            "geom_colours": {g: list(rgba) for g, rgba in self.recolor_geoms},
            "visual_radius": dict(self.visual_radius),
            "flat_lighting": self.flat_lighting,
        }


@dataclass(frozen=True)
class EnvSpec:
    """One real environment and its data-set defaults.

    Attributes:
        name: the short name used by :func:`envs.make_env` and ``python -m envs.generate``.
        env_id: shimmy's Gymnasium id of the dm_control task.
        obs_type: ``"image"`` or ``"angles"`` (``[cos q, sin q]`` per joint).
        joints: the joints whose positions and velocities make the state.
        joint_ranges: ``(low, high)`` of each joint's initial angle in radians.
        max_init_velocity: initial angular velocities are uniform in ``[-v, v]`` rad/s.
        action_repeat: default number of physics control steps per env step.
        action_hold: default number of frames each random action of the data is held for.
        n_sequences, seq_len, test_fraction: data-set defaults.
        render: how frames are drawn: the observations of an image env, ``render()`` of any env.
    """

    name: str
    env_id: str
    obs_type: str
    joints: tuple[str, ...]
    joint_ranges: tuple[tuple[float, float], ...]
    max_init_velocity: float
    action_repeat: int
    action_hold: int
    n_sequences: int
    seq_len: int
    test_fraction: float
    render: RenderSpec

    @property
    def state_names(self) -> list[str]:
        """Names of the state columns: joint angles, then joint angular velocities."""
        return [f"{j}_angle" for j in self.joints] + [f"{j}_velocity" for j in self.joints]

    @property
    def angle_state_dims(self) -> list[int]:
        """Indices of the state columns that are angles (wrapped to [-pi, pi))."""
        return list(range(len(self.joints)))


_PENDULUM_RENDER = RenderSpec(
    size=16,
    channels=1,
    camera=CameraSpec(lookat=(0.0, 0.0, 0.6), distance=1.4, azimuth=90.0, elevation=0.0),
    supersample=4,
    hide_geoms=("floor",),
    recolor_geoms=tuple((g, (1.0, 1.0, 1.0, 1.0)) for g in ("base", "pole", "mass")),
    visual_radius=(("pole", 0.06),),
    flat_lighting=True,
)

# Top-down, image x = world x, image y = world y; 0.7 m away the 0.25 m reach (finger
# included) fills 87 % of the half-frame.
_REACHER_RENDER = RenderSpec(
    size=64,
    channels=3,
    camera=CameraSpec(lookat=(0.0, 0.0, 0.0), distance=0.7, azimuth=90.0, elevation=-90.0),
    hide_geoms=("ground", "wall_x", "wall_y", "wall_neg_x", "wall_neg_y"),
    marker_geoms=("target",),
)

_WRIST_LIMIT = math.radians(160.0)  # reacher.xml: wrist range="-160 160"
_REACHER_COMMON = {
    "env_id": "dm_control/reacher-easy-v0",
    "joints": ("shoulder", "wrist"),
    "joint_ranges": ((-math.pi, math.pi), (-_WRIST_LIMIT, _WRIST_LIMIT)),
    "max_init_velocity": 4.0,
    "action_repeat": 1,
    "action_hold": 1,
    "n_sequences": 2000,
    "seq_len": 30,
    "test_fraction": 0.1,
    "render": _REACHER_RENDER,
}

SPECS: dict[str, EnvSpec] = {
    "pendulum": EnvSpec(
        name="pendulum",
        env_id="dm_control/pendulum-swingup-v0",
        obs_type="image",
        joints=("hinge",),
        joint_ranges=((-math.pi, math.pi),),
        max_init_velocity=8.0,
        action_repeat=4,
        action_hold=1,
        n_sequences=500,
        seq_len=15,
        # 500 sequences are few; 100 test sequences keep the test metrics' noise low.
        test_fraction=0.2,
        render=_PENDULUM_RENDER,
    ),
    "reacher_angles": EnvSpec(name="reacher_angles", obs_type="angles", **_REACHER_COMMON),
    "reacher_rgb": EnvSpec(name="reacher_rgb", obs_type="image", **_REACHER_COMMON),
}


def get_spec(name: str) -> EnvSpec:
    """The spec of ``name``; a ``ValueError`` naming the known names otherwise."""
    if name not in SPECS:
        raise ValueError(f"unknown environment {name!r}; choose one of {', '.join(ENV_NAMES)}")
    return SPECS[name]
