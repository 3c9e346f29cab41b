"""Benchmark: the reacher from joint angles, end to end — identification (paper Table 1b) and control
in the real dm_control reacher-easy by a goal-conditioned policy trained only in the latent env.

    python scripts/bench_reacher.py [--seeds 1 2 3] [--steps 6000] [--n-sequences 2000 1000] [--ship]

Per data-set size and model seed: generate the data (``envs.generate reacher_angles`` with the
spec's defaults, data seed ``--data-seed``) → ``latentworld train --config configs/reacher_angles_ekvae.yaml``
→ ``latentworld evaluate`` → ``python -m agents train jomega --task reach`` → ``python -m agents evaluate``
on 20 real episodes (seeds 5000-5019) beside random and zero actions. Held out: the design (action
repeat and hold, latent sizes, policy settings) was chosen on data seed 0, model seed 0 and real
seeds 100-119; this benchmark uses data seed 1, model seeds 1-3 and real seeds 5000-5019.

Also measured per model: the **joint-limit check**. The wrist stops at ±160°; a model that lets it
pass through ±180° in imagination lets a policy plan through a wall. From rest at wrist ±2.5 rad,
full wrist torque toward the limit for 1.2 s: the largest |wrist| the model's decoded mean reaches
(the real arm stops at 2.88 rad), and whether it wrapped to the other side.

Resumable (every step is skipped when its output exists; trainings resume from their checkpoint).
Writes ``docs/results/reacher_angles.{json,md}``, the first seed's latent space
(``reacher_angles_latent_space.png``) and real episode (``reacher_angles_episode.gif``). ``--ship``
copies the first seed's model of the full data set (no selection among seeds) to
``latentworld/pretrained/reacher_angles_ekvae`` with its default goal (``goal.npy``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from bench_jobs import CpuLedger, run_child, run_jobs
from ship_reacher import ship

from latentworld.common.data import load_dataset
from latentworld.common.fileio import atomic_write_bytes
from latentworld.evaluation.evaluate import EVAL_FILE, format_table
from latentworld.evaluation.metrics import PAPER_TABLE_1B
from latentworld.experiment.checkpoint import (
    CHECKPOINT_DIR,
    META_FILE,
)

PRESET = "configs/reacher_angles_ekvae.yaml"
REAL_SEEDS = list(range(5000, 5020))
TARGET_R2, TARGET_RETURN = 0.98, 900.0
SHIPPED_NAME = "reacher_angles_ekvae"
R2_KEYS = ("r2_shoulder_angle", "r2_wrist_angle", "r2_raw_wrist_angle", "r2_shoulder_velocity", "r2_wrist_velocity")


@torch.no_grad()
def joint_limit_check(run_dir: Path, seconds: float = 1.2) -> dict[str, float | bool]:
    """Push the wrist against each limit in the model's mean dynamics; see the module docstring."""
    from envs import RealEnv
    from envs.real_env import feature_angles
    from latentworld.experiment.checkpoint import load_model

    model, _, meta = load_model(run_dir)
    env = RealEnv("reacher_angles", action_repeat=meta["action_repeat"])
    steps = round(seconds / env.dt)
    result: dict[str, float | bool] = {}
    try:
        for sign, name in ((1.0, "positive"), (-1.0, "negative")):
            frame, _ = env.reset(seed=0, options={"state": np.array([0.3, sign * 2.5, 0.0, 0.0])})
            z = model.filter_step(None, None, torch.as_tensor(frame)[None])[0]
            wrist = []
            for _ in range(steps):
                z = model.sample_next(z, torch.tensor([[0.0, sign]]), None, 0.0)
                features = model.decode_mean(z)[0]
                wrist.append(float(feature_angles(features.numpy())[1]))
            wrist = np.array(wrist)
            result[f"{name}_max_abs_wrist"] = float(np.abs(wrist).max())
            result[f"{name}_wrapped"] = bool((np.sign(wrist) == -sign).any())
    finally:
        env.close()
    return result


def run_seed(n_sequences: int, seed: int, args: argparse.Namespace, ledger: CpuLedger) -> None:
    """Data (shared per size), model, evaluation, policy, real evaluation of one seed; each skipped if done."""
    root = args.runs_dir / f"{n_sequences}_sequences"
    data = root / "reacher_angles.npz"
    run_dir = root / f"seed{seed}"
    policy = run_dir / "reach_jomega"
    key, log = f"{n_sequences}/seed{seed}", args.runs_dir / "logs" / f"{n_sequences}_seed{seed}.log"
    threads = max(1, len(os.sched_getaffinity(0)) // args.workers)
    if not (run_dir / CHECKPOINT_DIR / META_FILE).exists() or _step(run_dir) != args.steps:
        train = [sys.executable, "-m", "latentworld.cli", "train", "--config", PRESET, "--run-dir", str(run_dir),
                 "--no-progress", "--set", f"steps={args.steps}", "--set", f"seed={seed}", "--set", f"data={data}",
                 "--set", f"threads={threads}", "--set", f"schedule.calibration_steps={min(1000, args.steps // 3)}"]
        run_child(train + (["--resume"] if (run_dir / "run_config.yaml").exists() else []), log, ledger, key)
    if not (run_dir / "eval" / EVAL_FILE).exists():
        run_child([sys.executable, "-m", "latentworld.cli", "evaluate", str(run_dir)], log, ledger, key)
    if not (policy / "meta.json").exists():
        run_child([sys.executable, "-m", "agents", "train", "jomega", "--model", str(run_dir), "--task", "reach",
                   "--out", str(policy), "--seed", str(seed), "--threads", str(threads), "--no-progress"],
                  log, ledger, key)
    if not (policy / "real_eval" / "real_eval.json").exists():
        run_child([sys.executable, "-m", "agents", "evaluate", str(policy), "--episodes", str(len(REAL_SEEDS)),
                   "--first-seed", str(REAL_SEEDS[0]), "--threads", str(threads), "--no-progress"], log, ledger, key)


def _step(run_dir: Path) -> int | None:
    return json.loads((run_dir / CHECKPOINT_DIR / META_FILE).read_text()).get("step")


def collect(args: argparse.Namespace) -> dict[str, dict]:
    """Per data-set size: each seed's metrics, joint-limit check and real returns, and their summaries."""
    sizes = {}
    for n_sequences in args.n_sequences:
        root = args.runs_dir / f"{n_sequences}_sequences"
        seeds = {}
        for seed in args.seeds:
            run_dir = root / f"seed{seed}"
            real = run_dir / "reach_jomega" / "real_eval" / "real_eval.json"
            if not real.exists():
                continue
            metrics = json.loads((run_dir / "eval" / EVAL_FILE).read_text())["metrics"]
            results = {r["label"]: r for r in json.loads(real.read_text())["results"]}
            seeds[seed] = {"metrics": metrics, "joint_limit": joint_limit_check(run_dir / CHECKPOINT_DIR),
                           "real_return": results["jomega"]["mean_return"],
                           "real_returns": results["jomega"]["returns"],
                           "random_return": results["random"]["mean_return"],
                           "zero_return": results["zero"]["mean_return"]}
        if not seeds:
            continue
        train = load_dataset(root / "reacher_angles.npz", "train")
        data_meta = train.metadata
        physics_steps = n_sequences * train.obs.shape[1] * data_meta["action_repeat"]
        summary = {}
        for name, values in {**{k: [s["metrics"][k] for s in seeds.values()] for k in (*R2_KEYS, "mse_smoothed")},
                             "real_return": [s["real_return"] for s in seeds.values()]}.items():
            summary[name] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
        sizes[str(n_sequences)] = {"seeds": seeds, "summary": summary, "physics_steps": physics_steps,
                                   "action_repeat": data_meta["action_repeat"],
                                   "action_hold": data_meta.get("action_hold", 1)}
    return sizes


def write_results(sizes: dict[str, dict], args: argparse.Namespace, cpu_seconds: float) -> None:
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    command = (f"python scripts/bench_reacher.py --seeds {' '.join(map(str, args.seeds))} --steps {args.steps} "
               f"--n-sequences {' '.join(map(str, args.n_sequences))} --data-seed {args.data_seed}")
    atomic_write_bytes(out / "reacher_angles.json", json.dumps(
        {"command": command, "machine": machine, "cpu_hours": cpu_seconds / 3600, "real_seeds": REAL_SEEDS,
         "sizes": sizes, "paper": PAPER_TABLE_1B}, indent=2).encode())
    lines = [(f"# Reacher from joint angles: identification and real-env control\n\n`{command}` — {machine}; "
             f"{cpu_seconds / 3600:.1f} CPU hours in all.\n"),
             ("Held out: the design was tuned on data seed 0, model seed 0 and real seeds 100-119; here data seed "
             f"{args.data_seed}, model seeds {', '.join(map(str, args.seeds))}, real seeds "
             f"{REAL_SEEDS[0]}-{REAL_SEEDS[-1]} (dm_control reacher-easy, 1000 physics steps per episode).\n")]
    for size, block in sizes.items():
        s = block["summary"]
        rows = {f"ours, seed {seed}": {k: v for k, v in r["metrics"].items() if k in (*R2_KEYS, "mse_smoothed")}
                for seed, r in block["seeds"].items()}
        rows["ours, mean"] = {k: v["mean"] for k, v in s.items() if k != "real_return"}
        rows["paper: VHP-EKVAE (CO)"] = PAPER_TABLE_1B["VHP-EKVAE (CO)"]
        met_r2 = all(s[k]["mean"] >= TARGET_R2 for k in ("r2_shoulder_angle", "r2_shoulder_velocity",
                                                         "r2_wrist_velocity")) and max(
            s["r2_wrist_angle"]["mean"], s["r2_raw_wrist_angle"]["mean"]) >= TARGET_R2
        per_seed = "\n".join(
            f"- seed {seed}: real return {r['real_return']:.1f} (random {r['random_return']:.1f}, zero "
            f"{r['zero_return']:.1f}); per episode {' '.join(f'{x:.0f}' for x in r['real_returns'])}; joint limit: "
            f"|wrist| up to {r['joint_limit']['positive_max_abs_wrist']:.2f} / "
            f"{r['joint_limit']['negative_max_abs_wrist']:.2f} rad (real: 2.88), wrapped: "
            f"{r['joint_limit']['positive_wrapped'] or r['joint_limit']['negative_wrapped']}"
            for seed, r in block["seeds"].items())
        lines += [(f"## {size} sequences: {block['physics_steps']:,} physics steps of data (action repeat "
                  f"{block['action_repeat']}, random actions held for {block['action_hold']} frame(s))\n"),
                  f"```\n{format_table(rows)}\n```\n",
                  (f"- Identification target (OLS R² ≥ {TARGET_R2} for both angles, the wrist as (cos, sin) or raw, and "
                  f"both velocities): **{'met' if met_r2 else 'NOT met'}** on the mean over seeds."),
                  (f"- Real reacher-easy return, mean over seeds of the mean over {len(REAL_SEEDS)} episodes: "
                  f"**{s['real_return']['mean']:.1f} ± {s['real_return']['std']:.1f}** (target {TARGET_RETURN:.0f}: "
                  f"**{'met' if s['real_return']['mean'] >= TARGET_RETURN else 'NOT met'}**)."),
                  per_seed, ""]
    lines += ["![latent space](reacher_angles_latent_space.png)\n",
              "![a real episode: scene with target | belief | return](reacher_angles_episode.gif)\n"]
    text = "\n".join(lines)
    atomic_write_bytes(out / "reacher_angles.md", text.encode())
    print(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="model seeds (default 1 2 3)")
    parser.add_argument("--steps", type=int, default=6000, help="model training steps (default 6000)")
    parser.add_argument("--n-sequences", type=int, nargs="+", default=[2000],
                        help="data-set sizes, in sequences of 30 frames (default 2000)")
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="seeds trained at once (default 2)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/bench_reacher"))
    parser.add_argument("--out-dir", type=Path, default=Path("docs/results"))
    parser.add_argument("--report-only", action="store_true", help="write the results of finished seeds")
    parser.add_argument("--ship", action="store_true", help=f"ship the first seed's model as {SHIPPED_NAME}")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    (args.runs_dir / "logs").mkdir(parents=True, exist_ok=True)
    ledger = CpuLedger(args.runs_dir / "cpu_seconds.json")
    failures = []
    if not args.report_only:
        for n_sequences in args.n_sequences:
            data = args.runs_dir / f"{n_sequences}_sequences" / "reacher_angles.npz"
            if not data.exists():
                data.parent.mkdir(parents=True, exist_ok=True)
                run_child([sys.executable, "-m", "envs.generate", "reacher_angles", "--seed", str(args.data_seed),
                           "--n-sequences", str(n_sequences), "--out", str(data), "--no-picture"],
                          args.runs_dir / "logs" / "data.log", ledger, f"data/{n_sequences}")
        jobs = [(n, seed) for n in args.n_sequences for seed in args.seeds]
        failures = run_jobs([functools.partial(run_seed, n, seed, args, ledger) for n, seed in jobs], args.workers,
                            "seed")
    sizes = collect(args)
    write_results(sizes, args, sum(ledger.seconds.values()))
    first = args.runs_dir / f"{args.n_sequences[0]}_sequences" / f"seed{args.seeds[0]}"
    if (first / "eval" / "latent_space.png").exists():
        shutil.copy2(first / "eval" / "latent_space.png", args.out_dir / "reacher_angles_latent_space.png")
    if (first / "reach_jomega" / "real_eval" / "episode.gif").exists():
        shutil.copy2(first / "reach_jomega" / "real_eval" / "episode.gif", args.out_dir / "reacher_angles_episode.gif")
    if args.ship:
        print(f"[bench] shipped {first} -> {ship(first, 'reacher_angles', 'python scripts/bench_reacher.py --ship')}")
    for failure in failures:
        print(f"[bench] FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
