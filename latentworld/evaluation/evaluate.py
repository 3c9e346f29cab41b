"""Evaluate a checkpoint directory: the metrics table beside the paper's, and the figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from latentworld.common.device import select_device
from latentworld.common.errors import RunDirError
from latentworld.common.fileio import atomic_write_bytes, check_output_dir
from latentworld.evaluation.metrics import PAPER_TABLES, evaluate_model, smoothed_means
from latentworld.evaluation.plots import (
    plot_angle_predictions,
    plot_latent_space,
    plot_predictions,
    plot_training_curves,
)
from latentworld.experiment.checkpoint import load_model, load_model_data, resolve_checkpoint, run_dir_of
from latentworld.experiment.config import TrainConfig
from latentworld.experiment.history import read_history
from latentworld.models import MODELS

EVAL_FILE = "eval.json"
IDENTIFIED_R2 = 0.95  # every state variable recovered linearly from z at least this well
EVAL_OUTPUTS = (EVAL_FILE, "latent_space.png", "predictions.png", "training_curves.png")
DEFAULT_EVAL_ROOT = Path("runs") / "evaluate"


def default_output_dir(checkpoint_dir: Path) -> Path:
    """``RUN/eval`` for a training run's checkpoint, else ``runs/evaluate/NAME`` under the working
    directory (never beside a shipped checkpoint inside the package)."""
    run_dir = run_dir_of(checkpoint_dir)
    return run_dir / "eval" if run_dir is not None else DEFAULT_EVAL_ROOT / checkpoint_dir.name


def model_label(config: TrainConfig) -> str:
    """Row name in the paper's style, e.g. ``VHP-EKVAE (CO)``."""
    schedule = "CO" if config.schedule.kind == "rewo" else "annealing"
    return f"{MODELS[config.model.kind].label(config.model)} ({schedule})"


def identification(metrics: dict[str, float]) -> str:
    """One line: did the model identify the system (every OLS R² ≥ ``IDENTIFIED_R2``)? If not, which
    variables fall short, whether the nonlinear probe finds them in z all the same, and what to try."""
    linear = {key[3:]: value for key, value in metrics.items()
              if key.startswith("r2_") and not key.startswith(("r2_knn_", "r2_raw_"))}
    short = {name: value for name, value in linear.items() if value < IDENTIFIED_R2}
    if not short:
        return f"identified: every state variable's OLS R² >= {IDENTIFIED_R2} (lowest {min(linear.values()):.3f})"
    parts = []
    for name, value in short.items():
        probe = metrics.get(f"r2_knn_{name}")
        where = "" if probe is None else (f", though a kNN probe finds it in z (R² {probe:.3f}): entangled" if probe >= IDENTIFIED_R2
                                          else f", and a kNN probe gives {probe:.3f}: missing from z")
        parts.append(f"{name} R² {value:.3f}{where}")
    return (f"NOT identified (OLS R² < {IDENTIFIED_R2}): " + "; ".join(parts)
            + ". Train longer, or with another seed.")


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text table of metric rows (missing entries shown as '-')."""
    seen = list(dict.fromkeys(key for row in rows.values() for key in row))  # first-seen order
    groups = ("elbo", "r2", "mse")
    columns = sorted((k for k in seen if k.split("_")[0] in groups), key=lambda k: groups.index(k.split("_")[0]))
    width = max(len(name) for name in rows) + 2
    widths = [max(12, len(c) + 2) for c in columns]
    lines = ["model".ljust(width) + "".join(c.rjust(w) for c, w in zip(columns, widths))]
    for name, row in rows.items():
        cells = []
        for c, w in zip(columns, widths):
            value = row.get(c)
            text = "-" if value is None else (f"{value:.3e}" if c.startswith("mse") else f"{value:.4g}")
            cells.append(text.rjust(w))
        lines.append(name.ljust(width) + "".join(cells))
    return "\n".join(lines)


def evaluate_checkpoint(path: str | Path, data: str | None = None, out_dir: str | Path | None = None,
                        seed: int = 0) -> dict[str, Any]:
    """Compute the metrics of a checkpoint on its data set's test split and write figures.

    Args:
        path: a checkpoint or training run directory, or a shipped checkpoint's name.
        data: data set to evaluate on (default: the one it was trained on).
        out_dir: where ``eval.json`` and the PNGs go (default: :func:`default_output_dir`); it must
            be new, empty or an earlier evaluation output.
        seed: seed of the posterior samples used by the metrics.

    Returns:
        ``{"label", "metrics", "table", "figures", "out"}``.
    """
    checkpoint_dir = resolve_checkpoint(path)
    out = check_output_dir(Path(out_dir) if out_dir else default_output_dir(checkpoint_dir), EVAL_OUTPUTS,
                           "--out")
    model, config, meta = load_model(checkpoint_dir)
    device = select_device(config.device)
    model.to(device)
    data_path = data or config.data
    train = load_model_data(meta, data_path, "train")
    test = load_model_data(meta, data_path, "test")
    for split in (train, test):
        split.check_fits(model.obs_shape, model.dim_u, data_path, f"the model of {checkpoint_dir}")
    metrics = evaluate_model(model, train, test, seed=seed)
    label = model_label(config)
    # The paper's rows of the same data and model family (its name in a row: "EKVAE", "DKS", "DVBS").
    family = config.model.kind.upper()
    paper = {name: row for name, row in PAPER_TABLES.get(meta.get("dataset_name"), {}).items()
             if name.split(" ")[0].split("-")[-1] == family}
    table = format_table({f"ours: {label}": metrics, **{f"paper: {k}": v for k, v in paper.items()}})

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    figures = [plot_latent_space(smoothed_means(model, test), test, out / "latent_space.png", model.position_dims)]
    with torch.no_grad():
        shown = slice(0, 4)
        frames = test.observations(shown)
        predicted = {mode: model.predict(frames.to(device), test.actions[shown].to(device), mode=mode).cpu()
                     for mode in ("smoothed", "filtered")}
    plot = plot_predictions if test.is_image else plot_angle_predictions
    figures.append(plot(frames, predicted, out / "predictions.png"))
    run_dir = run_dir_of(checkpoint_dir)
    try:
        history = read_history(run_dir) if run_dir is not None else []
    except RunDirError as err:
        print(f"[evaluate] no training curves: {err}")
        history = []
    if history:
        figures.append(plot_training_curves(history, out / "training_curves.png"))
    result = {"label": label, "checkpoint": str(checkpoint_dir), "data": data_path, "metrics": metrics,
              "identification": identification(metrics),
              "train_seconds": meta.get("train_seconds"), "step": meta.get("step")}
    atomic_write_bytes(out / EVAL_FILE, json.dumps(result, indent=2).encode())
    return {**result, "table": table, "figures": [str(f) for f in figures], "out": str(out)}
