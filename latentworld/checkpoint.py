"""Checkpoint directories: ``config.yaml`` (resolved config), ``model.pt`` (a state_dict that loads
with ``weights_only=True``), ``meta.json`` (model class, dims, data set, env id, git commit,
training step) and, for resuming, ``trainer_state.pt`` (model, optimiser and schedule state in
one file, so a resume never mixes two steps).

Every file is written to a temporary name and renamed into place, so killing a save never
leaves a broken file behind.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import torch
import yaml

from latentworld.config import TrainConfig, config_from_dict, config_to_dict
from latentworld.fileio import atomic_write_bytes
from latentworld.models import MODELS

CONFIG_FILE, MODEL_FILE, META_FILE, TRAINER_FILE = "config.yaml", "model.pt", "meta.json", "trainer_state.pt"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"


class CheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete, corrupt or of another model kind."""


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def git_commit() -> str | None:
    """The current commit of the source tree, if it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def save_checkpoint(run_dir: Path, model: torch.nn.Module, config: TrainConfig, meta: dict[str, Any],
                    trainer_state: dict[str, Any] | None = None) -> None:
    """Write (or refresh) the checkpoint files of ``run_dir``. ``trainer_state`` first, meta last."""
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    if trainer_state is not None:
        atomic_write_bytes(run_dir / TRAINER_FILE, _torch_bytes({**trainer_state, "model": state}))
    atomic_write_bytes(run_dir / MODEL_FILE, _torch_bytes(state))
    atomic_write_bytes(run_dir / CONFIG_FILE, yaml.safe_dump(config_to_dict(config), sort_keys=False).encode())
    atomic_write_bytes(run_dir / META_FILE, json.dumps(meta, indent=2).encode())


def resolve_checkpoint(path: str | os.PathLike | None) -> Path:
    """A checkpoint directory: ``path`` itself, ``path``'s folder if a ``model.pt`` is named, or a
    shipped pretrained checkpoint by name (e.g. ``"pendulum_ekvae"``)."""
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
    missing = [name for name in (CONFIG_FILE, MODEL_FILE, META_FILE) if not (candidate / name).exists()]
    if missing:
        raise CheckpointError(f"checkpoint {candidate} lacks {missing}")
    return candidate


def read_meta(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / META_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{run_dir / META_FILE} is corrupt: {err}") from err


def load_torch(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with one clear error for an unreadable file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated/garbled files
        raise CheckpointError(f"{path} is corrupt or not a torch state file: {err}") from err


def load_model(path: str | os.PathLike, expect_kind: str | None = None
               ) -> tuple[torch.nn.Module, TrainConfig, dict[str, Any]]:
    """Rebuild a model from a checkpoint directory.

    Args:
        path: checkpoint directory (or its ``model.pt``, or a shipped pretrained name).
        expect_kind: if given, the model class the checkpoint must hold (e.g. ``"ekvae"``).

    Returns:
        The model in eval mode, its resolved config and its meta dictionary.
    """
    run_dir = resolve_checkpoint(path)
    meta = read_meta(run_dir)
    kind = meta.get("model_class")
    if kind not in MODELS:
        raise CheckpointError(f"{run_dir} holds an unknown model class {kind!r}; known: {sorted(MODELS)}")
    if expect_kind is not None and kind != expect_kind:
        raise CheckpointError(f"{run_dir} holds a {kind!r} model, expected {expect_kind!r}")
    try:
        config = config_from_dict(yaml.safe_load((run_dir / CONFIG_FILE).read_text()))
    except (yaml.YAMLError, ValueError, TypeError) as err:
        raise CheckpointError(f"{run_dir / CONFIG_FILE} is corrupt: {err}") from err
    model = MODELS[kind](config.model, tuple(meta["obs_shape"]), int(meta["dim_u"]))
    try:
        model.load_state_dict(load_torch(run_dir / MODEL_FILE))
    except RuntimeError as err:
        raise CheckpointError(f"{run_dir / MODEL_FILE} does not match its config: {err}") from err
    return model.eval(), config, meta
