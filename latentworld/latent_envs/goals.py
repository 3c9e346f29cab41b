"""Goals in latent space (paper §6.4): positions from images, velocities from image sequences.

With H the rectangular identity the first Da dims of z are the position (z = a there) and the
last Dv = Dz − Da dims the velocity, so

- a goal **position** p_g is the mean of q(a|x) over one or more goal images;
- a goal **velocity** v_g is the velocity part of the smoothed z of an image sequence with its
  actions, averaged over time;
- or a raw latent vector (Da values for "pos", Dv for "vel", or a whole z of Dz values).

A model without that split (the DKS, the DVBS) has one goal kind, the whole **state**: the belief
mean of its online filter after the goal image (averaged over several images), or Dz raw values.
One frame shows no motion, so the velocity that such a goal holds is the filter's guess from a
single frame (for the pendulum: near rest), and r^state pulls toward it as well.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

from latentworld.common.errors import GoalError
from latentworld.models.base import StateSpaceModel

REWARD_KINDS = ("pos", "vel", "state")
PIXEL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}  # 8- and 16-bit images (PNG)


def unit_pixels(images: np.ndarray) -> np.ndarray:
    """Pixel values as float32 in [0, 1]: uint8 and uint16 are scaled by their full range; floats
    must already lie in [0, 1]. Anything else (another integer type, bool, NaN, a float image in
    0..255) is refused rather than guessed."""
    if images.dtype in PIXEL_SCALE:
        return images.astype(np.float32) / PIXEL_SCALE[images.dtype]
    if not np.issubdtype(images.dtype, np.floating):
        raise GoalError(f"goal images of dtype {images.dtype} are ambiguous; pass uint8 or uint16 images, "
                        "or floats in [0, 1]")
    if not np.isfinite(images).all():
        raise GoalError("goal images contain NaN or infinite values")
    if images.size and (images.min() < 0 or images.max() > 1):
        raise GoalError(f"float goal images must lie in [0, 1], got values in [{images.min():g}, {images.max():g}]; "
                        "divide 8-bit values by 255")
    return images.astype(np.float32)


def as_observation_batch(images: np.ndarray | Tensor, obs_shape: tuple[int, ...]) -> Tensor:
    """Observations as the model's float batch: images ``(H, W[, C])`` or ``(N, H, W[, C])`` (see
    :func:`unit_pixels` for the accepted pixel types; an opaque alpha channel is dropped) become
    ``(N, C, H, W)``; angle features ``(Dobs,)`` or ``(N, Dobs)`` become ``(N, Dobs)``.

    Raises:
        GoalError: the observations do not have the model's ``obs_shape``, or their values are unusable.
    """
    array = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    if len(obs_shape) == 1:
        if array.shape[-1:] != obs_shape or array.ndim > 2 or not np.issubdtype(array.dtype, np.number):
            raise GoalError(f"goal observation(s) of shape {array.shape} ({array.dtype}) do not match the model's "
                            f"observations {obs_shape}")
        if not np.isfinite(array).all():
            raise GoalError("goal observations contain NaN or infinite values")
        return torch.as_tensor(array, dtype=torch.float32).reshape(-1, obs_shape[0])
    channels, height, width = obs_shape
    if array.ndim in (3, 4) and array.shape[-1] == 4 and channels == 3:  # RGBA, e.g. a PNG with alpha
        alpha = array[..., 3]
        if not (alpha == alpha.max()).all():
            raise GoalError("goal image has a transparent alpha channel; save it as RGB")
        array = array[..., :3]
    array = torch.as_tensor(unit_pixels(array))
    if array.ndim == 2:  # one grayscale image (H, W)
        array = array[None, ..., None]
    elif array.ndim == 3:  # one image (H, W, C), or a grayscale stack (N, H, W)
        single = tuple(array.shape) == (height, width, channels)
        array = array[None] if single else array[..., None]
    if array.ndim != 4 or tuple(array.shape[1:]) != (height, width, channels):
        raise GoalError(f"goal image(s) of shape {tuple(np.shape(images))} do not match the model's frames "
                        f"({height}, {width}, {channels}) (H, W, C)")
    return array.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def goal_from_images(model: StateSpaceModel, images: np.ndarray | Tensor) -> Tensor:
    """Position goal: the mean of q(a|x) over the images. Returns ``(Da,)``."""
    return model.encode_position(as_observation_batch(images, model.obs_shape)).mean(0)


@torch.no_grad()
def goal_from_state_images(model: StateSpaceModel, images: np.ndarray | Tensor) -> Tensor:
    """Whole-state goal: the filter's belief mean after each image alone, averaged. Returns ``(Dz,)``."""
    return model.filter_step(None, None, as_observation_batch(images, model.obs_shape))[0].mean(0)


@torch.no_grad()
def goal_from_sequence(model: StateSpaceModel, images: np.ndarray | Tensor, actions: np.ndarray | Tensor
                       ) -> Tensor:
    """Velocity goal: the velocity dims of the smoothed z, averaged over time.

    Args: images ``(T, H, W[, C])`` (or angle features ``(T, Dobs)``); actions ``(T, Du)``. Returns ``(Dv,)``.
    """
    if model.position_dims is None:
        raise GoalError(f"this {model.kind} model's z is not split into position and velocity: no velocity goal")
    frames = as_observation_batch(images, model.obs_shape)[None]  # (1, T, C, H, W)
    actions = np.asarray(actions, dtype=np.float32)
    if actions.shape != (frames.shape[1], model.dim_u) or not np.isfinite(actions).all():
        raise GoalError(f"goal actions must be finite, of shape ({frames.shape[1]}, {model.dim_u}) (one per frame), "
                        f"got {actions.shape}")
    actions = torch.as_tensor(actions)[None]
    return model.posterior_means(frames, actions)[0, :, model.position_dims:].mean(0)


def load_goal(model: StateSpaceModel, goal: str | Path | Sequence[float] | np.ndarray | Tensor, reward: str
              ) -> Tensor:
    """Turn a goal argument into the latent target of the reward.

    Args:
        model: a model with a position/velocity split for ``"pos"`` and ``"vel"``; any model for ``"state"``.
        goal: a path to a PNG image or a ``.npy`` stack of images (position or state goal), a ``.npz``
            with ``obs`` ``(T, H, W[, C])`` and ``actions`` ``(T, Du)`` (velocity goal), or numbers (a raw
            latent vector: Da or Dv values, or a whole z whose relevant part is used).
        reward: ``"pos"``, ``"vel"`` or ``"state"``.

    Returns:
        ``(Da,)`` for ``"pos"``, ``(Dv,)`` for ``"vel"``, ``(Dz,)`` for ``"state"``.

    Raises:
        GoalError: the goal is missing, unreadable, of the wrong shape or value range, or of the wrong kind.
    """
    dim_z = model.dim_z
    dim_a = dim_z if reward == "state" else model.position_dims
    if dim_a is None:
        raise GoalError(f"this {model.kind} model's z is not split into position and velocity, so it has no "
                        f"{reward!r} goal; use reward='state'")
    if isinstance(goal, (str, Path)):
        path = Path(goal)
        if not path.is_file():
            raise GoalError(f"goal file {path} does not exist")
        try:
            return _goal_from_file(model, path, reward)
        except GoalError as err:
            raise GoalError(f"goal {path}: {err}") from None
    try:
        vector = torch.as_tensor(np.asarray(goal, dtype=np.float32)).flatten()
    except (TypeError, ValueError):
        raise GoalError(f"goal {goal!r} is neither a file nor a vector of numbers") from None
    if not torch.isfinite(vector).all():
        raise GoalError("goal vector contains NaN or infinite values")
    if vector.numel() == dim_z:
        return vector[dim_a:] if reward == "vel" else vector[:dim_a]
    want = dim_z - dim_a if reward == "vel" else dim_a
    if vector.numel() != want:
        raise GoalError(f"a raw {reward!r} goal needs {want} values (or a whole z of {dim_z}), got {vector.numel()}")
    return vector


def _goal_from_file(model: StateSpaceModel, path: Path, reward: str) -> Tensor:
    kind = "vel" if path.suffix == ".npz" else "state" if reward == "state" else "pos"
    if reward == "state" and kind == "vel":
        raise GoalError("an image sequence gives a velocity goal; reward='state' takes a goal image (.png or .npy)")
    if reward != kind:
        what = "an image gives a position" if kind == "pos" else "an image sequence gives a velocity"
        raise GoalError(f"{what} goal, but reward={reward!r}; use reward={kind!r}")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                if "obs" not in arrays or "actions" not in arrays:
                    raise GoalError("a goal sequence needs arrays 'obs' and 'actions'")
                return goal_from_sequence(model, arrays["obs"], arrays["actions"])
        images = np.load(path, allow_pickle=False) if path.suffix == ".npy" else iio.imread(path)
    except GoalError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise GoalError(f"cannot read it ({err})") from None
    return goal_from_state_images(model, images) if kind == "state" else goal_from_images(model, images)
