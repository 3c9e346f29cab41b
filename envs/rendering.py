"""Fast offscreen rendering of a dm_control model: one reused ``mujoco.Renderer`` per env.

dm_control's ``physics.render`` draws shadows and reflections and re-creates scene state per call
(about 50-60 frames/s on CPU); a single ``mujoco.Renderer`` with shadow, reflection, skybox and
fog turned off draws several hundred to ~1500 frames/s with clean frames. The model is restyled
once at construction (hidden geoms, flat colours, wider visual radii); only visual fields change,
so the simulated dynamics are untouched.
"""

from __future__ import annotations

import weakref

import mujoco
import numpy as np

from envs.specs import RenderSpec

_OFF_FLAGS = (
    mujoco.mjtRndFlag.mjRND_SHADOW,
    mujoco.mjtRndFlag.mjRND_REFLECTION,
    mujoco.mjtRndFlag.mjRND_SKYBOX,
    mujoco.mjtRndFlag.mjRND_FOG,
)


MARKER_GROUP = 5  # geom group of the task's markers: off in observations, on in render_rgb(markers=True)


def _geom_id(model: mujoco.MjModel, name: str) -> int:
    geom_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)
    if geom_id < 0:
        raise ValueError(f"model has no geom named {name!r}")
    return geom_id


def restyle_model(model: mujoco.MjModel, spec: RenderSpec) -> None:
    """Apply ``spec``'s visual changes to ``model`` in place (visual fields only).

    Args:
        model: the MuJoCo model of the env's physics (``physics.model.ptr``).
        spec: hidden geoms, colours, visual radii and lighting to apply.
    """
    for name in spec.hide_geoms:
        geom_id = _geom_id(model, name)
        # A material's colour overrides geom_rgba, so drop the material first.
        model.geom_matid[geom_id] = -1
        model.geom_rgba[geom_id] = (0.0, 0.0, 0.0, 0.0)
    for name, rgba in spec.recolor_geoms:
        geom_id = _geom_id(model, name)
        model.geom_matid[geom_id] = -1
        model.geom_rgba[geom_id] = rgba
    for name in spec.marker_geoms:
        model.geom_group[_geom_id(model, name)] = MARKER_GROUP
    for name, radius in spec.visual_radius:
        # Body masses and inertias were computed at compile time and contacts are disabled in
        # these tasks, so a runtime size change only alters the drawing.
        model.geom_size[_geom_id(model, name), 0] = radius
    if spec.flat_lighting:
        model.light_active[:] = 0
        model.vis.headlight.ambient[:] = 1.0
        model.vis.headlight.diffuse[:] = 0.0
        model.vis.headlight.specular[:] = 0.0


class FastRenderer:
    """Draws observations of one physics instance with a fixed free camera.

    Args:
        model: the (restyled) MuJoCo model.
        spec: output size, channels, camera and supersampling.
    """

    def __init__(self, model: mujoco.MjModel, spec: RenderSpec) -> None:
        self.spec = spec
        full = spec.size * spec.supersample
        self._renderer = mujoco.Renderer(model, full, full)
        # Runs at close(), at garbage collection, or at interpreter exit while EGL is still loaded
        # (mujoco.Renderer.__del__ at shutdown would fail with an EGLError traceback).
        self._free = weakref.finalize(self, self._renderer.close)
        for flag in _OFF_FLAGS:
            self._renderer.scene.flags[flag] = 0
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self._camera.lookat[:] = spec.camera.lookat
        self._camera.distance = spec.camera.distance
        self._camera.azimuth = spec.camera.azimuth
        self._camera.elevation = spec.camera.elevation
        self._options = {}
        for markers in (False, True):
            option = mujoco.MjvOption()
            option.geomgroup[:] = 1
            option.geomgroup[MARKER_GROUP] = int(markers)
            self._options[markers] = option

    def render_rgb(self, data: mujoco.MjData, markers: bool = False) -> np.ndarray:
        """The RGB frame of ``data``, area-averaged to the output size; with ``markers``, the task's
        marker geoms (the reacher's target) are drawn too.

        Returns:
            ``(size, size, 3)`` uint8.
        """
        self._renderer.update_scene(data, self._camera, self._options[markers])
        frame = self._renderer.render()
        k = self.spec.supersample
        if k == 1:
            return frame
        size = self.spec.size
        small = frame.reshape(size, k, size, k, 3).mean(axis=(1, 3), dtype=np.float32)
        return np.round(small).astype(np.uint8)

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """The observation image of ``data``.

        Returns:
            ``(size, size, channels)`` uint8; grayscale is the mean of R, G and B.
        """
        rgb = self.render_rgb(data)
        if self.spec.channels == 3:
            return rgb
        return np.round(rgb.mean(axis=-1, keepdims=True, dtype=np.float32)).astype(np.uint8)

    def close(self) -> None:
        """Free the GL context (idempotent)."""
        self._free()
