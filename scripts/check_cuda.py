"""A short correctness-and-speed check of the CUDA path, for a machine with a GPU (about 4 minutes).

    python scripts/check_cuda.py [--out-dir docs/results] [--device cuda]

Each check compares the GPU with this machine's CPU:

1. ``kalman_smoother`` in float64 on random inputs: smoothed means, covariances and log-likelihood;
2. the shipped pendulum EKVAE on ``data/pendulum.npz``: smoothed means and the R² of the protocol;
3. training on the GPU: the pendulum preset for 3000 steps to its R², and
   steps per second of the RGB reacher preset (float32 and bfloat16), beside the CPU;
4. ``torchrun`` with one process on the GPU (the NCCL backend) trains and checkpoints;
5. the Kalman smoother's time at T = 15, 60, 240 (``scripts/bench_kalman.py``'s problem).

Needs ``data/pendulum.npz`` and ``data/reacher_rgb.npz`` (``python -m envs.generate pendulum`` and
``reacher_rgb``). Results are written after every check, so a run cut short keeps what it measured:
``cuda_check.json`` and ``cuda_check.md`` in ``--out-dir``. ``--device cpu`` runs the same checks
with the CPU on both sides (to try the script on a machine without a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from bench_kalman import ekvae_transition, interleaved_medians, kalman_inputs
from bench_training_speed import training_steps, warmed_trainer

from latentworld.evaluation.metrics import r2_scores, smoothed_means
from latentworld.experiment.checkpoint import load_model, load_model_data
from latentworld.experiment.config import load_config
from latentworld.probability.kalman import kalman_smoother
from latentworld.training.trainer import Trainer

SPEED_STEPS = 30  # timed training steps per speed row, after 3 untimed ones


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def check_kalman_float64(device: torch.device) -> dict[str, float]:
    """Largest absolute difference between the CPU's and the device's float64 smoother outputs."""
    torch.manual_seed(0)
    transition = ekvae_transition(5, 1, dtype=torch.float64)
    inputs = kalman_inputs(B=16, T=40, dz=5, da=3, du=1, dtype=torch.float64)
    results = {}
    for name, dev in (("cpu", torch.device("cpu")), ("device", device)):
        moved = [x.detach().to(dev) for x in inputs]
        results[name] = kalman_smoother(moved[0], moved[1], transition.to(dev), *moved[2:])
    return {f"max_abs_diff_{field}": float((getattr(results["cpu"], field)
                                            - getattr(results["device"], field).cpu()).abs().max())
            for field in ("smoothed_mean", "smoothed_cov", "log_likelihood")}


def check_shipped_model(device: torch.device) -> dict[str, Any]:
    """The shipped pendulum model's smoothed means and R² on the CPU and on ``device``."""
    out: dict[str, Any] = {}
    model, _, meta = load_model("pendulum_ekvae")
    train, test = (load_model_data(meta, "data/pendulum.npz", split) for split in ("train", "test"))
    means = {}
    for name, dev in (("cpu", torch.device("cpu")), ("device", device)):
        model.to(dev)
        means[name] = smoothed_means(model, test)
        out[f"r2_{name}"] = {k: round(v, 6) for k, v in r2_scores(model, train, test).items()}
    out["max_abs_diff_smoothed_mean"] = float((means["cpu"] - means["device"]).abs().max())
    return out


def train_speed(config: str, settings: list[str], device: torch.device, threads: int) -> float:
    """Steps per second of ``config`` on ``device`` (``SPEED_STEPS`` timed steps after 3 warm-up ones)."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = warmed_trainer(config, settings, threads, Path(tmp) / "run", device.type)
        ms = interleaved_medians({"steps": training_steps(trainer, "fused", SPEED_STEPS)}, reps=1, warmup=0)["steps"]
        return round(1e3 * SPEED_STEPS / ms, 2)


def check_pendulum_training(device: torch.device, steps: int) -> dict[str, Any]:
    """The pendulum preset trained ``steps`` steps on ``device``: its R² and optimiser time."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        settings = [f"steps={steps}", f"device={device.type}", f"schedule.calibration_steps={min(1000, steps // 2)}"]
        Trainer(load_config("configs/pendulum_ekvae.yaml", settings), run).fit(progress=False)
        model, _, meta = load_model(run)
    model.to(device)
    train, test = (load_model_data(meta, "data/pendulum.npz", split) for split in ("train", "test"))
    return {"steps": steps, "train_seconds": meta["train_seconds"],
            "r2": {k: round(v, 4) for k, v in r2_scores(model, train, test).items()}}


def check_torchrun(device: torch.device) -> dict[str, Any]:
    """``torchrun --nproc_per_node=1`` on the debug preset (NCCL on a GPU, gloo on the CPU)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                   "-m", "latentworld.cli", "train", "--config", "configs/debug.yaml", "--set",
                   f"device={device.type}", "--run-dir", str(run), "--no-progress"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        meta_file = run / "checkpoint" / "meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    return {"returncode": done.returncode, "world_size": meta.get("world_size"), "step": meta.get("step"),
            "output_tail": (done.stdout + done.stderr)[-600:]}


def smoother_timing(T: int, device: torch.device) -> dict[str, float]:
    """Median ms of the smoother (forward, forward+backward) at length T, B = 64, float32, on ``device``."""
    torch.manual_seed(0)
    transition = ekvae_transition(5, 1, device=device)
    a, u, H, R, mean0, cov0 = (x.to(device).detach().requires_grad_(x.requires_grad)
                               for x in kalman_inputs(B=64, T=T, dz=5, da=3, du=1))

    def forward() -> torch.Tensor:
        out = kalman_smoother(a, u, transition, H, R, mean0, cov0)
        return out.smoothed_mean.sum() + out.log_likelihood.sum()

    def forward_backward() -> None:
        forward().backward()
        sync(device)

    medians = interleaved_medians({"forward_ms": lambda: (forward(), sync(device)),
                                   "forward_backward_ms": forward_backward}, reps=7, warmup=2)
    return {"T": T} | {name: round(ms, 3) for name, ms in medians.items()}


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    (out_dir / "cuda_check.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# CUDA check", "", (f"Produced by: `{report['command']}` on {report['gpu']} "
                                  f"(torch {report['torch']}, {report['cpu_count']} CPU cores; the CPU rows use "
                                  f"{report['cpu_threads']} threads)."), ""]
    for name, value in report["checks"].items():
        lines += [f"## {name}", "", "```", json.dumps(value, indent=2), "```", ""]
    (out_dir / "cuda_check.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("docs/results"))
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--pendulum-steps", type=int, default=3000, help="default: the main job's model")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("check_cuda: torch sees no CUDA GPU here (pass --device cpu to try the script on the CPU)")
    device = torch.device(args.device)
    cpu_threads = min(16, len(os.sched_getaffinity(0)))
    torch.set_num_threads(cpu_threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "command": shlex.join(["python", "scripts/check_cuda.py", *sys.argv[1:]]),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU (CPU on both sides)",
        "torch": torch.__version__, "cpu_count": os.cpu_count(), "cpu_threads": cpu_threads, "checks": {},
    }
    checks: dict[str, Callable[[], Any]] = {
        "kalman_smoother float64, CPU vs device": lambda: check_kalman_float64(device),
        "shipped pendulum model, CPU vs device": lambda: check_shipped_model(device),
        "training speed, steps/s": lambda: {
            f"{name} on {where}": train_speed(config, settings, dev, cpu_threads)
            for name, config, settings in (
                ("pendulum preset", "configs/pendulum_ekvae.yaml", []),
                ("reacher RGB preset (bfloat16)", "configs/reacher_rgb_ekvae.yaml", ["precision=bfloat16"]),
                ("reacher RGB preset (float32)", "configs/reacher_rgb_ekvae.yaml", ["precision=float32"]),
            )
            for where, dev in (("device", device), ("cpu", torch.device("cpu")))},
        f"pendulum preset trained on the device, {args.pendulum_steps} steps": lambda: check_pendulum_training(
            device, args.pendulum_steps),
        "torchrun, one process on the device": lambda: check_torchrun(device),
        "kalman_smoother timing on the device (ms)": lambda: [smoother_timing(T, device) for T in (15, 60, 240)],
    }
    for name, check in checks.items():
        start = time.perf_counter()
        try:
            result = check()
        except Exception as err:  # noqa: BLE001 -- a failed check is a result too; the others still run
            result = {"error": f"{type(err).__name__}: {err}"}
        report["checks"][name] = result
        print(f"[{time.perf_counter() - start:.0f} s] {name}: {json.dumps(result)}", flush=True)
        write_report(report, args.out_dir)


if __name__ == "__main__":
    main()
