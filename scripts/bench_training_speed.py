"""Where a training step's time goes: steps per second and a profile of the presets, side by side.

    python scripts/bench_training_speed.py [--steps 10] [--threads 2] [--out-dir docs/results]

Per row (a preset with settings): a Trainer on the preset's data set (``data/pendulum.npz``,
``data/reacher_angles.npz``, ``data/reacher_rgb.npz``: ``python -m envs.generate NAME``), 3 warm-up steps, ``--steps`` timed steps,
then ``--steps`` steps under ``torch.profiler``. The named ranges of ``Trainer.train_step`` and ``KalmanVAE.loss_terms``
split the step: the forward pass into encoder, decoder, Kalman smoother and the rest of the
objective; then the backward pass and the optimiser. The rows compare the Kalman smoother's fused
CPU kernels with its eager torch form (pendulum and joint-angle reacher presets, the KVAE baseline, whose
transition ignores z so that its whole filter is one kernel call), the pendulum preset
in float32 and bfloat16, and the RGB observation networks as they were (32 channels, float32) with
the preset (16 channels, bfloat16, channels-last).

Writes ``training_speed.json`` and ``training_speed.md`` into ``--out-dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import profile

from latentworld.experiment.config import load_config
from latentworld.probability import kalman_kernels
from latentworld.training.trainer import Trainer

ROWS = {  # name: (config, settings, Kalman smoother in its eager form)
    "pendulum preset, float32": ("configs/pendulum_ekvae.yaml", [], False),
    "pendulum preset, float32, eager Kalman form": ("configs/pendulum_ekvae.yaml", [], True),
    "pendulum preset, bfloat16": ("configs/pendulum_ekvae.yaml", ["precision=bfloat16"], False),
    "pendulum fast preset (batch 32)": ("configs/pendulum_ekvae_fast.yaml", [], False),
    "pendulum fast preset (batch 32), eager Kalman form": ("configs/pendulum_ekvae_fast.yaml", [], True),
    "KVAE baseline (pendulum; its whole filter in one kernel call)": ("configs/pendulum_kvae.yaml", [], False),
    "KVAE baseline, eager Kalman form": ("configs/pendulum_kvae.yaml", [], True),
    "reacher angles preset": ("configs/reacher_angles_ekvae.yaml", [], False),
    "reacher angles preset, eager Kalman form": ("configs/reacher_angles_ekvae.yaml", [], True),
    "reacher RGB, 32 channels, float32": ("configs/reacher_rgb_ekvae.yaml", ["model.conv_width=32",
                                                                             "precision=float32"], False),
    "reacher RGB preset (16 channels, bfloat16)": ("configs/reacher_rgb_ekvae.yaml", [], False),
}
FORWARD_PARTS = ("encoder", "decoder", "kalman smoother")
PHASES = ("forward", "backward", "optimizer")


def warmed_trainer(config: str, settings: list[str], threads: int, device: str, run_dir: Path) -> Trainer:
    """A Trainer of ``config`` past REWO's initial phase (2 calibration steps) and 3 warm-up steps."""
    trainer = Trainer(load_config(config, [*settings, f"threads={threads}", "schedule.calibration_steps=2",
                                           f"device={device}"]), run_dir)
    for _ in range(3):
        trainer.train_step()
    return trainer


def ms_per_step(trainer: Trainer, steps: int) -> float:
    """Wall-clock ms per training step over ``steps`` steps (waiting for a GPU to finish)."""
    def sync() -> None:
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)

    sync()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    sync()
    return 1e3 * (time.perf_counter() - start) / steps


def profile_row(config: str, settings: list[str], steps: int, threads: int) -> dict[str, float]:
    """ms per step in total and in each named range, for ``steps`` profiled steps."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = warmed_trainer(config, settings, threads, "cpu", Path(tmp) / "run")
        total = ms_per_step(trainer, steps)  # timed without the profiler, whose own cost per op is not small
        with profile() as prof:
            for _ in range(steps):
                trainer.train_step()
    ranges = {event.key: event.cpu_time_total / 1e3 / steps for event in prof.key_averages()
              if event.key in FORWARD_PARTS + PHASES}
    row = {"ms_per_step": round(total, 1), "steps_per_second": round(1e3 / total, 2)}
    row |= {f"{name}_ms": round(ranges.get(name, 0.0), 1) for name in FORWARD_PARTS + PHASES}
    row["objective_rest_ms"] = round(row["forward_ms"] - sum(row[f"{name}_ms"] for name in FORWARD_PARTS), 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="profiled steps per row (default 10)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=Path("docs/results"))
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results = {}
    # The process's first steps are slower (allocator, thread pools, first-use compilation); a discarded
    # run of the first row keeps that out of the table.
    first_config, first_settings, _ = next(iter(ROWS.values()))
    profile_row(first_config, first_settings, args.steps, args.threads)
    for name, (config, settings, eager) in ROWS.items():
        with kalman_kernels.eager_only() if eager else contextlib.nullcontext():
            results[name] = profile_row(config, settings, args.steps, args.threads)
        print(name, results[name], flush=True)
    command = shlex.join(["python", "scripts/bench_training_speed.py", *sys.argv[1:]])
    report = {"command": command, "torch": torch.__version__, "threads": args.threads,
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "load_average_1min_before": round(load_before, 2)},
              "profiled_steps": args.steps, "rows": results}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "training_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    columns = ["ms_per_step", "steps_per_second", "encoder_ms", "decoder_ms", "kalman smoother_ms",
               "objective_rest_ms", "backward_ms", "optimizer_ms"]
    lines = [
        "# Training speed: where a step goes",
        "",
        (f"CPU, {args.threads} torch threads, torch {torch.__version__}, {platform.platform()}, "
         f"1-minute load average {load_before:.2f} before the run. Per row: after 3 warm-up steps, {args.steps} "
         f"timed steps (the first two columns), then {args.steps} steps under `torch.profiler`. Encoder, decoder, Kalman smoother and the rest of the "
         "objective split the forward pass; the backward pass of all of them is one column. Times are "
         "CPU time per step (ms) inside each named range, measured with the profiler's own overhead, "
         "so they need not add up to the first column."),
        "",
        "| row | " + " | ".join(c.replace("_ms", " (ms)").replace("_", " ") for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
        *(f"| {name} | " + " | ".join(f"{row[c]}" for c in columns) + " |" for name, row in results.items()),
        "",
        f"Produced by: `{command}`",
        "",
    ]
    (args.out_dir / "training_speed.md").write_text("\n".join(lines))
    print(f"wrote {args.out_dir / 'training_speed.json'} and .md")


if __name__ == "__main__":
    main()
