"""Fault injection: training killed (SIGKILL) at random moments, many times, then resumed.

The resumed run must end with weights bit-identical to an uninterrupted run, every history row
exactly once, and no stray file in the run directory. Children start from a forkserver that has
already imported torch, so a kill-and-resume cycle costs a fraction of a second.
"""

from __future__ import annotations

import multiprocessing
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from synthetic import write_synthetic_pendulum
from training_child import resume_training

from latentworld.experiment.checkpoint import load_model, read_meta, resolve_checkpoint
from latentworld.experiment.config import load_config
from latentworld.experiment.history import read_history
from latentworld.training.trainer import Trainer

KILLS = 20
SETTINGS = ["threads=1", "steps=80", "eval_every=4", "schedule.calibration_steps=10"]


@pytest.mark.slow
def test_random_kills_then_resume_give_the_uninterrupted_run(tmp_path):
    data = write_synthetic_pendulum(tmp_path / "pendulum.npz")
    config = load_config("configs/debug.yaml", [f"data={data}", *SETTINGS])
    straight = Trainer(config, tmp_path / "straight")
    straight.fit(progress=False)

    context = multiprocessing.get_context("forkserver")
    # torch._dynamo: imported by the first optimiser, 2 s that each child would pay again.
    context.set_forkserver_preload(["training_child", "torch._dynamo"])
    # How long a child trains, uninterrupted (a child is slower than this warm process): the kills
    # below are spread over that time.
    started = context.Event()
    child = context.Process(target=resume_training, args=(config, str(tmp_path / "timed"), started))
    child.start()
    try:
        assert started.wait(timeout=60), "the timing child did not start training"
        start = time.perf_counter()
        child.join(timeout=300)
        duration = time.perf_counter() - start
        assert child.exitcode == 0, f"the timing child ended with {child.exitcode}"
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    # One kill in four lands during a child's start-up (loading, repairing), the others at a random
    # moment of training, spread so that together they cover about 80 % of it.
    run_dir, rng, kills, finished_early, killed_at = tmp_path / "killed", random.Random(0), 0, 0, set()
    # Under load (other test workers) a child trains slower than when it was timed, and 20 kills may
    # cover too little of the run; kill on (up to 3 × KILLS) until 3 training stages have been hit.
    while kills < KILLS or (len(killed_at) < 3 and kills < 3 * KILLS):
        started = context.Event()
        child = context.Process(target=resume_training, args=(config, str(run_dir), started))
        child.start()
        if rng.random() < 0.25:
            child.join(timeout=rng.uniform(0, 0.3))
        elif started.wait(timeout=60):
            child.join(timeout=rng.uniform(0, 1.6 * duration / KILLS))
        if child.is_alive():
            child.kill()
        child.join()
        if child.exitcode == -signal.SIGKILL:
            kills += 1
            if (run_dir / "checkpoint").exists() or (run_dir / ".checkpoint.old").exists():
                killed_at.add(read_meta(resolve_checkpoint(run_dir))["step"])
            continue
        assert child.exitcode == 0
        finished_early += 1
        assert finished_early < 5, "the kills come too late to interrupt training"
        run_dir = tmp_path / f"killed_{finished_early}"  # start over: every kill must hit a live run
        kills, killed_at = 0, set()
    assert len(killed_at) >= 3, f"the kills hit too few training stages: {sorted(killed_at)}"
    resume_training(config, str(run_dir))

    resumed, _, meta = load_model(run_dir)
    assert meta["step"] == config.steps
    for name, value in straight.model.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
    assert [row["step"] for row in read_history(run_dir)] == [row["step"] for row in read_history(
        tmp_path / "straight")]
    assert sorted(p.name for p in Path(run_dir).iterdir()) == ["checkpoint", "history.jsonl", "run_config.yaml", "tb"]
    assert sorted(p.name for p in (Path(run_dir) / "checkpoint").iterdir()) == [
        "config.yaml", "meta.json", "model.pt", "trainer_state.pt"]
