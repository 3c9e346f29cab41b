"""Data-parallel training with torchrun: 2 CPU processes (gloo) against 1 with the same global batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from synthetic import write_synthetic_pendulum

from latentworld.experiment.checkpoint import load_model
from latentworld.experiment.config import load_config
from latentworld.experiment.history import read_history
from latentworld.training.trainer import Trainer

SETTINGS = ["threads=1", "steps=20", "eval_every=2", "batch_size=8"]


def torchrun(data: Path, run_dir: Path, *extra: str, background: bool = False) -> subprocess.Popen:
    """``torchrun --standalone --nproc_per_node=2 -m latentworld.cli train ...`` on the debug preset."""
    settings = [part for s in [f"data={data}", *SETTINGS] for part in ("--set", s)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "latentworld.cli", "train", "--config", "configs/debug.yaml", *settings,
               "--run-dir", str(run_dir), "--no-progress", *extra]
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not background:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output
    return process


@pytest.fixture(scope="module")
def single_process(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ddp")
    data = write_synthetic_pendulum(root / "pendulum.npz", n=24)
    Trainer(load_config("configs/debug.yaml", [f"data={data}", *SETTINGS]), root / "one").fit(progress=False)
    return data, root / "one"


def assert_same_run(run: Path, reference: Path) -> None:
    model, _, meta = load_model(run)
    expected, _, _ = load_model(reference)
    assert meta["world_size"] == 2 and meta["step"] == 20
    for name, value in expected.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=1e-5, msg=name)
    rows, reference_rows = read_history(run), read_history(reference)
    assert [row["step"] for row in rows] == [row["step"] for row in reference_rows]
    for key in ("rewo/d0", "rewo/lambda", "train/distortion_per_dim"):
        assert rows[-1][key] == pytest.approx(reference_rows[-1][key], rel=1e-5), key


def test_two_processes_train_as_one_with_the_same_global_batch(single_process, tmp_path):
    data, reference = single_process
    torchrun(data, tmp_path / "two")
    assert_same_run(tmp_path / "two", reference)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["checkpoint", "history.jsonl",
                                                                      "run_config.yaml", "tb"]


def test_killed_torchrun_resumes_to_the_same_weights(single_process, tmp_path):
    data, reference = single_process
    run = tmp_path / "killed"
    process = torchrun(data, run, background=True)
    meta = run / "checkpoint" / "meta.json"
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if meta.exists() and json.loads(meta.read_text() or "{}").get("step", 0) >= 6:
            break
        time.sleep(0.02)
    assert process.poll() is None, "training ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)  # torchrun and both workers
    process.wait()
    assert json.loads(meta.read_text())["step"] < 20
    torchrun(data, run, "--resume")
    assert_same_run(run, reference)
