"""Train a policy of any method on a latent problem and save it: one entry point for the CLI and benchmarks."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import torch

from agents.problem import LatentProblem
from agents.saved_policy import (
    METHODS,
    PolicyError,
    load_weights,
    model_digest,
    read_policy_meta,
    save_policy,
)
from agents.settings import apply_overrides
from agents.tasks import Task
from latentworld.common.errors import ConfigError


def initial_weights(policy_dir: str | Path, problem: LatentProblem, hidden: int) -> dict[str, torch.Tensor]:
    """The weights of a saved J(ω) policy to start from; it must belong to the same model and width."""
    meta = read_policy_meta(policy_dir)
    if meta["method"] != "jomega":
        raise PolicyError(f"{policy_dir} is a {meta['method']} policy; --init needs a J(ω) policy")
    if meta["model_sha256"] != model_digest(problem.model_ref):
        raise PolicyError(f"{policy_dir} was trained on another model than {problem.model_ref!r}")
    if meta["settings"]["hidden"] != hidden:
        raise PolicyError(f"{policy_dir} has hidden width {meta['settings']['hidden']}, this run {hidden}")
    return load_weights(Path(policy_dir))


def check_method_fits_task(method: str, task: Task) -> None:
    """PPO and SAC train here on the latent env of one fixed goal; a goal-conditioned task needs J(ω) or MPC."""
    if task.goal_conditioned and method in ("ppo", "sac"):
        raise ConfigError(f"{method} trains on one fixed goal here; the {task.name} task (a new goal every "
                          "episode) trains with jomega or plans with mpc")


def method_settings(method: str, overrides: list[str], seed: int) -> Any:
    """The checked settings of ``method`` with ``KEY=VALUE`` overrides (cheap: call it before any set-up)."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose from {METHODS}")
    if method == "jomega":
        from agents.jomega import JOmegaConfig as settings_class
    elif method == "mpc":
        from agents.mpc import MPCConfig as settings_class
    else:
        from agents.sb3 import SB3Config as settings_class
    return apply_overrides(settings_class, overrides, seed=seed)


def train_policy(method: str, problem: LatentProblem, out: str | Path, overrides: list[str] | None = None,
                 seed: int = 0, progress: bool = True, init: str | Path | None = None) -> dict[str, Any]:
    """Train ``method`` on ``problem`` (``overrides``: ``KEY=VALUE`` settings of the method) and save the
    policy directory ``out`` (which must not exist), with its TensorBoard log in ``out/tb``.
    ``init``: a saved J(ω) policy of the same model to start from (J(ω) only), e.g. a swing-up policy
    to fine-tune for another goal.

    Returns:
        The training report (best validation return, history, seconds, settings).
    """
    out = Path(out)
    config = method_settings(method, overrides or [], seed)
    check_method_fits_task(method, problem.task)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose another --out or remove it")
    if init is not None and method != "jomega":
        raise ValueError(f"--init starts J(ω) from a saved J(ω) policy; {method} cannot use it")
    log_dir = out.parent / f".{out.name}.tb"  # moved into the policy directory when it is saved
    shutil.rmtree(log_dir, ignore_errors=True)  # left by an interrupted run
    try:
        return _train_and_save(method, problem, out, config, progress, init, log_dir)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


def _train_and_save(method: str, problem: LatentProblem, out: Path, config: Any, progress: bool,
                    init: str | Path | None, log_dir: Path) -> dict[str, Any]:
    if method == "jomega":
        from agents.jomega import train_jomega

        weights = None if init is None else initial_weights(init, problem, config.hidden)
        policy, report = train_jomega(problem, config, log_dir, progress, weights)
        report["init"] = None if init is None else str(init)
        settings, state = {"hidden": config.hidden}, policy.state_dict()
    elif method == "mpc":
        settings, state, report = dataclasses.asdict(config), None, {"train_seconds": 0.0}
    else:
        from agents.sb3 import train_sb3

        actor, report = train_sb3(problem, method, config, log_dir, progress)
        settings, state = {}, actor.state_dict()
    save_policy(out, method, problem, settings, report, state, log_dir)
    return report
