"""Real-env evaluation: full episodes of a controller in the real MuJoCo env, beside random and zero actions.

The score is the env's own return (dm_control: 1000 physics steps per episode), per seed and as
mean ± std; for the rotation task also the mean true angular velocity against the goal. A video
shows, per step, the real scene (with the task's target, if it has one) | the belief mean, decoded
and drawn the same way | the reward so far.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
from tqdm import tqdm

from agents.belief_env import BeliefEnv
from agents.controllers import Controller, RandomController, ZeroController
from agents.problem import LatentProblem
from latentworld.common.fileio import atomic_target, check_output_dir


def run_episode(env: BeliefEnv, controller: Controller, seed: int, record: bool = False) -> dict[str, Any]:
    """One full episode. Returns ``return``, ``mean_velocity`` (true, rad/s, over the episode, of the
    last joint), ``steady_velocity`` (over its second half), ``steps``, ``final_state`` (the true state
    at the end: angles, then velocities), for a goal-conditioned task ``goal_angles`` (the joint angles
    of the episode's goal pose) and, if ``record``, the pictures of the real scene and of the belief,
    and the rewards of every step."""
    controller.reset()
    observation, info = env.reset(seed=seed)
    goal_angles = info.get("goal_angles")
    rewards, velocities, scenes, beliefs = [0.0], [], [], []
    done = False
    while True:
        if record:
            scenes.append(env.render())
            beliefs.append(env.render_belief(observation))
        if done:
            break
        action = controller.act(observation)
        observation, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        rewards.append(float(reward))
        velocities.append(float(info["state"][-1]))
    result = {"return": float(np.sum(rewards)), "mean_velocity": float(np.mean(velocities)),
              "steady_velocity": float(np.mean(velocities[len(velocities) // 2:])), "steps": len(rewards) - 1,
              "final_state": np.asarray(info["state"], np.float64).round(4).tolist()}
    if goal_angles is not None:
        result["goal_angles"] = np.asarray(goal_angles, np.float64).round(4).tolist()
    if record:
        result.update(scenes=np.stack(scenes), beliefs=np.stack(beliefs), rewards=np.array(rewards))
    return result


def evaluate_controller(problem: LatentProblem, controller: Controller, seeds: list[int], label: str,
                        progress: bool = True, record_first: bool = False) -> dict[str, Any]:
    """Run ``controller`` on every seed. Returns per-seed returns, mean ± std, mean velocities, wall time."""
    env = BeliefEnv(problem.model, problem.task.env_name, problem.action_repeat, problem.episode_goals())
    start, episodes, recording = time.perf_counter(), [], None
    try:
        for i, seed in enumerate(tqdm(seeds, desc=f"real {label}", disable=not progress, unit="episode")):
            episode = run_episode(env, controller, seed, record=record_first and i == 0)
            if "scenes" in episode:
                recording = {key: episode.pop(key) for key in ("scenes", "beliefs", "rewards")}
                recording["seconds_per_step"] = env.real.dt
            episodes.append(episode)
        physics_steps = env.physics_steps
    finally:
        env.close()
    returns = np.array([e["return"] for e in episodes])
    summary = {"label": label, "seeds": list(seeds), "returns": returns.tolist(), "mean_return": float(returns.mean()),
               "std_return": float(returns.std()), "min_return": float(returns.min()),
               "mean_velocity": [e["mean_velocity"] for e in episodes],
               "steady_velocity": [e["steady_velocity"] for e in episodes],
               "final_state": [e["final_state"] for e in episodes], "physics_steps": int(physics_steps),
               "wall_seconds": time.perf_counter() - start}
    if problem.task.goal_conditioned:
        summary["goal_angles"] = [e["goal_angles"] for e in episodes]
    if problem.task.goal_velocity is not None:
        velocity = np.array(summary["mean_velocity"])
        summary["goal_velocity"] = problem.task.goal_velocity
        summary["velocity_error_fraction"] = float(np.abs(velocity.mean() / problem.task.goal_velocity - 1))
    if recording is not None:
        summary["recording"] = recording
    return summary


def baselines(problem: LatentProblem, seeds: list[int], progress: bool = True) -> list[dict[str, Any]]:
    """Random and zero actions on the same seeds."""
    dim_u = problem.action_low.shape[0]
    random = RandomController(problem.action_low.numpy(), problem.action_high.numpy(), seed=seeds[0])
    return [evaluate_controller(problem, random, seeds, "random", progress),
            evaluate_controller(problem, ZeroController(dim_u), seeds, "zero", progress)]


def format_table(results: list[dict[str, Any]]) -> str:
    """Mean ± std and per-seed returns, one row per controller."""
    lines = [f"{'controller':<10} {'return mean ± std':>20} {'min':>7}  per seed"]
    for r in results:
        per_seed = " ".join(f"{x:.0f}" for x in r["returns"])
        extra = ""
        if "goal_velocity" in r:
            extra = f"  mean velocity {np.mean(r['mean_velocity']):+.2f} rad/s (goal {r['goal_velocity']:+.2f})"
        lines.append(f"{r['label']:<10} {r['mean_return']:>11.1f} ± {r['std_return']:<6.1f} {r['min_return']:>7.0f}  "
                     f"{per_seed}{extra}")
    return "\n".join(lines)


MAX_GIF_FPS = 25.0  # faster GIFs are slowed down by viewers; extra env steps are skipped instead


def write_video(problem: LatentProblem, recording: dict[str, np.ndarray], path: Path) -> Path:
    """A GIF of real scene | belief | cumulative-reward bar, one panel each (``recording`` from
    :func:`run_episode`: ``scenes`` and ``beliefs`` ``(T, H, W, 3)`` uint8, ``rewards`` ``(T,)``, and the
    env's ``seconds_per_step``), in real time: one frame per env step, or every k-th step when that is
    faster than :data:`MAX_GIF_FPS`."""
    real, decoded, rewards = recording["scenes"], recording["beliefs"], recording["rewards"]
    scale = max(1, 128 // real.shape[1])
    real = real.repeat(scale, 1).repeat(scale, 2)
    decoded = decoded.repeat(scale, 1).repeat(scale, 2)
    height = real.shape[1]
    cumulative = np.cumsum(rewards)
    total_possible = max(len(rewards) - 1, 1) * problem.action_repeat
    bars = np.zeros((len(rewards), height, 24, 3), np.uint8)
    for t, (value, now) in enumerate(zip(cumulative, rewards)):
        fill = round(height * min(value / total_possible, 1.0))
        bars[t, height - fill:, :, 1] = 200  # green: return so far, of the episode's maximum
        bars[t, :, :4, 0] = 255 if now > 0 else 60  # red strip: reward at this step
    separator = np.full((len(rewards), height, 2, 3), 128, np.uint8)
    video = np.concatenate([real, separator, decoded, separator, bars], axis=2)
    step_seconds = recording["seconds_per_step"]
    every = max(1, round(1 / (step_seconds * MAX_GIF_FPS)))
    with atomic_target(path, suffix=path.suffix) as tmp:
        iio.imwrite(tmp, video[::every], duration=1000 * every * step_seconds, loop=0)
    return path


def write_json(results: dict[str, Any], path: Path) -> Path:
    """The results as JSON (recordings dropped), written atomically."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "recording"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    with atomic_target(path) as tmp:
        tmp.write_text(json.dumps(strip(results), indent=2))
    return path


EVALUATION_OUTPUTS = ("real_eval.json", "episode.gif")


def evaluate_policy_dir(policy_dir: str | Path, seeds: list[int], out: str | Path, model: str | None = None,
                        with_baselines: bool = True, progress: bool = True) -> dict[str, Any]:
    """Evaluate a saved policy on ``seeds`` (beside random and zero actions unless ``with_baselines`` is
    False); write ``out/real_eval.json`` and ``out/episode.gif`` (the first seed).

    Returns:
        The report written to JSON, plus the paths under ``"json"`` and ``"video"``.
    """
    from agents.saved_policy import load_policy

    out = check_output_dir(Path(out), EVALUATION_OUTPUTS, "--out")  # before minutes of episodes
    controller, problem, meta = load_policy(policy_dir, model=model)
    result = evaluate_controller(problem, controller, seeds, meta["method"], progress, record_first=True)
    results = [result] + (baselines(problem, seeds, progress) if with_baselines else [])
    video = write_video(problem, result.pop("recording"), out / EVALUATION_OUTPUTS[1])
    report = {"policy": str(policy_dir), "task": meta["task"], "model": meta["model"],
              "training_report": {k: v for k, v in meta["report"].items() if k != "history"}, "results": results}
    path = write_json(report, out / EVALUATION_OUTPUTS[0])
    return {**report, "json": str(path), "video": str(video)}
