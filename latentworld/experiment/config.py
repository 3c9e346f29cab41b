"""Typed experiment configuration with YAML presets (``configs/*.yaml``).

A preset may name another with ``base: other.yaml`` (resolved relative to the preset) and
override any field; command-line ``--set section.field=value`` overrides come last. The
resolved configuration is written into every run directory. ``model.kind`` names the model
(default ``ekvae``); the rest of ``model`` are that model's settings (its ``config_class``).

Every value is type- and range-checked when a config is built (see ``latentworld.common.settings``):
a mistake raises one :class:`~latentworld.common.errors.ConfigError` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from latentworld.common.errors import ConfigError
from latentworld.common.settings import MAX_SEED, check_settings, from_mapping, setting

DEFAULT_MODEL = "ekvae"


@dataclass
class ScheduleConfig:
    """Weighting of distortion and rate: REWO (constrained optimisation) or KL annealing."""

    kind: str = setting("rewo", choices=("rewo", "annealing"))
    """"rewo" (paper Alg. 1) or "annealing" (beta from beta0 to 1)."""
    d0: float | None = setting(None)
    """Distortion bound per time step and observed dimension; None = calibrate (see rewo.py)."""
    d0_margin: float = setting(0.1, low=0)
    """Margin of the D0 heuristic: D0 = D_vae + margin × |D_vae| (D_vae: distortion after calibration)."""
    calibration_steps: int = setting(1500, low=0)
    """Encoder/decoder-only iterations before D0 is calibrated (when d0 is None)."""
    alpha: float = setting(0.99, low=0, high=1, high_open=True)
    """EMA factor of the distortion."""
    nu: float = setting(1.0, low=0, low_open=True)
    """Step size of the lambda update."""
    tau1: float = setting(1.0, low=0, low_open=True)
    """Slope of lambda's decay once the constraint holds."""
    tau2: float = setting(1.0, low=0, low_open=True)
    """Slope of lambda's growth while the constraint is violated."""
    lambda_max: float = setting(1e4, low=1)
    """Lambda is kept in [1/lambda_max, lambda_max] (a numerical guard, see rewo.py)."""
    beta0: float = setting(0.01, low=0, high=1)
    """Annealing: starting rate weight."""
    anneal_steps: int = setting(3000, low=1)
    """Annealing: iterations until beta reaches 1."""

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass
class TrainConfig:
    """One training run: data, model, schedule and optimiser."""

    data: str = setting("data/pendulum.npz")
    """Path of the data set (.npz written by `python -m envs.generate`)."""
    model: Any = field(default_factory=lambda: model_config_class(DEFAULT_MODEL)())
    """The model's settings: the ``config_class`` of the model that ``model.kind`` names."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    steps: int = setting(8000, low=1)
    """Optimiser iterations."""
    batch_size: int = setting(64, low=1)
    """Sequences per batch."""
    lr: float = setting(1e-3, low=0, low_open=True)
    """Adam learning rate."""
    lr_final_fraction: float = setting(0.1, low=0, high=1)
    """The learning rate decays (cosine) to this fraction of lr by the last step."""
    grad_clip: float = setting(100.0, low=0, low_open=True)
    """Gradient-norm clip."""
    seed: int = setting(0, low=0, high=MAX_SEED)
    """Seed of the model initialisation and the batch order."""
    eval_every: int = setting(500, low=1)
    """Iterations between validation R² / checkpoint."""
    threads: int = setting(2, low=1)
    """torch CPU threads."""
    precision: str = setting("float32", choices=("float32", "bfloat16", "auto"))
    """Matrix products of the observation networks (encoder, decoder) in training: "bfloat16" (autocast)
    is faster on CPUs with AVX-512 BF16 or AMX and on GPUs, and several times slower where it is emulated
    (other CPUs); "auto" takes bfloat16 where it is native, else float32. The dynamics and the Kalman core
    stay float32."""
    device: str = setting("auto", choices=("auto", "cpu", "cuda"))
    """Where training and evaluation run: "auto" (CUDA when torch sees a GPU, else the CPU), "cpu" or "cuda".
    Checkpoints are saved on the CPU and load anywhere; the latent envs and agents run on the CPU."""

    def __post_init__(self) -> None:
        check_settings(self)
        s = self.schedule
        if s.kind == "rewo" and s.d0 is None and s.calibration_steps >= self.steps:
            raise ConfigError(f"schedule.calibration_steps ({s.calibration_steps}) must be below steps "
                              f"({self.steps}): REWO would never leave its initial phase and the dynamics "
                              "would stay untrained; lower schedule.calibration_steps or set schedule.d0")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(
            merged.get(key), dict) else value
    return merged


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path.resolve() in chain:
        raise ConfigError(f"config {path}: its `base:` chain loops back to itself")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping of settings")
    base = values.pop("base", None)
    return _merge(_read_yaml(path.parent / str(base), (*chain, path.resolve())), values) if base else values


def parse_override(text: str) -> dict[str, Any]:
    """``"model.dim_z=5"`` → ``{"model": {"dim_z": 5}}`` (the value parsed as YAML)."""
    key, sep, value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"--set {text!r}: expected section.field=value, e.g. model.dim_z=5")
    nested: dict[str, Any] = {}
    cursor = nested
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    try:
        cursor[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML") from None
    return nested


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML preset (or defaults when ``path`` is None) and apply ``key=value`` overrides."""
    values = _read_yaml(Path(path)) if path else {}
    for text in overrides:
        values = _merge(values, parse_override(text))
    source = f"{path or 'default config'}{' with --set' if overrides else ''}"
    return config_from_dict(values, source)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def model_config_class(kind: Any) -> type:
    """The settings class of the registered model ``kind``."""
    from latentworld.models import MODELS  # here, not at the top: the models import the settings

    if kind not in MODELS:
        raise ConfigError(f"model.kind: must be one of {', '.join(map(repr, sorted(MODELS)))}, got {kind!r}")
    return MODELS[kind].config_class


def config_from_dict(values: Any, source: str = "config") -> TrainConfig:
    """A checked :class:`TrainConfig` from nested dictionaries; ``source`` names them in errors."""
    model = values.get("model") if isinstance(values, dict) else None
    kind = model.get("kind", DEFAULT_MODEL) if isinstance(model, dict) else DEFAULT_MODEL
    try:
        model_class = model_config_class(kind)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return from_mapping(TrainConfig, values, source, {"model": model_class, "schedule": ScheduleConfig})
