"""A saved policy is a directory, like a model checkpoint:

- ``meta.json``: the method (``jomega``, ``ppo``, ``sac`` or ``mpc``), the model checkpoint it was
  trained on (as named, and its absolute path) with the SHA-256 of its ``model.pt``, the task,
  the latent goal, the settings needed to rebuild the network, the training report;
- ``policy.pt``: the network's state_dict (loads with ``weights_only=True``; the observation
  scaling is part of it). A planner (``mpc``) has no weights: its settings are in ``meta.json``.

The directory is written under a temporary name and renamed into place when complete, so an
interrupted save leaves no half-written policy; an existing directory is never overwritten.
Evaluating a saved policy needs no training: :func:`load_policy` rebuilds a :class:`Controller`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from agents.controllers import Controller, NetworkController
from agents.mpc import CEMPlanner, MPCConfig
from agents.policy import MLPPolicy
from agents.problem import LatentProblem, make_problem
from agents.tasks import make_task
from latentworld.common.errors import LatentworldError
from latentworld.experiment.checkpoint import MODEL_FILE, CheckpointError, resolve_checkpoint

META_FILE, WEIGHTS_FILE = "meta.json", "policy.pt"
METHODS = ("jomega", "ppo", "sac", "mpc")


class PolicyError(LatentworldError):
    """A policy directory is missing, incomplete, corrupt, or belongs to another model or task."""


def model_digest(model: str) -> str:
    """SHA-256 of a checkpoint's ``model.pt`` (identifies the exact weights a policy was trained on)."""
    return hashlib.sha256((resolve_checkpoint(model) / MODEL_FILE).read_bytes()).hexdigest()


def save_policy(out_dir: str | os.PathLike, method: str, problem: LatentProblem, settings: dict[str, Any],
                report: dict[str, Any], state_dict: dict[str, torch.Tensor] | None = None,
                log_dir: Path | None = None) -> Path:
    """Write a policy directory at ``out_dir`` (which must not exist yet).

    Args:
        method: one of :data:`METHODS`.
        problem: the problem it was trained on (model, task, goal).
        settings: what rebuilds the controller (the J(ω) network width, the planner's config; SB3 actors
            use the default architecture and need none).
        report: the training report (validation returns, times).
        state_dict: the network's weights (``None`` for a planner).
        log_dir: a TensorBoard folder of the training run, moved into the policy as ``tb/``.
    """
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"method": method, **problem_meta(problem), "settings": settings, "report": report}
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        if state_dict is not None:
            torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, tmp / WEIGHTS_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        if log_dir is not None and log_dir.is_dir():
            shutil.move(str(log_dir), tmp / "tb")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is private (0700); a policy is not
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def problem_meta(problem: LatentProblem) -> dict[str, Any]:
    """Plain-value description of the problem (model, digest, task, goal) for ``meta.json``."""
    return {"model": problem.model_ref, "model_path": str(resolve_checkpoint(problem.model_ref).resolve()),
            "model_sha256": model_digest(problem.model_ref),
            "task": problem.task.name, "goal_velocity": problem.task.goal_velocity, "reward": problem.task.reward,
            "goal": problem.goal.tolist(), "action_repeat": problem.action_repeat,
            "noise_scale": problem.dynamics.noise_scale}


REQUIRED_META = {"method": str, "model": str, "model_sha256": str, "task": str, "goal": list, "settings": dict}


def read_policy_meta(policy_dir: str | os.PathLike) -> dict[str, Any]:
    """The checked ``meta.json`` of a policy directory, or one clear :class:`PolicyError`."""
    path = Path(policy_dir)
    if not path.is_dir():
        raise PolicyError(f"policy directory {path} does not exist")
    if not (path / META_FILE).is_file():
        raise PolicyError(f"{path} is not a saved policy: it has no {META_FILE}")
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PolicyError(f"{path / META_FILE} is corrupt: {err}") from err
    if not isinstance(meta, dict):
        raise PolicyError(f"{path / META_FILE} is not a JSON object")
    wrong = [key for key, kind in REQUIRED_META.items() if not isinstance(meta.get(key), kind)]
    if wrong:
        raise PolicyError(f"{path / META_FILE} lacks or has malformed fields {wrong}; it is not a saved policy")
    if meta["method"] not in METHODS:
        raise PolicyError(f"{path / META_FILE} names an unknown method {meta['method']!r}; known: {METHODS}")
    return meta


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state_dict in a policy directory (``weights_only=True``), or one clear :class:`PolicyError`."""
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise PolicyError(f"{path} lacks {WEIGHTS_FILE}")
    try:
        return torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated or garbled files
        raise PolicyError(f"{weights} is corrupt or not a torch state file: {err}") from err


def _own_model(meta: dict[str, Any]) -> str:
    """The policy's model as it was named (a shipped name, or a path relative to where it was trained) if
    that holds its weights from here, else its absolute path (when evaluating from another directory)."""
    try:
        if model_digest(meta["model"]) == meta["model_sha256"]:
            return meta["model"]
    except CheckpointError:
        pass
    return meta.get("model_path", meta["model"])


def load_policy(policy_dir: str | os.PathLike, model: str | None = None
                ) -> tuple[Controller, LatentProblem, dict[str, Any]]:
    """Rebuild a saved policy as a controller.

    Args:
        policy_dir: the policy directory.
        model: the checkpoint to act with (default: the one in ``meta.json``); it must hold the same
            weights the policy was trained on.

    Returns:
        The controller, its problem (model, task, goal) and the meta dictionary.
    """
    path = Path(policy_dir)
    meta = read_policy_meta(path)
    model_ref = model or _own_model(meta)
    if model_digest(model_ref) != meta["model_sha256"]:
        raise PolicyError(f"{path} was trained on model {meta['model']!r}; {model_ref!r} holds other weights")
    goal = torch.tensor(meta["goal"], dtype=torch.float32)
    problem = make_problem(model_ref, make_task(meta["task"], meta.get("goal_velocity")), goal=goal,
                           with_starts=False)
    settings = meta["settings"]
    if meta["method"] == "mpc":
        try:
            config = MPCConfig(**settings)
        except TypeError as err:
            raise PolicyError(f"{path / META_FILE}: planner settings do not fit: {err}") from err
        return CEMPlanner(problem, config), problem, meta
    state = load_weights(path)
    if meta["method"] == "jomega":
        dim_obs = problem.observation_dim  # the scaling buffers are overwritten by the saved weights
        network = MLPPolicy(torch.zeros(dim_obs), torch.ones(dim_obs), problem.action_low, problem.action_high,
                            settings["hidden"])
    else:
        from agents.sb3 import sb3_actor  # stable-baselines3 is imported only where it is used

        network = sb3_actor(meta["method"], problem)
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        raise PolicyError(f"{path / WEIGHTS_FILE} does not match its meta.json: {err}") from err
    return NetworkController(network), problem, meta
