"""Goals in latent space (paper §6.4): positions from images, velocities from image sequences.

With H the rectangular identity the first Da dims of z are the position (z = a there) and the
last Dv = Dz − Da dims the velocity, so

- a goal **position** p_g is the mean of q(a|x) over one or more goal images;
- a goal **velocity** v_g is the velocity part of the smoothed z of an image sequence with its
  actions, averaged over time;
- or a raw latent vector (Da values for "pos", Dv for "vel", or a whole z of Dz values).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

REWARD_KINDS = ("pos", "vel")


def as_observation_batch(images: np.ndarray | Tensor, obs_shape: tuple[int, ...]) -> Tensor:
    """Observations as the model's float batch: images ``(H, W[, C])`` or ``(N, H, W[, C])``, uint8 or
    float in [0, 1], become ``(N, C, H, W)``; angle features ``(Dobs,)`` or ``(N, Dobs)`` become ``(N, Dobs)``.

    Raises:
        ValueError: the observations do not have the model's ``obs_shape``.
    """
    array = torch.as_tensor(np.asarray(images))
    if len(obs_shape) == 1:
        if array.shape[-1:] != obs_shape or array.ndim > 2:
            raise ValueError(f"goal observation(s) of shape {tuple(array.shape)} do not match the model's "
                             f"observations {obs_shape}")
        return array.float().reshape(-1, obs_shape[0])
    channels, height, width = obs_shape
    if array.ndim == 2:  # one grayscale image (H, W)
        array = array[None, ..., None]
    elif array.ndim == 3:  # one image (H, W, C), or a grayscale stack (N, H, W)
        single = tuple(array.shape) == (height, width, channels)
        array = array[None] if single else array[..., None]
    if array.ndim != 4 or tuple(array.shape[1:]) != (height, width, channels):
        raise ValueError(f"goal image(s) of shape {tuple(np.shape(images))} do not match the model's frames "
                         f"({height}, {width}, {channels}) (H, W, C)")
    array = array.float() / 255.0 if array.dtype == torch.uint8 else array.float()
    return array.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def goal_from_images(model: torch.nn.Module, images: np.ndarray | Tensor) -> Tensor:
    """Position goal: the mean of q(a|x) over the images. Returns ``(Da,)``."""
    return model.encoder(as_observation_batch(images, model.obs_shape))[0].mean(0)


@torch.no_grad()
def goal_from_sequence(model: torch.nn.Module, images: np.ndarray | Tensor, actions: np.ndarray | Tensor
                       ) -> Tensor:
    """Velocity goal: the velocity dims of the smoothed z, averaged over time.

    Args: images ``(T, H, W[, C])`` (or angle features ``(T, Dobs)``); actions ``(T, Du)``. Returns ``(Dv,)``.
    """
    frames = as_observation_batch(images, model.obs_shape)[None]  # (1, T, C, H, W)
    actions = torch.as_tensor(np.asarray(actions), dtype=torch.float32).reshape(1, frames.shape[1], -1)
    smoothed = model.posterior(frames, actions).smoothed_mean[0]
    return smoothed[:, model.config.dim_a:].mean(0)


def load_goal(model: torch.nn.Module, goal: str | Path | Sequence[float] | np.ndarray | Tensor, reward: str
              ) -> Tensor:
    """Turn a goal argument into the latent target of the reward.

    Args:
        model: a disentangled EKVAE.
        goal: a path to a PNG image or a ``.npy`` stack of images (position goal), a ``.npz`` with
            ``obs`` ``(T, H, W[, C])`` and ``actions`` ``(T, Du)`` (velocity goal), or numbers (a raw
            latent vector: Da or Dv values, or a whole z whose relevant part is used).
        reward: ``"pos"`` or ``"vel"``.

    Returns:
        ``(Da,)`` for ``"pos"``, ``(Dv,)`` for ``"vel"``.
    """
    dim_a, dim_z = model.config.dim_a, model.config.dim_z
    if isinstance(goal, (str, Path)):
        path = Path(goal)
        if not path.exists():
            raise FileNotFoundError(f"goal file {path} does not exist")
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                if "obs" not in arrays or "actions" not in arrays:
                    raise ValueError(f"{path}: a goal sequence needs arrays 'obs' and 'actions'")
                target = goal_from_sequence(model, arrays["obs"], arrays["actions"])
            return _checked(target, reward, "vel", path)
        images = np.load(path, allow_pickle=False) if path.suffix == ".npy" else iio.imread(path)
        return _checked(goal_from_images(model, images), reward, "pos", path)
    vector = torch.as_tensor(np.asarray(goal, dtype=np.float32)).flatten()
    if not torch.isfinite(vector).all():
        raise ValueError("goal vector contains NaN or infinite values")
    if vector.numel() == dim_z:
        return vector[:dim_a] if reward == "pos" else vector[dim_a:]
    want = dim_a if reward == "pos" else dim_z - dim_a
    if vector.numel() != want:
        raise ValueError(f"a raw {reward!r} goal needs {want} values (or a whole z of {dim_z}), got {vector.numel()}")
    return vector


def _checked(target: Tensor, reward: str, kind: str, source: Path) -> Tensor:
    if reward != kind:
        what = "an image gives a position" if kind == "pos" else "an image sequence gives a velocity"
        raise ValueError(f"goal {source}: {what} goal, but reward={reward!r}; use reward={kind!r}")
    return target
