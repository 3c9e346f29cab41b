"""Checkpoints: a directory holding ``config.yaml`` (the resolved config), ``model.pt`` (a
state_dict that loads with ``weights_only=True``), ``meta.json`` (model class, dims, data set, env
id, git commit, training step, and the SHA-256 of every other file) and, in a training run,
``trainer_state.pt`` (model, optimiser and schedule state in one file, for ``--resume``).

A training run keeps its checkpoint in ``RUN/checkpoint/``. Each save writes a complete new
directory (``meta.json`` last) and renames it into place, so a kill at any moment leaves either
the old or the new checkpoint, never a mix; :func:`repair_checkpoint` finishes or drops an
interrupted save. Loading checks every file against the hashes in ``meta.json``, so a corrupted
or swapped file is refused instead of evaluated.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import torch
import yaml

from latentworld.common.data import SequenceDataset, load_dataset
from latentworld.common.errors import CheckpointError, ConfigError
from latentworld.common.fileio import fsync_dir, write_synced
from latentworld.experiment.config import TrainConfig, config_from_dict, config_to_dict
from latentworld.models import MODELS

CONFIG_FILE, MODEL_FILE, META_FILE, TRAINER_FILE = "config.yaml", "model.pt", "meta.json", "trainer_state.pt"
CHECKPOINT_DIR = "checkpoint"
RUN_CONFIG_FILE = "run_config.yaml"  # marks a training run directory (see latentworld.training.trainer)
NEW_CHECKPOINT_DIR, OLD_CHECKPOINT_DIR = ".checkpoint.new", ".checkpoint.old"  # only during a save
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
REQUIRED_META = ("model_class", "obs_shape", "dim_u", "env_id")
__all__ = ["CheckpointError", "load_model", "resolve_checkpoint", "save_checkpoint"]


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_commit(source: Path = Path(__file__).parent) -> str | None:
    """The commit of the git checkout holding ``source`` (this package by default), with ``-dirty``
    appended when tracked files differ from it (the run then used code or configs no commit holds);
    None outside a git checkout."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], check=False, cwd=source, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    return commit + "-dirty" if git("status", "--porcelain", "--untracked-files=no") else commit


def save_checkpoint(run_dir: Path, model: torch.nn.Module, config: TrainConfig, meta: dict[str, Any],
                    trainer_state: dict[str, Any] | None = None) -> Path:
    """Write ``run_dir/checkpoint`` as one unit: a complete new directory renamed into place.

    Returns:
        The checkpoint directory.
    """
    new, old, final = run_dir / NEW_CHECKPOINT_DIR, run_dir / OLD_CHECKPOINT_DIR, run_dir / CHECKPOINT_DIR
    repair_checkpoint(run_dir)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    files = {MODEL_FILE: _torch_bytes(state),
             CONFIG_FILE: yaml.safe_dump(config_to_dict(config), sort_keys=False).encode()}
    if trainer_state is not None:
        files[TRAINER_FILE] = _torch_bytes({**trainer_state, "model": state})
    manifest = {**meta, "sha256": {name: sha256(data) for name, data in files.items()}}
    files[META_FILE] = json.dumps(manifest, indent=2).encode()  # written last: marks the directory complete
    new.mkdir(parents=True)
    try:
        for name, data in files.items():
            write_synced(new / name, data)
        fsync_dir(new)
    except BaseException:  # e.g. a full disk: the previous checkpoint stays, nothing half-written remains
        shutil.rmtree(new, ignore_errors=True)
        raise
    replacing = final.exists()
    if replacing:
        os.replace(final, old)
    os.replace(new, final)
    fsync_dir(run_dir)
    if replacing:
        shutil.rmtree(old)
    return final


def _complete(directory: Path) -> bool:
    try:
        verify_files(directory, read_meta(directory))
    except CheckpointError:
        return False
    return True


def repair_checkpoint(run_dir: Path) -> None:
    """Finish or drop a save that was interrupted (see :func:`save_checkpoint`); a no-op otherwise."""
    new, old, final = run_dir / NEW_CHECKPOINT_DIR, run_dir / OLD_CHECKPOINT_DIR, run_dir / CHECKPOINT_DIR
    if new.exists() and not final.exists() and _complete(new):
        os.replace(new, final)  # killed between the two renames: the new checkpoint was complete
    if old.exists() and not final.exists():
        os.replace(old, final)
    for leftover in (new, old):
        shutil.rmtree(leftover, ignore_errors=True)


def resolve_checkpoint(path: str | os.PathLike | None) -> Path:
    """A checkpoint directory from ``path``: a checkpoint directory itself, a training run (its
    ``checkpoint/``), a ``model.pt`` file (its folder), or a shipped pretrained name (e.g.
    ``"pendulum_ekvae"``). While a save is being renamed into place, the previous checkpoint."""
    if path is None:
        raise CheckpointError("no checkpoint given")
    candidate = Path(path)
    if candidate.name == MODEL_FILE:
        candidate = candidate.parent
    if not candidate.exists() and (PRETRAINED_DIR / str(path)).is_dir():
        candidate = PRETRAINED_DIR / str(path)
    if not candidate.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not candidate.is_dir():
        raise CheckpointError(f"checkpoint {path} is not a directory (expected config.yaml, model.pt, meta.json)")
    for inner in (candidate, candidate / CHECKPOINT_DIR, candidate / OLD_CHECKPOINT_DIR):
        if (inner / META_FILE).is_file():
            candidate = inner
            break
    else:
        if (candidate / RUN_CONFIG_FILE).exists():
            raise CheckpointError(f"training run {path} has no checkpoint yet (it stopped before its first save); "
                                  "continue it with `latentworld train --resume`")
    missing = [name for name in (CONFIG_FILE, MODEL_FILE, META_FILE) if not (candidate / name).exists()]
    if missing:
        raise CheckpointError(f"checkpoint {candidate} lacks {', '.join(missing)}")
    return candidate


def run_dir_of(checkpoint_dir: Path) -> Path | None:
    """The training run a checkpoint directory belongs to, or None (a shipped or copied checkpoint)."""
    run_dir = checkpoint_dir.parent
    inside = checkpoint_dir.name in (CHECKPOINT_DIR, OLD_CHECKPOINT_DIR) and (run_dir / RUN_CONFIG_FILE).is_file()
    return run_dir if inside else None


def read_meta(checkpoint_dir: Path) -> dict[str, Any]:
    path = checkpoint_dir / META_FILE
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt: {err}") from err
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    missing = [key for key in REQUIRED_META if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise CheckpointError(f"{path} is corrupt: it lacks {', '.join(missing)}")
    return meta


def verify_files(checkpoint_dir: Path, meta: dict[str, Any], names: tuple[str, ...] = (CONFIG_FILE, MODEL_FILE)
                 ) -> None:
    """Check ``names`` against the SHA-256 recorded in ``meta.json``.

    Raises:
        CheckpointError: a file is missing, has no recorded hash, or its content differs.
    """
    recorded = meta.get("sha256")
    if not isinstance(recorded, dict):
        raise CheckpointError(f"{checkpoint_dir / META_FILE} records no file hashes (written by an older "
                              "latentworld, or edited); retrain or re-save the checkpoint")
    for name in names:
        path = checkpoint_dir / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {checkpoint_dir} lacks {name}")
        if name not in recorded:
            raise CheckpointError(f"{checkpoint_dir / META_FILE} records no hash of {name}")
        if sha256(path.read_bytes()) != recorded[name]:
            raise CheckpointError(f"{path} is corrupt: its SHA-256 differs from the one in {META_FILE} "
                                  "(the file was changed or damaged after saving)")


def load_torch(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with one clear error for an unreadable file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated/garbled files
        raise CheckpointError(f"{path} is corrupt or not a torch state file: {err}") from err


def load_config_file(checkpoint_dir: Path) -> TrainConfig:
    """The checkpoint's resolved config (its hash checked by the caller)."""
    path = checkpoint_dir / CONFIG_FILE
    try:
        return config_from_dict(yaml.safe_load(path.read_text()), str(path))
    except (yaml.YAMLError, UnicodeDecodeError, ConfigError) as err:
        raise CheckpointError(f"{path} is corrupt: {err}") from err


def load_model(path: str | os.PathLike, expect_kind: str | None = None
               ) -> tuple[torch.nn.Module, TrainConfig, dict[str, Any]]:
    """Rebuild a model from a checkpoint, after checking its files against their recorded hashes.

    Args:
        path: anything :func:`resolve_checkpoint` accepts.
        expect_kind: if given, the model class the checkpoint must hold (e.g. ``"ekvae"``).

    Returns:
        The model in eval mode, its resolved config and its meta dictionary.
    """
    checkpoint_dir = resolve_checkpoint(path)
    meta = read_meta(checkpoint_dir)
    kind = meta.get("model_class")
    if kind not in MODELS:
        raise CheckpointError(f"{checkpoint_dir} holds an unknown model class {kind!r}; known: {sorted(MODELS)}")
    if expect_kind is not None and kind != expect_kind:
        raise CheckpointError(f"{checkpoint_dir} holds a {kind!r} model, expected {expect_kind!r}")
    verify_files(checkpoint_dir, meta)
    config = load_config_file(checkpoint_dir)
    if config.model.kind != kind:
        raise CheckpointError(f"{checkpoint_dir}: meta.json holds a {kind!r} model but config.yaml a "
                              f"{config.model.kind!r} one")
    try:
        model = MODELS[kind](config.model, tuple(meta["obs_shape"]), int(meta["dim_u"]))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{checkpoint_dir / META_FILE} is corrupt: {err!r}") from err
    try:
        model.load_state_dict(load_torch(checkpoint_dir / MODEL_FILE))
    except RuntimeError as err:
        raise CheckpointError(f"{checkpoint_dir / MODEL_FILE} does not match its config: {err}") from err
    return model.eval(), config, meta


def load_model_data(meta: dict[str, Any], path: str | os.PathLike, split: str) -> SequenceDataset:
    """One split of a data set, checked to come from the env and the action repeat that the checkpoint's
    model (its ``meta``) was trained on.

    Raises:
        DatasetError: the file is missing, corrupt, or from another env or time step.
    """
    return load_dataset(path, split, expect_env_id=meta["env_id"], expect_action_repeat=meta.get("action_repeat"))
