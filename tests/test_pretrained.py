"""The shipped pretrained pendulum checkpoint still identifies the system with the current code."""

import json

import pytest

from latentworld.common.data import load_dataset
from latentworld.evaluation.metrics import evaluate_model
from latentworld.experiment.checkpoint import PRETRAINED_DIR, load_model


@pytest.fixture(scope="module")
def pendulum_data(tmp_path_factory):
    from envs.generate import main as generate

    path = tmp_path_factory.mktemp("data") / "pendulum.npz"
    assert generate(["pendulum", "--out", str(path), "--no-picture", "--workers", "2"]) == 0  # default, seed 0
    return path


def test_shipped_checkpoint_records_its_command_and_reaches_the_r2_target(pendulum_data):
    run = PRETRAINED_DIR / "pendulum_ekvae"
    meta = json.loads((run / "meta.json").read_text())
    assert "scripts/bench_pendulum.py" in meta["produced_by"] and meta["step"] > 0
    model, _, _ = load_model("pendulum_ekvae", expect_kind="ekvae")
    metrics = evaluate_model(model, load_dataset(pendulum_data, "train"), load_dataset(pendulum_data, "test"))
    assert metrics["r2_hinge_angle"] >= 0.99 and metrics["r2_hinge_velocity"] >= 0.99
    shipped = json.loads((run / "eval.json").read_text())["metrics"]
    assert metrics["r2_hinge_velocity"] == pytest.approx(shipped["r2_hinge_velocity"], abs=1e-3)
