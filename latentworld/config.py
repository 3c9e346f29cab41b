"""Typed experiment configuration with YAML presets (``configs/*.yaml``).

A preset may name another with ``base: other.yaml`` (resolved relative to the preset) and
override any field; command-line ``--set section.field=value`` overrides come last. The
resolved configuration is written into every run directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class ModelConfig:
    """The EKVAE's sizes and options."""

    dim_z: int = 3
    """Size of the latent state z (position dims first, then velocity dims)."""
    dim_a: int = 2
    """Size of the auxiliary variable a = H z + noise (the position part of z)."""
    num_bases: int = 16
    """M, the number of base matrices F, B, Q mixed by softmax(g(z, u))."""
    mixer_hidden: int = 64
    """Width of the MLP g(z, u) that predicts the mixing weights."""
    obs_kind: str = "image"
    """Observation networks: "image" (MLP, small grayscale), "image_conv" (64×64 RGB) or "vector"."""
    hidden: int = 256
    """Width of the encoder/decoder hidden layers."""
    prior: str = "vhp"
    """Initial-state prior: "vhp" (variational hierarchical prior) or "normal" (ablation)."""
    learn_h: bool = False
    """Learn H instead of the rectangular identity (disables the position/velocity split)."""
    inference: str = "smoother"
    """Recognition model: "smoother" (paper §4) or "filter" (App. A.6)."""
    init_process_logvar: float = -5.0
    """Initial log-variance of the process noise Q."""
    init_obs_logvar: float = -4.0
    """Initial log-variance of the pseudo-observation noise R."""


@dataclass
class ScheduleConfig:
    """Weighting of distortion and rate: REWO (constrained optimisation) or KL annealing."""

    kind: str = "rewo"
    """"rewo" (paper Alg. 1) or "annealing" (beta from beta0 to 1)."""
    d0: float | None = None
    """Distortion bound per time step and observed dimension; None = calibrate (see rewo.py)."""
    d0_margin: float = 0.1
    """Margin of the D0 heuristic: D0 = D_vae + margin × |D_vae| (D_vae: distortion after calibration)."""
    calibration_steps: int = 1500
    """Encoder/decoder-only iterations before D0 is calibrated (when d0 is None)."""
    alpha: float = 0.99
    """EMA factor of the distortion."""
    nu: float = 1.0
    """Step size of the lambda update."""
    tau1: float = 1.0
    """Slope of lambda's decay once the constraint holds."""
    tau2: float = 1.0
    """Slope of lambda's growth while the constraint is violated."""
    lambda_max: float = 1e4
    """Lambda is kept in [1/lambda_max, lambda_max] (a numerical guard, see rewo.py)."""
    beta0: float = 0.01
    """Annealing: starting rate weight."""
    anneal_steps: int = 3000
    """Annealing: iterations until beta reaches 1."""


@dataclass
class TrainConfig:
    """One training run: data, model, schedule and optimiser."""

    data: str = "data/pendulum.npz"
    """Path of the data set (.npz written by `python -m envs.generate`)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    steps: int = 8000
    """Optimiser iterations."""
    batch_size: int = 64
    """Sequences per batch."""
    lr: float = 1e-3
    """Adam learning rate."""
    lr_final_fraction: float = 0.1
    """The learning rate decays (cosine) to this fraction of lr by the last step."""
    grad_clip: float = 100.0
    """Gradient-norm clip."""
    seed: int = 0
    """Seed of the model initialisation and the batch order."""
    eval_every: int = 500
    """Iterations between validation R² / checkpoint."""
    threads: int = 2
    """torch CPU threads."""


def _from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        sub = {"model": ModelConfig, "schedule": ScheduleConfig}.get(name) if cls is TrainConfig else None
        kwargs[name] = _from_dict(sub, value or {}, f"{where}.{name}") if sub else value
    return cls(**kwargs)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(
            merged.get(key), dict) else value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise TypeError(f"{path}: a config must be a YAML mapping")
    base = values.pop("base", None)
    return _merge(_read_yaml(path.parent / base), values) if base else values


def parse_override(text: str) -> dict[str, Any]:
    """``"model.dim_z=5"`` → ``{"model": {"dim_z": 5}}`` (the value parsed as YAML)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like section.field=value")
    key, value = text.split("=", 1)
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = yaml.safe_load(value)
    return nested


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML preset (or defaults when ``path`` is None) and apply ``key=value`` overrides."""
    values = _read_yaml(Path(path)) if path else {}
    for text in overrides:
        values = _merge(values, parse_override(text))
    return _from_dict(TrainConfig, values, str(path or "config"))


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    return _from_dict(TrainConfig, values, "config")
