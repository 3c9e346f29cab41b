"""Sequence data sets: the on-disk format, its writer and its loader.

One data set is one ``.npz`` file (no pickled objects) holding

- ``obs``: images ``(N, T, H, W, C)`` uint8, or angle features ``(N, T, Dobs)`` float32
  (``cos``/``sin`` of each joint angle);
- ``actions``: ``(N, T, Du)`` float32; ``actions[:, t]`` acts between frame t and t+1
  (the last one is recorded but never seen in a frame);
- ``states``: ``(N, T, S)`` float32 true physical state beside every frame;
- ``train_indices`` / ``test_indices``: int64 sequence indices of the stored split;
- ``metadata``: a JSON string (env id, seed, action repeat, image size, state names,
  which state columns are angles, package versions, ...).

The loader returns torch tensors ``(B, T, ...)``. Images stay uint8 ``(B, T, C, H, W)`` (a
channels-last view of the stored pixels, a quarter of float32's memory) until
:meth:`SequenceDataset.observations` turns the frames a batch needs into floats in [0, 1]. Anything wrong with the file raises one :class:`DatasetError` naming the file
and what is wrong.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentworld.common.errors import DatasetError
from latentworld.common.fileio import atomic_target

FORMAT_VERSION = 1
REQUIRED_KEYS = ("obs", "actions", "states", "train_indices", "test_indices", "metadata")
REQUIRED_METADATA = ("env_id", "obs_type", "seed", "action_repeat", "state_names", "angle_state_dims")


@dataclass
class SequenceDataset:
    """One split of a data set as torch tensors.

    Attributes:
        obs: the frames as stored: ``(B, T, C, H, W)`` uint8 for images (channels-last in memory),
            ``(B, T, Dobs)`` float32 for angles. Models take :meth:`observations`.
        actions: ``(B, T, Du)`` float32.
        states: ``(B, T, S)`` float32 true physical state.
        metadata: the file's metadata dictionary.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    states: torch.Tensor
    metadata: dict[str, Any]

    def __len__(self) -> int:
        return self.obs.shape[0]

    def observations(self, index: Any = slice(None)) -> torch.Tensor:
        """The frames ``obs[index]`` as a model takes them: float32, images scaled to [0, 1].

        ``index`` is any tensor index (``np.s_[:, :5]`` for the first five frames of every sequence).
        """
        frames = self.obs[index]
        return frames.float().div_(255.0) if self.is_image else frames

    @property
    def is_image(self) -> bool:
        return self.metadata["obs_type"] == "image"

    def check_fits(self, obs_shape: tuple[int, ...], dim_u: int, source: str, model: str) -> None:
        """Raise :class:`DatasetError` unless the frames are ``obs_shape`` and the actions ``dim_u`` wide."""
        have = tuple(self.obs.shape[2:])
        if have != tuple(obs_shape) or self.actions.shape[-1] != dim_u:
            raise DatasetError(f"{source} does not fit {model}: observations {have} and {self.actions.shape[-1]} "
                               f"action dim(s), the model takes {tuple(obs_shape)} and {dim_u}")


def save_dataset(
    path: str | os.PathLike,
    obs: np.ndarray,
    actions: np.ndarray,
    states: np.ndarray,
    train_indices: np.ndarray,
    test_indices: np.ndarray,
    metadata: dict[str, Any],
    force: bool = False,
) -> Path:
    """Validate and write a data set atomically (a temporary file renamed into place).

    Args:
        path: target ``.npz`` file.
        obs: ``(N, T, H, W, C)`` uint8 or ``(N, T, Dobs)`` float32.
        actions: ``(N, T, Du)``.
        states: ``(N, T, S)``.
        train_indices, test_indices: disjoint sequence indices covering ``range(N)``.
        metadata: JSON-serialisable dictionary with at least ``REQUIRED_METADATA``.
        force: overwrite an existing file; without it an existing file is an error.

    Returns:
        The path written.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists; pass --force (force=True) to overwrite it")
    arrays = {
        "obs": obs,
        "actions": actions.astype(np.float32),
        "states": states.astype(np.float32),
        "train_indices": np.asarray(train_indices, dtype=np.int64),
        "test_indices": np.asarray(test_indices, dtype=np.int64),
        "metadata": np.array(json.dumps({"format_version": FORMAT_VERSION, **metadata})),
    }
    _validate(arrays, path)
    with atomic_target(path, suffix=".tmp.npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata dictionary of a data-set file, without loading the arrays."""
    return _parse_metadata(_open(Path(path))["metadata"], Path(path))


def load_dataset(
    path: str | os.PathLike,
    split: str = "train",
    expect_obs_type: str | None = None,
    expect_env_id: str | None = None,
    expect_action_repeat: int | None = None,
) -> SequenceDataset:
    """Load one split of a data set as torch tensors.

    Args:
        path: the ``.npz`` file written by :func:`save_dataset`.
        split: ``"train"``, ``"test"`` or ``"all"``.
        expect_obs_type: if given, ``"image"`` or ``"angles"``; a mismatch is an error.
        expect_env_id: if given, the env id the file must come from.
        expect_action_repeat: if given, the action repeat its frames must have been recorded with (a
            model's dynamics hold for its own time step only).

    Returns:
        The split as a :class:`SequenceDataset`.

    Raises:
        DatasetError: missing, corrupt or mismatched file, or an unknown split.
    """
    path = Path(path)
    if split not in ("train", "test", "all"):
        raise DatasetError(f"unknown split {split!r}; use 'train', 'test' or 'all'")
    npz = _open(path)
    missing = [key for key in REQUIRED_KEYS if key not in npz.files]
    if missing:
        npz.close()
        raise DatasetError(f"{path} lacks arrays {missing} (has {sorted(npz.files)}); it is not a data set written "
                           "by `python -m envs.generate`")
    try:
        arrays = {key: npz[key] for key in REQUIRED_KEYS}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path} is corrupt (cannot read its arrays: {err}); regenerate it") from err
    finally:
        npz.close()
    metadata = _validate(arrays, path)
    for name, want, have in (
        ("obs_type", expect_obs_type, metadata["obs_type"]),
        ("env_id", expect_env_id, metadata["env_id"]),
        ("action_repeat", expect_action_repeat, metadata.get("action_repeat")),
    ):
        if want is not None and want != have:
            raise DatasetError(f"{path} holds {name}={have!r}, expected {want!r}; regenerate it with the model's "
                               "settings (python -m envs.generate) or pass another data set")
    index = {
        "train": arrays["train_indices"],
        "test": arrays["test_indices"],
        "all": np.arange(arrays["obs"].shape[0]),
    }[split]
    obs = torch.from_numpy(arrays["obs"][index])
    # Images: (B, T, C, H, W) over the stored (B, T, H, W, C) pixels, no copy.
    obs = obs.permute(0, 1, 4, 2, 3) if metadata["obs_type"] == "image" else obs.float()
    return SequenceDataset(
        obs=obs,
        actions=torch.from_numpy(arrays["actions"][index]).float(),
        states=torch.from_numpy(arrays["states"][index]).float(),
        metadata=metadata,
    )


def _open(path: Path) -> Any:
    if not path.exists():
        raise DatasetError(f"data set {path} does not exist; generate it with `python -m envs.generate`")
    if not path.is_file():
        raise DatasetError(f"data set {path} is not a file")
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise DatasetError(f"{path} is not a readable .npz data set ({err}); regenerate it") from err


def _parse_metadata(raw: np.ndarray, path: Path) -> dict[str, Any]:
    try:
        metadata = json.loads(str(raw))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} has unreadable metadata ({err})") from err
    if not isinstance(metadata, dict):
        raise DatasetError(f"{path}: metadata must be a JSON object")
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise DatasetError(f"{path} metadata lacks {missing}")
    return metadata


def _validate(arrays: dict[str, np.ndarray], path: Path) -> dict[str, Any]:
    """Check keys, shapes, dtypes and the split; return the parsed metadata."""
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise DatasetError(f"{path} lacks arrays {missing}")
    metadata = _parse_metadata(arrays["metadata"], path)
    obs, actions, states = arrays["obs"], arrays["actions"], arrays["states"]
    if metadata["obs_type"] == "image":
        if obs.ndim != 5 or obs.dtype != np.uint8 or obs.shape[-1] not in (1, 3):
            raise DatasetError(f"{path}: image obs must be (N, T, H, W, C) uint8 with C in (1, 3), got "
                               f"{obs.shape} {obs.dtype}")
    elif metadata["obs_type"] == "angles":
        if obs.ndim != 3 or not np.issubdtype(obs.dtype, np.floating):
            raise DatasetError(f"{path}: angle obs must be (N, T, D) float, got {obs.shape} {obs.dtype}")
    else:
        raise DatasetError(f"{path}: unknown obs_type {metadata['obs_type']!r}")
    n, t = obs.shape[:2]
    for name, arr in (("actions", actions), ("states", states)):
        if arr.ndim != 3 or arr.shape[:2] != (n, t):
            raise DatasetError(f"{path}: {name} must be ({n}, {t}, D), got {arr.shape}")
    if states.shape[-1] != len(metadata["state_names"]):
        raise DatasetError(f"{path}: states have {states.shape[-1]} columns but metadata names "
                           f"{len(metadata['state_names'])}")
    if t < 2:
        raise DatasetError(f"{path}: sequences need at least 2 frames, got {t}")
    train, test = arrays["train_indices"], arrays["test_indices"]
    if not (np.issubdtype(train.dtype, np.integer) and np.issubdtype(test.dtype, np.integer)):
        raise DatasetError(f"{path}: train/test indices must be integers")
    if len(train) == 0 or len(test) == 0:
        raise DatasetError(f"{path}: needs at least one train and one test sequence")
    if np.sort(np.concatenate([train, test])).tolist() != list(range(n)):
        raise DatasetError(f"{path}: train/test indices must be disjoint and cover all {n} sequences")
    for name in ("obs", "actions", "states"):
        array = arrays[name]
        if np.issubdtype(array.dtype, np.floating):
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            if bad:
                raise DatasetError(f"{path}: {name} holds {bad} NaN or infinite value(s); regenerate the data set")
        elif name != "obs":
            raise DatasetError(f"{path}: {name} must be floating point, got {array.dtype}")
    return metadata
