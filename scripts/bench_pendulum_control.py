"""Benchmark: policies trained only in the latent env, scored in the real dm_control pendulum.

    python scripts/bench_pendulum_control.py [--model pendulum_ekvae] [--training-seeds 0 1 2]
        [--methods jomega sac ppo mpc] [--first-seed 5000] [--episodes 20] [--work runs/bench_control]

For every method and training seed: train on the swing-up task (r^pos toward the encoded upright
pole), then run ``--episodes`` full real episodes on seeds ``first-seed ...`` that no tuning ever
saw (tuning looked at seeds 100-109 and 1000-1019 only), beside random and zero actions. The MPC
planner trains nothing; its seeds are planner seeds. Then the steady-rotation task with J(ω),
started from the swing-up J(ω) policy of the first training seed (from rest, r^vel alone rewards
staying still: pumping first costs more than it earns within any horizon we tried).
Policies and per-run results are kept in ``--work``, so an interrupted run resumes where it stopped.

Writes ``docs/results/pendulum_control.{json,md}`` and ``docs/results/pendulum_swingup.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.evaluate import baselines, evaluate_policy_dir, write_json
from agents.problem import make_problem
from agents.tasks import make_task, rotation_demonstration
from agents.training import train_policy

TARGET_MEAN, TARGET_EACH = 850.0, 800.0
DATA_PHYSICS_STEPS = 500 * 15 * 4  # the model's data set: 500 sequences × 15 frames × action repeat 4
ROTATION_GOAL = 8.0  # rad/s, inside the range of steady turns this pendulum can make (about 3 to 9.7 rad/s)
ROTATION_SETTINGS = ["lr=0.001", "iterations=300", "validation_horizon=100"]  # fine-tuning, tuned on seeds 100-104


def run_one(work: Path, name: str, method: str, problem: Any, seed: int, seeds: list[int],
            overrides: list[str], init: Path | None = None) -> dict[str, Any]:
    """Train (unless done) and evaluate (unless done) one policy; returns its stored result."""
    policy_dir = work / name
    result_file = policy_dir / "bench_eval" / "real_eval.json"
    if result_file.exists():
        print(f"[bench] {name}: reusing {result_file}")
        return json.loads(result_file.read_text())
    if not (policy_dir / "meta.json").exists():
        print(f"[bench] {name}: training {method} (seed {seed})")
        train_policy(method, problem, policy_dir, overrides, seed=seed, init=init)
    print(f"[bench] {name}: {len(seeds)} real episodes")
    report = evaluate_policy_dir(policy_dir, seeds, policy_dir / "bench_eval", with_baselines=False)
    return json.loads(Path(report["json"]).read_text())


def energy_pump_reference(seeds: list[int], action_repeat: int = 4) -> dict[str, Any]:
    """A hand-designed controller that reads the simulator's true state (not available to the policies):
    bang-bang energy pumping toward the upright energy, then a PD hold within 18° of upright, at the
    policies' control rate. Its return shows what these start angles allow (gains tuned on seeds 100-109)."""
    from envs import RealEnv

    stiffness = (2 * np.pi / 1.42) ** 2  # g / l from the 1.42 s small-swing period
    env, returns, start = RealEnv("pendulum", action_repeat=action_repeat), [], time.perf_counter()
    try:
        for seed in seeds:
            _, info = env.reset(seed=seed)
            total, done = 0.0, False
            while not done:
                angle, velocity = info["state"]
                if np.cos(angle) > 0.95:
                    action = np.clip(-20 * np.sin(angle) - 4 * velocity, -1, 1)
                elif 0.5 * velocity**2 + stiffness * np.cos(angle) < stiffness:
                    action = 1.0 if velocity >= 0 else -1.0
                else:
                    action = -0.3 * np.sign(velocity)
                _, reward, terminated, truncated, info = env.step(np.array([action], np.float32))
                total, done = total + reward, terminated or truncated
            returns.append(total)
    finally:
        env.close()
    values = np.array(returns)
    return {"label": "true-state energy pump (reference)", "returns": values.tolist(), "mean_return": float(values.mean()),
            "std_return": float(values.std()), "min_return": float(values.min()),
            "wall_seconds": time.perf_counter() - start}


def summarise(name: str, method: str, seed: int, stored: dict[str, Any]) -> dict[str, Any]:
    result, training = stored["results"][0], stored["training_report"]
    return {"run": name, "method": method, "training_seed": seed, "real_mean": result["mean_return"],
            "real_std": result["std_return"], "real_min": result["min_return"], "real_returns": result["returns"],
            "mean_velocity": float(np.mean(result["mean_velocity"])),
            "latent_validation_return": training.get("best_validation_return"),
            "train_seconds": training.get("train_seconds", 0.0), "eval_seconds": result["wall_seconds"],
            "eval_seconds_per_episode": result["wall_seconds"] / len(result["returns"])}


def filmstrip(gif: Path, out: Path, every: int = 5, columns: int = 5, rows: int = 4) -> None:
    """Every ``every``-th frame of an evaluation GIF (real | decoded belief | return bar) as one PNG grid."""
    frames = iio.imread(gif)[::every][: columns * rows][..., :3]
    pad = np.full((columns * rows - len(frames), *frames.shape[1:]), 255, np.uint8)
    tiles = np.concatenate([frames, pad]).reshape(rows, columns, *frames.shape[1:])
    tiles = np.pad(tiles, ((0, 0), (0, 0), (4, 4), (4, 4), (0, 0)), constant_values=255)
    grid = tiles.transpose(0, 2, 1, 3, 4).reshape(rows * tiles.shape[2], columns * tiles.shape[3], 3)
    iio.imwrite(out, grid)


def markdown(report: dict[str, Any]) -> str:
    rows = report["runs"]
    lines = ["# Pendulum control: policies trained in the latent env, scored in the real env", "",
             f"`{report['command']}` — {report['machine']}.", "",
             (f"Model `{report['model']}`; swing-up goal: the encoded upright-pole image. Real episodes: "
             f"{report['episodes']} full dm_control episodes (1000 physics steps) on seeds "
             f"{report['seeds'][0]}–{report['seeds'][-1]}, which tuning did not look at (tuning: seeds 100–109, "
             "1000–1019; one exception, SAC's step count, is said below). "
             f"Real steps used: {DATA_PHYSICS_STEPS:,} (the model's data set); policies saw only the model."), "",
             "## Swing-up", "",
             ("| method | training seed | real return mean ± std | min | latent validation return | training (s) | "
             "real eval (s/episode) |"), "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        latent = f"{r['latent_validation_return']:.1f}" if r["latent_validation_return"] is not None else "–"
        lines.append(f"| {r['method']} | {r['training_seed']} | {r['real_mean']:.1f} ± {r['real_std']:.1f} | "
                     f"{r['real_min']:.0f} | {latent} | {r['train_seconds']:.0f} | {r['eval_seconds_per_episode']:.1f} |")
    for b in report["baselines"]:
        lines.append(f"| {b['label']} | – | {b['mean_return']:.1f} ± {b['std_return']:.1f} | {b['min_return']:.0f} | "
                     f"– | 0 | {b['wall_seconds'] / len(b['returns']):.1f} |")
    reference = next(b for b in report["baselines"] if "reference" in b["label"])
    best_method, best = max(report["per_method"].items(), key=lambda item: item[1]["mean"])
    lines += ["", ("The reference row is not a learned controller: it reads the simulator's true angle and velocity, "
              "pumps energy bang-bang and holds the pole with a PD law near the top, at the same 12.5 Hz control "
              "rate. From the bottom the motor needs several swings, so its return shows what these start angles "
              f"allow to a classic controller: {reference['mean_return']:.1f} (not an upper bound). The best method, {best_method}, reaches {best['mean']:.1f} "
              f"({best['mean'] - reference['mean_return']:+.1f} against the reference) from 16×16 pixels through "
              "the model alone."), "",
              ("Training times are single-thread wall times; some runs shared the machine with another job on "
               "the second core. The real evaluation time per episode includes filtering and rendering; MPC's is "
               "its planning."), "",
              ("SAC's default was 400 k env steps until its first run of this benchmark scored 131–292 on these "
               "seeds (latent validation still rising); 800 k was checked on tuning seeds 100–109 before this rerun."),
              "", "Per method (over training seeds): mean of the per-seed means, and the worst seed.", "",
              "| method | mean real return | worst training seed | target (mean ≥ 850, each ≥ 800) |", "|---|---:|---:|---|"]
    for method, summary in report["per_method"].items():
        lines.append(f"| {method} | {summary['mean']:.1f} | {summary['worst_seed_mean']:.1f} | "
                     f"{'met' if summary['target_met'] else 'not met'} |")
    rotation = report.get("rotation")
    if rotation:
        per_episode = " ".join(f"{v:+.1f}" for v in rotation["per_episode_mean_velocity"])
        lines += ["", "## Steady rotation (r^vel, J(ω))", "",
                  (f"Goal: the velocity encoded from a real demonstration of the pole turning steadily at "
                   f"{rotation['goal_velocity']:+.1f} rad/s. The policy starts from the swing-up J(ω) policy "
                   f"`{Path(rotation['init']).name}` and is fine-tuned on r^vel (`"
                   + " ".join(f"--set {x}" for x in rotation["settings"]) + "`). "
                   f"Real mean angular velocity over {report['episodes']} episodes: "
                   f"**{rotation['mean_velocity']:+.2f} rad/s** ({100 * rotation['error_fraction']:.1f} % from the goal; "
                   f"target within 10 %: {'met' if rotation['error_fraction'] <= 0.1 else 'not met'}); "
                   f"over the second half of each episode (after the swing-up): {rotation['steady_velocity']:+.2f} rad/s. "
                   f"Per episode: {per_episode}. The demonstration took {rotation['demonstration_physics_steps']:,} "
                   "real physics steps (finding the torque of a steady turn and recording it).")]
    lines += ["", ("The best J(ω) policy's first real episode, every 5th step (0.4 s), left to right and top to "
              "bottom; each tile: real 16×16 frame | the model's decoded belief | return so far (green) and reward "
              "at this step (red strip lit when the pole is within 8° of upright)."), "",
              "![J(ω) swing-up in the real env](pendulum_swingup.png)", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pendulum_ekvae")
    parser.add_argument("--methods", nargs="+", default=["jomega", "sac", "ppo", "mpc"])
    parser.add_argument("--training-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--mpc-seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--first-seed", type=int, default=5000)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--no-rotation", action="store_true")
    parser.add_argument("--work", default="runs/bench_control")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    start, work, out = time.perf_counter(), Path(args.work), Path(args.out)
    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    problem = make_problem(args.model, make_task("swingup"))
    runs = []
    for method in args.methods:
        for seed in (args.mpc_seeds if method == "mpc" else args.training_seeds):
            name = f"swingup_{method}_seed{seed}"
            runs.append(summarise(name, method, seed, run_one(work, name, method, problem, seed, seeds, [])))
    baseline_file = work / "baselines.json"
    if not baseline_file.exists():
        write_json({"results": [*baselines(problem, seeds), energy_pump_reference(seeds)]}, baseline_file)
    baseline_rows = json.loads(baseline_file.read_text())["results"]
    per_method = {}
    for method in args.methods:
        means = [r["real_mean"] for r in runs if r["method"] == method]
        per_method[method] = {"mean": float(np.mean(means)), "worst_seed_mean": float(np.min(means)),
                              "target_met": bool(np.mean(means) >= TARGET_MEAN and np.min(means) >= TARGET_EACH)}
    report: dict[str, Any] = {
        "command": " ".join(["python scripts/bench_pendulum_control.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread per run",
        "model": args.model, "seeds": seeds, "episodes": args.episodes, "real_physics_steps_for_training":
        DATA_PHYSICS_STEPS, "runs": runs, "baselines": baseline_rows, "per_method": per_method}
    if not args.no_rotation and "jomega" not in args.methods:
        print("[bench] rotation skipped: it starts from the swing-up J(ω) policy; add jomega to --methods")
    elif not args.no_rotation:
        rotation_problem = make_problem(args.model, make_task("rotation", ROTATION_GOAL))
        init = work / f"swingup_jomega_seed{args.training_seeds[0]}"
        stored = run_one(work, "rotation_jomega_seed0", "jomega", rotation_problem, 0, seeds, ROTATION_SETTINGS, init)
        result = stored["results"][0]
        velocity = float(np.mean(result["mean_velocity"]))
        demo_steps = rotation_demonstration(ROTATION_GOAL, rotation_problem.action_repeat).physics_steps
        report["rotation"] = {"goal_velocity": ROTATION_GOAL, "mean_velocity": velocity,
                              "demonstration_physics_steps": demo_steps,
                              "per_episode_mean_velocity": result["mean_velocity"],
                              "steady_velocity": float(np.mean(result["steady_velocity"])),
                              "error_fraction": abs(velocity / ROTATION_GOAL - 1), "settings": ROTATION_SETTINGS,
                              "init": str(init), "run": summarise("rotation_jomega_seed0", "jomega", 0, stored)}
    report["wall_seconds"] = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    write_json(report, out / "pendulum_control.json")
    best = max((r for r in runs if r["method"] == "jomega"), key=lambda r: r["real_mean"], default=None)
    if best is not None:
        filmstrip(work / best["run"] / "bench_eval" / "episode.gif", out / "pendulum_swingup.png")
    (out / "pendulum_control.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
