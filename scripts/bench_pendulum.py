"""Benchmark: VHP-EKVAE (CO) against EKVAE (annealing, standard-normal prior) on the pendulum,
same budget, side by side; R² against wall time; optionally ship the CO model as the pretrained
checkpoint.

    python scripts/bench_pendulum.py [--steps 8000] [--ship]

Writes ``docs/results/pendulum_ekvae.{json,md}``, ``docs/results/pendulum_r2_vs_time.png`` and
the CO run's figures (``docs/results/pendulum_*.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from latentworld.evaluation.evaluate import EVAL_FILE, default_output_dir, evaluate_checkpoint, format_table
from latentworld.evaluation.metrics import PAPER_TABLE_1A as PAPER_ALL_MODELS
from latentworld.experiment.checkpoint import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    META_FILE,
    MODEL_FILE,
    PRETRAINED_DIR,
)
from latentworld.experiment.config import load_config
from latentworld.experiment.history import read_history
from latentworld.latent_envs.latent_env import DEFAULT_GOAL_FILES
from latentworld.training.trainer import Trainer

RUNS = {"VHP-EKVAE (CO)": "configs/pendulum_ekvae.yaml", "EKVAE (annealing)": "configs/pendulum_ekvae_annealing.yaml"}
TARGET = 0.99
PAPER_TABLE_1A = {name: row for name, row in PAPER_ALL_MODELS.items() if "EKVAE" in name}  # this bench: the EKVAE


def target_row(history: list[dict[str, float]]) -> dict[str, float] | None:
    """The first logged row at which every validation R² has reached the target, or None."""
    for row in history:
        scores = [v for k, v in row.items() if k.startswith("eval/r2_")]
        if scores and min(scores) >= TARGET:
            return row
    return None


def time_to_target(history: list[dict[str, float]]) -> float | None:
    """Training seconds until both validation R² first reach the target."""
    row = target_row(history)
    return None if row is None else row["wall"]


def plot_r2_vs_time(histories: dict[str, list[dict[str, float]]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for (label, history), color in zip(histories.items(), ("C0", "C3")):
        keys = sorted({k for row in history for k in row if k.startswith("eval/r2_")})
        for key in keys:
            rows = [r for r in history if key in r]
            style = "--" if "velocity" in key else "-"
            ax.plot([r["wall"] / 60 for r in rows], [r[key] for r in rows], style, color=color,
                    label=f"{label}: {key[8:]}")
    save_r2_figure(fig, ax, path, time_mark=15, xlabel="training wall time (min, 2 CPU cores)",
                   ylabel="validation R² (OLS, test split)")


def save_r2_figure(fig: plt.Figure, ax: plt.Axes, path: Path, time_mark: float, xlabel: str, ylabel: str) -> None:
    """Finish an R²-against-time plot (the target as a line, a dotted mark at ``time_mark``) and save it."""
    ax.axhline(TARGET, color="gray", lw=0.8)
    ax.axvline(time_mark, color="gray", lw=0.8, ls=":")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def ship(run_dir: Path, destination: Path, command: str) -> None:
    """Copy the checkpoint (config, weights, meta with the producing command, eval) and render its
    default goal image."""
    from envs import make_env

    destination.mkdir(parents=True, exist_ok=True)
    checkpoint = run_dir / CHECKPOINT_DIR
    for name in (CONFIG_FILE, MODEL_FILE):
        shutil.copy2(checkpoint / name, destination / name)
    shutil.copy2(default_output_dir(checkpoint) / EVAL_FILE, destination / EVAL_FILE)
    meta = json.loads((checkpoint / META_FILE).read_text())  # its file hashes stay valid
    meta["produced_by"] = command
    (destination / META_FILE).write_text(json.dumps(meta, indent=2))
    env = make_env("pendulum")
    frame, _ = env.reset(seed=0, options={"state": [0.0, 0.0]})  # the pole upright: the swing-up goal
    env.close()
    import imageio.v3 as iio

    iio.imwrite(destination / DEFAULT_GOAL_FILES[0], frame[..., 0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--runs-dir", default="runs/bench_pendulum")
    parser.add_argument("--out-dir", default="docs/results")
    parser.add_argument("--ship", action="store_true", help="copy the CO run into latentworld/pretrained/")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    if not Path("data/pendulum.npz").exists():
        subprocess.run([sys.executable, "-m", "envs.generate", "pendulum"], check=True)
    out, runs = Path(args.out_dir), Path(args.runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    results, histories = {}, {}
    for label, preset in RUNS.items():
        run_dir = runs / Path(preset).stem
        config = load_config(preset, [f"steps={args.steps}", "threads=2"])
        trainer = Trainer(config, run_dir, resume=True)
        print(f"[bench] {label}: {preset} -> {run_dir}")
        trainer.fit()
        evaluation = evaluate_checkpoint(run_dir)
        histories[label] = read_history(run_dir)
        results[label] = {**evaluation["metrics"], "train_seconds": trainer.elapsed,
                          "seconds_to_r2_0.99": time_to_target(histories[label]), "run_dir": str(run_dir)}
    co_dir = runs / Path(RUNS["VHP-EKVAE (CO)"]).stem
    for name in ("latent_space.png", "predictions.png", "training_curves.png"):
        shutil.copy2(default_output_dir(co_dir / CHECKPOINT_DIR) / name, out / f"pendulum_{name}")
    plot_r2_vs_time(histories, out / "pendulum_r2_vs_time.png")
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    command = f"python scripts/bench_pendulum.py --steps {args.steps}" + (" --ship" if args.ship else "")
    (out / "pendulum_ekvae.json").write_text(json.dumps(
        {"command": command, "machine": machine, "seed": 0, "steps": args.steps, "results": results,
         "paper": PAPER_TABLE_1A}, indent=2))
    rows = {f"ours: {k}": v for k, v in results.items()} | {f"paper: {k}": v for k, v in PAPER_TABLE_1A.items()}
    metric_rows = {k: {m: v[m] for m in v if m.startswith(("elbo", "r2", "mse"))} for k, v in rows.items()}
    timing = "\n".join(
        f"- {label}: {r['train_seconds'] / 60:.1f} min of training for {args.steps} steps; both R² >= {TARGET} after "
        + (f"{r['seconds_to_r2_0.99'] / 60:.1f} min" if r["seconds_to_r2_0.99"] is not None else "never")
        for label, r in results.items())
    (out / "pendulum_ekvae.md").write_text(
        f"# Pendulum (16×16 images): VHP-EKVAE (CO) vs EKVAE (annealing)\n\n`{command}` — seed 0, {machine}.\n\n"
        f"```\n{format_table(metric_rows)}\n```\n\n{timing}\n\n"
        "ELBO: ours uses a Bernoulli decoder, the paper a Gaussian one, so the ELBO columns are not comparable.\n"
        "MSE: per pixel, intensities in [0, 1]; smoothed = z1 | x1:5, filtered = z5 | x1:5.\n\n"
        "![R² vs wall time](pendulum_r2_vs_time.png)\n![latent space](pendulum_latent_space.png)\n"
        "![predictions](pendulum_predictions.png)\n![training curves](pendulum_training_curves.png)\n")
    print(format_table(metric_rows))
    print(timing)
    if args.ship:
        ship(co_dir, PRETRAINED_DIR / "pendulum_ekvae", command)
        print(f"[bench] shipped {co_dir} -> {PRETRAINED_DIR / 'pendulum_ekvae'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
