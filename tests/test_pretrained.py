"""The shipped pretrained checkpoints still identify their systems with the current code, and back the
latent env ids with no arguments."""

import json
import subprocess
import sys

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import latentworld  # noqa: F401  (registers the env ids)
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


@pytest.fixture(scope="module")
def reacher_data(tmp_path_factory):
    from envs.generate import main as generate

    path = tmp_path_factory.mktemp("data") / "reacher_angles.npz"
    assert generate(["reacher_angles", "--out", str(path), "--no-picture"]) == 0  # default design, seed 0
    return path


def test_shipped_reacher_model_identifies_the_angles_on_fresh_data(reacher_data):
    run = PRETRAINED_DIR / "reacher_angles_ekvae"
    meta = json.loads((run / "meta.json").read_text())
    assert "scripts/bench_reacher.py" in meta["produced_by"]
    model, _, _ = load_model("reacher_angles_ekvae", expect_kind="ekvae")
    metrics = evaluate_model(model, load_dataset(reacher_data, "train"), load_dataset(reacher_data, "test"))
    shipped = json.loads((run / "eval.json").read_text())["metrics"]
    for name in ("shoulder_angle", "wrist_angle", "shoulder_velocity", "wrist_velocity"):
        assert metrics[f"r2_{name}"] == pytest.approx(shipped[f"r2_{name}"], abs=0.03), name
    assert min(metrics["r2_shoulder_angle"], metrics["r2_wrist_angle"]) >= 0.99


def test_velocity_probe_finds_the_shipped_reacher_models_velocities_beyond_the_linear_read_out(reacher_data, tmp_path):
    out = tmp_path / "probe.json"
    subprocess.run([sys.executable, "scripts/probe_velocity.py", "reacher_angles_ekvae", "--data", str(reacher_data),
                    "--out", str(out)], check=True, capture_output=True)
    result = json.loads(out.read_text())
    for name, row in result["velocities"].items():
        # In the trajectory (differenced decoded angles) and in z with the mixing weights, the velocities
        # are read out better than linearly from z_t alone.
        assert row["finite_difference"] >= 0.98, name
        assert row["ols_z_by_mixing"] > row["ols_z_pair"] > row["ols_z"], name
        # The velocity coordinates turn with the wrist's angle (on which the mass matrix depends), not
        # the shoulder's; and z does not hold the momenta instead.
        assert row["ols_z_by_wrist_angle"] > max(row["ols_z_by_shoulder_angle"], row["ols_z"]) + 0.03, name
        assert row["ols_z_to_momentum"] < row["ols_z"], name
    low, high = result["inverse_mass_diagonal_range"]["wrist"]
    assert high > 3 * low  # the wrist's inverse mass depends strongly on the arm's pose


def test_wrist_fold_probe_finds_the_sign_of_the_bend_in_the_shipped_angle_model(reacher_data, tmp_path):
    out = tmp_path / "fold.json"
    subprocess.run([sys.executable, "scripts/probe_wrist_fold.py", "reacher_angles_ekvae", "--data", str(reacher_data),
                    "--out", str(out)], check=True, capture_output=True)
    r2 = json.loads(out.read_text())["ols_r2"]
    # The joint-angle model keeps the wrist as (cos, sin): both halves of its bend apart, linearly.
    assert min(r2["cos(wrist)"], r2["sin(wrist)"], r2["wrist (cos, sin)"]) >= 0.99
    assert r2["sign(wrist)"] > 0.7
    assert r2["second link's world angle (cos, sin)"] < 0.3  # not the link's angle in the plane


def test_wrist_fold_probe_refuses_a_model_that_is_not_a_reacher():
    result = subprocess.run([sys.executable, "scripts/probe_wrist_fold.py", "pendulum_ekvae"],
                            check=False, capture_output=True, text=True)
    assert result.returncode == 2 and "is not a reacher_angles or reacher_rgb model" in result.stderr
    missing = subprocess.run([sys.executable, "scripts/probe_wrist_fold.py", "no/such/run"],
                             check=False, capture_output=True, text=True)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_goal_landscape_probe_finds_the_rgb_models_trap_where_the_angle_model_has_none(tmp_path):
    def landscape(model: str) -> dict:
        out = tmp_path / f"{model}.json"
        subprocess.run([sys.executable, "scripts/probe_goal_landscape.py", model, "--goal", "2.2257", "2.4691",
                        "--start", "2.81", "-2.40", "--random", "40", "--out", str(out)], check=True, capture_output=True)
        return json.loads(out.read_text())

    # A real episode's goal (tuning seed 109) and the pose MPC stopped at, the wrist bent the other way.
    rgb, angles = landscape("reacher_rgb_ekvae"), landscape("reacher_angles_ekvae")
    assert rgb["path_cost"][-1] == angles["path_cost"][-1] == 0.0
    # The RGB model puts the stop nearer the goal than 9 in 10 random poses, behind a hill: a trap.
    assert rgb["path_cost"][0] < rgb["random_cost_quantiles"]["10%"]
    assert max(rgb["path_cost"]) > 10 * rgb["path_cost"][0]
    # The joint-angle model does not: the same pose costs as much as a typical random one.
    assert angles["path_cost"][0] > angles["random_cost_quantiles"]["10%"]
    wrong = subprocess.run([sys.executable, "scripts/probe_goal_landscape.py", "pendulum_ekvae", "--goal", "0", "1",
                            "--start", "0", "0"], check=False, capture_output=True, text=True)
    assert wrong.returncode == 2 and "task 'reach' needs a model of" in wrong.stderr and "Traceback" not in wrong.stderr


def test_latent_reacher_works_with_no_arguments_and_goal_conditioned(reacher_data):
    env = gym.make("LatentReacher-v0")
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (6,)
    conditioned = gym.make("LatentReacher-v0", goal_conditioned=True, data=str(reacher_data))
    obs, info = conditioned.reset(seed=0)
    assert obs.shape == (10,) and info["goal"].shape == (4,)
    _, reward, *_ = conditioned.step(conditioned.action_space.sample())
    assert reward <= 0


def test_shipped_rgb_reacher_model_scores_its_recorded_r2_on_fresh_frames_and_backs_the_env(tmp_path):
    from envs.generate import main as generate

    data = tmp_path / "reacher_rgb.npz"
    assert generate(["reacher_rgb", "--out", str(data), "--n-sequences", "100", "--seed", "7", "--no-picture",
                     "--workers", "2"]) == 0
    run = PRETRAINED_DIR / "reacher_rgb_ekvae"
    assert "reacher_rgb_ekvae.yaml" in json.loads((run / "meta.json").read_text())["produced_by"]
    model, _, _ = load_model("reacher_rgb_ekvae", expect_kind="ekvae")
    metrics = evaluate_model(model, load_dataset(data, "train"), load_dataset(data, "test"))
    shipped = json.loads((run / "eval.json").read_text())["metrics"]
    for name in ("shoulder_angle", "knn_shoulder_angle"):  # the wrist scores need more than 100 sequences
        assert metrics[f"r2_{name}"] == pytest.approx(shipped[f"r2_{name}"], abs=0.05), name
    env = gym.make("LatentReacher-v0", model="reacher_rgb_ekvae")  # its goal.png: the arm reaching straight up
    obs, _ = env.reset(seed=0)
    assert obs.shape == (6,)
