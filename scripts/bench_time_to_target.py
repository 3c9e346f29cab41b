"""Benchmark: training time until the pendulum is identified, the preset beside the fast preset.

    python scripts/bench_time_to_target.py [--seeds 11 12 13] [--data-seed 1] [--max-steps 3000]
        [--presets preset fast] [--set KEY=VALUE ...]

"Identified": validation OLS R² >= 0.99 for both the angle and the velocity (the trainer's own
evaluation on the data set's test split, every 100 steps); time is optimiser time (the trainer's
``elapsed``: training steps only, no evaluation or checkpointing). Every run trains on a data set
generated with ``--data-seed`` and a model seed from ``--seeds``. The fast preset was tuned on data
seed 0 with model seeds 0-8, and a model seed fixes the initial weights whatever the data: for a
fully held-out measurement take another data seed and model seeds above 8 (the defaults). A run
stops at its first evaluation at the target or at ``--max-steps``; for each seed the presets run
one after the other, so they see the same machine load. ``--set`` overrides a setting of every run
(e.g. ``--set model.dim_a=2 --set model.dim_z=3``; give such runs their own ``--runs-dir`` and
``--out-dir``). Resumable: a run directory under ``--runs-dir`` continues where it stopped.

Writes ``pendulum_time_to_target[_data<N>][_<preset>].{json,md,png}`` into ``--out-dir``: the data
seed when it is not 1, the preset when only one runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from bench_pendulum import TARGET, save_r2_figure, target_row

from latentworld.experiment.config import load_config
from latentworld.experiment.history import read_history
from latentworld.training.trainer import Trainer

PRESETS = {"preset": ("preset", "configs/pendulum_ekvae.yaml"),  # CLI name: (label, config)
           "fast": ("fast preset", "configs/pendulum_ekvae_fast.yaml")}
COLOURS = {"preset": "C0", "fast preset": "C2"}
EVAL_EVERY = 100


def held_out_data(runs: Path, data_seed: int) -> Path:
    """The pendulum data set of ``data_seed`` (default size), generated once into ``runs``."""
    path = runs / f"pendulum_seed{data_seed}.npz"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "envs.generate", "pendulum", "--seed", str(data_seed), "--out",
                        str(path), "--no-picture"], check=True)
    return path


def train_to_target(preset: str, run_dir: Path, seed: int, data: Path, max_steps: int,
                    settings: list[str] | None = None) -> list[dict[str, float]]:
    """Train ``preset`` (with ``settings``, ``KEY=VALUE`` overrides) in chunks of :data:`EVAL_EVERY`
    steps until both R² reach the target (or ``max_steps``, or the preset's own end); returns the run's
    history."""
    config = load_config(preset, [f"seed={seed}", f"data={data}", f"eval_every={EVAL_EVERY}", "threads=2",
                                  *(settings or [])])
    trainer = Trainer(config, run_dir, resume=True)
    until = min(max_steps, config.steps)
    while target_row(read_history(run_dir)) is None and trainer.step < until:
        trainer.fit(progress=False, until=trainer.step + EVAL_EVERY)
    return read_history(run_dir)


def summary(history: list[dict[str, float]]) -> dict[str, float | None]:
    """Steps and optimiser seconds to the target (None if never reached), the steps per second and the
    last evaluation's R² (angle, velocity)."""
    hit = target_row(history)
    last = history[-1]
    evaluated = [row for row in history if "eval/r2_hinge_velocity" in row][-1]
    return {"steps_to_target": hit["step"] if hit else None, "seconds_to_target": hit["wall"] if hit else None,
            "steps_trained": last["step"], "steps_per_second": round(last["step"] / last["wall"], 2),
            "last_r2": [round(evaluated["eval/r2_hinge_angle"], 4), round(evaluated["eval/r2_hinge_velocity"], 4)]}


def plot(histories: dict[str, dict[int, list[dict[str, float]]]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, runs in histories.items():
        color = COLOURS[label]
        for i, history in enumerate(runs.values()):
            rows = [r for r in history if "eval/r2_hinge_velocity" in r]
            worst = [min(r["eval/r2_hinge_angle"], r["eval/r2_hinge_velocity"]) for r in rows]
            ax.plot([r["wall"] for r in rows], worst, color=color, label=label if i == 0 else None)
    save_r2_figure(fig, ax, path, time_mark=30, xlabel="optimiser time (s, 2 CPU cores)",
                   ylabel="min(R² angle, R² velocity), validation")


def report(results: dict[str, dict[int, dict]], args: argparse.Namespace, command: str, figure: str) -> str:
    lines = [
        "# Pendulum: optimiser time until R² ≥ 0.99 for angle and velocity",
        "",
        f"`{command}` — {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 2 threads.",
        "",
        (f"Data seed {args.data_seed}, model seeds {', '.join(map(str, args.seeds))}"
         + (f", settings {', '.join(args.settings)}" if args.settings else "")
         + ". The fast preset was tuned on data seed 0 with model seeds 0-8 (a model seed fixes the initial "
         "weights whatever the data). Validation R² every 100 steps on the data set's test split; time is "
         "optimiser time" + (", the presets alternating per seed under the same machine load." if len(results) > 1
                             else ".")),
        "",
        "| seed | " + " | ".join(f"{label}: steps | {label}: seconds | {label}: steps/s" for label in results) + " |",
        "|---:|" + "---:|---:|---:|" * len(results),
    ]
    for seed in args.seeds:
        cells = []
        for runs in results.values():
            row = runs[seed]
            cells += [str(row["steps_to_target"] or f"> {row['steps_trained']}"),
                      f"{row['seconds_to_target']:.1f}" if row["seconds_to_target"] is not None
                      else "never (R² {:.4f} / {:.4f} at the end)".format(*row["last_r2"]),
                      f"{row['steps_per_second']:.1f}"]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    lines.append("")
    for label, runs in results.items():
        seconds = [r["seconds_to_target"] for r in runs.values()]
        if all(s is not None for s in seconds):
            met = "met" if max(seconds) <= 30 else "not met"
            lines.append(f"- {label}: mean {statistics.mean(seconds):.1f} s, worst {max(seconds):.1f} s to the target "
                         f"(≤ 30 s on every seed: **{met}**).")
        else:
            lines.append(f"- {label}: the target was not reached on every seed within its steps.")
    lines += ["", f"![worst R² against optimiser time]({figure})", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/bench_time_to_target"))
    parser.add_argument("--out-dir", type=Path, default=Path("docs/results"))
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=list(PRESETS))
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of every run (repeatable)")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    command = shlex.join(["python", "scripts/bench_time_to_target.py", *sys.argv[1:]])
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    data = held_out_data(args.runs_dir, args.data_seed)
    names = list(dict.fromkeys(args.presets))
    chosen = [PRESETS[name] for name in names]
    data_tag = "" if args.data_seed == 1 else f"_data{args.data_seed}"
    histories: dict[str, dict[int, list[dict[str, float]]]] = {label: {} for label, _ in chosen}
    for seed in args.seeds:
        for label, preset in chosen:
            run_dir = args.runs_dir / f"{Path(preset).stem}{data_tag}_seed{seed}"
            print(f"[bench] {label} ({preset}), seed {seed} -> {run_dir}", flush=True)
            histories[label][seed] = train_to_target(preset, run_dir, seed, data, args.max_steps, args.settings)
    results = {label: {seed: summary(h) for seed, h in runs.items()} for label, runs in histories.items()}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "pendulum_time_to_target" + data_tag + ("" if len(names) == len(PRESETS) else f"_{names[0]}")
    (args.out_dir / f"{stem}.json").write_text(json.dumps(
        {"command": command, "target": TARGET, "data_seed": args.data_seed, "results": results}, indent=2))
    plot(histories, args.out_dir / f"{stem}.png")
    text = report(results, args, command, f"{stem}.png")
    (args.out_dir / f"{stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
