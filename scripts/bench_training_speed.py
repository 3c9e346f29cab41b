"""Where a training step's time goes: steps per second and a profile of the presets, side by side.

    python scripts/bench_training_speed.py [--steps 10] [--rounds 5] [--threads 2] [--out-dir docs/results]

Per row (a preset with settings): a Trainer on the preset's data set (``data/pendulum.npz``,
``data/reacher_angles.npz``, ``data/reacher_rgb.npz``: ``python -m envs.generate NAME``) and 3
warm-up steps; all rows' Trainers are held at once (about 2 GB, most of it the RGB data set twice).
Then ``--rounds`` rounds of ``--steps // --rounds`` timed steps per row, in which every row takes its
turn (after one discarded round), so that a slow spell of the machine falls on all rows alike; a
row's time is the median of its rounds. Then ``--steps`` steps per row under ``torch.profiler``. The
named ranges of ``Trainer.train_step`` and ``KalmanVAE.loss_terms`` split the step: the forward pass
into encoder, decoder, Kalman smoother and the rest of the objective; then the backward pass and the
optimiser. The rows compare the Kalman smoother's fused CPU kernels with its eager torch form
(pendulum and joint-angle reacher presets, the KVAE baseline, whose transition ignores z so that its
whole filter is one kernel call) and, for the EKVAE presets, the whole-filter call of the declared
mixture with the mixer run step by step in Python between the kernel calls, the pendulum preset in float32 and bfloat16, and the RGB
observation networks as they were (32 channels, float32) with the preset's (16 channels,
channels-last) in float32 and in bfloat16. The report says whether this CPU computes bfloat16
natively (AVX-512 BF16 or AMX), where the preset's ``precision: auto`` takes it.

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
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from bench_kalman import interleaved_medians, kalman_form
from torch.profiler import profile

from latentworld.common.device import native_bfloat16
from latentworld.experiment.config import load_config
from latentworld.training.trainer import Trainer

ROWS = {  # name: (config, settings, the Kalman smoother's form: fused, stepwise or eager)
    "pendulum preset, float32": ("configs/pendulum_ekvae.yaml", [], "fused"),
    "pendulum preset, float32, mixer step by step": ("configs/pendulum_ekvae.yaml", [], "stepwise"),
    "pendulum preset, float32, eager Kalman form": ("configs/pendulum_ekvae.yaml", [], "eager"),
    "pendulum preset, bfloat16": ("configs/pendulum_ekvae.yaml", ["precision=bfloat16"], "fused"),
    "pendulum fast preset (batch 32)": ("configs/pendulum_ekvae_fast.yaml", [], "fused"),
    "pendulum fast preset (batch 32), mixer step by step": ("configs/pendulum_ekvae_fast.yaml", [], "stepwise"),
    "pendulum fast preset (batch 32), eager Kalman form": ("configs/pendulum_ekvae_fast.yaml", [], "eager"),
    "KVAE baseline (pendulum; its whole filter in one kernel call)": ("configs/pendulum_kvae.yaml", [], "fused"),
    "KVAE baseline, eager Kalman form": ("configs/pendulum_kvae.yaml", [], "eager"),
    "reacher angles preset": ("configs/reacher_angles_ekvae.yaml", [], "fused"),
    "reacher angles preset, mixer step by step": ("configs/reacher_angles_ekvae.yaml", [], "stepwise"),
    "reacher angles preset, eager Kalman form": ("configs/reacher_angles_ekvae.yaml", [], "eager"),
    "reacher RGB, 32 channels, float32": ("configs/reacher_rgb_ekvae.yaml", ["model.conv_width=32",
                                                                             "precision=float32"], "fused"),
    "reacher RGB preset (16 channels), float32": ("configs/reacher_rgb_ekvae.yaml", ["precision=float32"], "fused"),
    "reacher RGB preset (16 channels), bfloat16": ("configs/reacher_rgb_ekvae.yaml", ["precision=bfloat16"], "fused"),
}
FORWARD_PARTS = ("encoder", "decoder", "kalman smoother")
PHASES = ("forward", "backward", "optimizer")


def warmed_trainer(config: str, settings: list[str], threads: int, run_dir: Path, device: str = "cpu") -> Trainer:
    """A Trainer of ``config`` on ``device`` past REWO's initial phase (2 calibration steps) and 3 warm-up
    steps."""
    trainer = Trainer(load_config(config, [*settings, f"threads={threads}", "schedule.calibration_steps=2",
                                           f"device={device}"]), run_dir)
    for _ in range(3):
        trainer.train_step()
    return trainer


@contextlib.contextmanager
def smoother_form(trainer: Trainer, form: str) -> Iterator[None]:
    """Within the block the trainer's Kalman smoother runs in ``form``: ``fused`` (as by default: on the CPU
    the fused kernels, the EKVAE's whole filter in one call), ``stepwise`` (the fused kernels, but the
    EKVAE's transition handed over as a plain callable, so that its mixer runs in Python between the
    kernel calls of every step, as before the mixture was declared) or ``eager`` (eager torch ops)."""
    model = trainer.model
    if form == "stepwise":
        model.smoother_transition = lambda: model.transition
    try:
        with kalman_form(form == "eager"):
            yield
    finally:
        model.__dict__.pop("smoother_transition", None)


def training_steps(trainer: Trainer, form: str, steps: int) -> Callable[[], None]:
    """A call that runs ``steps`` training steps with the Kalman smoother in ``form``."""
    def call() -> None:
        with smoother_form(trainer, form):
            for _ in range(steps):
                trainer.train_step()
    return call


def profile_ranges(trainer: Trainer, form: str, steps: int) -> dict[str, float]:
    """CPU ms per step inside each named range, over ``steps`` profiled steps."""
    with smoother_form(trainer, form), profile() as prof:
        for _ in range(steps):
            trainer.train_step()
    ranges = {event.key: event.cpu_time_total / 1e3 / steps for event in prof.key_averages()
              if event.key in FORWARD_PARTS + PHASES}
    row = {f"{name}_ms": round(ranges.get(name, 0.0), 1) for name in FORWARD_PARTS + PHASES}
    row["objective_rest_ms"] = round(row["forward_ms"] - sum(row[f"{name}_ms"] for name in FORWARD_PARTS), 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="profiled steps per row, and timed steps per row in all rounds "
                        "(rounded down to a multiple of --rounds; default 10)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds the timed steps are split into (default 5)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=Path("docs/results"))
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results = {}
    per_round = max(1, args.steps // args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {name: warmed_trainer(config, settings, args.threads, Path(tmp) / str(i))
                    for i, (name, (config, settings, _)) in enumerate(ROWS.items())}
        # Timed without the profiler, whose own cost per op is not small; the discarded first round keeps
        # the process's slower first steps (allocator, thread pools) out of the table.
        medians = interleaved_medians({name: training_steps(trainers[name], form, per_round)
                                       for name, (_, _, form) in ROWS.items()}, reps=args.rounds, warmup=1)
        for name, (_, _, form) in ROWS.items():
            total = medians[name] / per_round
            results[name] = {"ms_per_step": round(total, 1), "steps_per_second": round(1e3 / total, 2),
                             **profile_ranges(trainers[name], form, args.steps)}
            print(name, results[name], flush=True)
    command = shlex.join(["python", "scripts/bench_training_speed.py", *sys.argv[1:]])
    report = {"command": command, "torch": torch.__version__, "threads": args.threads,
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "load_average_1min_before": round(load_before, 2),
                          "native_bfloat16": native_bfloat16(torch.device("cpu"))},
              "profiled_steps": args.steps, "rounds": args.rounds, "steps_per_round": per_round, "rows": results}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "training_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    columns = ["ms_per_step", "steps_per_second", "encoder_ms", "decoder_ms", "kalman smoother_ms",
               "objective_rest_ms", "backward_ms", "optimizer_ms"]
    lines = [
        "# Training speed: where a step goes",
        "",
        (f"CPU, {args.threads} torch threads, torch {torch.__version__}, {platform.platform()}, "
         f"1-minute load average {load_before:.2f} before the run; "
         f"{'native bfloat16 (AVX-512 BF16 or AMX)' if report['machine']['native_bfloat16'] else 'no native bfloat16 (no AVX-512 BF16 or AMX: autocast emulates it)'}. Per row: after 3 warm-up steps, {args.rounds} rounds of "
         f"{per_round} timed steps in which the rows take turns (after one discarded round); the first two columns are "
         f"the median round's. Then {args.steps} steps under `torch.profiler`. Encoder, decoder, Kalman smoother and the rest of the "
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
