"""The reacher's geometry, its target in videos, and the goal-conditioned reach task end to end."""

import json

import numpy as np
import pytest
import torch

from agents.tasks import ReachGoals, make_task, pose_observation
from envs import RealEnv
from envs.reacher_kinematics import TwoLinkArm, target_position


@pytest.fixture(scope="module")
def reacher():
    env = RealEnv("reacher_angles", render_mode="rgb_array")
    yield env
    env.close()


def test_arm_lengths_and_forward_kinematics_match_mujoco(reacher):
    arm = TwoLinkArm.of(reacher)
    assert (arm.upper, arm.fore) == pytest.approx((0.12, 0.12))
    rng = np.random.default_rng(0)
    for _ in range(20):
        state = reacher.sample_initial_state(rng)
        reacher.set_state(state)
        finger = reacher.physics.named.data.geom_xpos["finger", :2]
        np.testing.assert_allclose(arm.finger(state[:2]), finger, atol=1e-9)


def test_inverse_kinematics_reaches_every_target_and_picks_the_nearest_solution(reacher):
    arm = TwoLinkArm.of(reacher)
    rng = np.random.default_rng(1)
    for _ in range(50):  # reacher-easy's targets: radius uniform in [0.05, 0.20]
        radius, angle = rng.uniform(0.05, 0.20), rng.uniform(0, 2 * np.pi)
        point = radius * np.array([np.cos(angle), np.sin(angle)])
        solutions = arm.solutions(point)
        assert len(solutions) == 2
        np.testing.assert_allclose(arm.finger(solutions), np.stack([point, point]), atol=1e-12)
        assert (np.abs(solutions[:, 1]) <= np.radians(160)).all()
        current = solutions[1] + rng.normal(0, 0.05, 2)
        np.testing.assert_allclose(arm.nearest_solution(point, current), solutions[1])
    with pytest.raises(ValueError, match="out of the arm's reach"):
        arm.nearest_solution(np.array([0.3, 0.0]), np.zeros(2))
    assert len(arm.solutions(np.array([0.001, 0.0]))) == 0  # the wrist cannot fold that far


def test_render_draws_the_target_that_observations_leave_out():
    env = RealEnv("reacher_rgb", render_mode="rgb_array")
    try:
        frame, _ = env.reset(seed=4)
        scene = env.render()
        differs = np.abs(scene.astype(int) - frame).sum(-1) > 0
        assert differs.any(), "the target is not drawn"
        # The difference lies around the target: project it with the known top-down camera geometry.
        ys, xs = np.nonzero(differs)
        target = target_position(env)
        assert np.sign(xs.mean() - 31.5) == np.sign(target[0])
        assert np.sign(31.5 - ys.mean()) == np.sign(target[1])
    finally:
        env.close()


def test_pose_observation_and_reach_goal_put_the_finger_on_the_target(reacher):
    class FeatureModel(torch.nn.Module):  # q(a|x) = x: the goal is the pose's observation itself
        obs_shape = (4,)

        def encode_position(self, x):
            return x

    goals = ReachGoals(FeatureModel(), "reacher_angles")
    try:
        for seed in range(5):
            reacher.reset(seed=seed)
            angles = goals.angles(reacher)
            np.testing.assert_allclose(goals.arm.finger(angles), target_position(reacher), atol=1e-9)
            goal = goals(reacher).numpy()
            np.testing.assert_allclose(goal, pose_observation(reacher, angles), atol=1e-6)
            np.testing.assert_allclose(np.arctan2(goal[1::2], goal[::2]), angles, atol=1e-5)
    finally:
        goals.close()


def test_reach_task_checks_its_env():
    assert make_task("reach").goal_conditioned
    assert make_task("reach", env_name="reacher_rgb").env_name == "reacher_rgb"
    with pytest.raises(ValueError, match="reach task runs on"):
        make_task("reach", env_name="pendulum")
    with pytest.raises(ValueError, match="goal_velocity belongs"):
        make_task("reach", goal_velocity=2.0)


def test_reach_policy_trains_on_per_rollout_goals_saves_and_acts_in_the_real_reacher(tiny_reacher_run, tmp_path):
    from agents.evaluate import evaluate_policy_dir
    from agents.mpc import CEMPlanner, MPCConfig
    from agents.problem import make_problem
    from agents.training import train_policy
    from latentworld.common.errors import ConfigError

    problem = make_problem(tiny_reacher_run, make_task("reach"), validation_size=8)
    assert problem.goals.shape[1] == 3
    assert problem.validation_goals.shape == (len(problem.validation_starts), 3)  # one goal per start
    assert problem.observation_dim == 5 + 3 and problem.observation_scaling()[0].shape == (8,)
    goals = problem.training_goals(4, torch.Generator().manual_seed(0))
    assert goals.shape == (4, 3)
    with pytest.raises(ConfigError, match="jomega or plans with mpc"):
        train_policy("ppo", problem, tmp_path / "ppo")
    settings = ["iterations=3", "batch_size=8", "horizon=3", "validate_every=1", "validation_horizon=3"]
    train_policy("jomega", problem, tmp_path / "policy", settings, progress=False)
    report = evaluate_policy_dir(tmp_path / "policy", [7], tmp_path / "eval", with_baselines=False, progress=False)
    episode = report["results"][0]
    assert episode["physics_steps"] == 1000 and 0 <= episode["returns"][0] <= 1000
    # Each episode records its goal pose and where the arm ended, in the JSON too.
    reacher = RealEnv("reacher_angles")
    reacher.reset(seed=7)
    want = ReachGoals(problem.model, "reacher_angles").angles(reacher)
    reacher.close()
    np.testing.assert_allclose(episode["goal_angles"][0], want, atol=1e-4)
    assert len(episode["final_state"][0]) == 4
    saved = json.loads((tmp_path / "eval" / "real_eval.json").read_text())["results"][0]
    assert saved["goal_angles"] == episode["goal_angles"] and saved["final_state"] == episode["final_state"]
    assert (tmp_path / "eval" / "episode.gif").stat().st_size > 0
    planner = CEMPlanner(problem, MPCConfig(plan_horizon=3, samples=16, elites=4, iterations=1))
    observation = torch.cat([problem.validation_starts[0], problem.validation_goals[0]]).numpy()
    action = planner.act(observation)
    assert action.shape == (2,) and torch.equal(planner.goal, problem.validation_goals[0])


@pytest.mark.filterwarnings("ignore:precision. bfloat16 asked for")  # emulated on CPUs without AMX: slow, not wrong
def test_an_rgb_model_trains_from_uint8_frames_and_its_reach_policy_acts_in_the_real_reacher(tmp_path):
    from agents.evaluate import evaluate_policy_dir
    from agents.problem import make_problem
    from agents.training import train_policy
    from envs.generate import main as generate
    from latentworld.common.data import load_dataset
    from latentworld.experiment.config import load_config
    from latentworld.training.trainer import Trainer

    data = tmp_path / "reacher_rgb.npz"
    assert generate(["reacher_rgb", "--out", str(data), "--n-sequences", "8", "--seq-len", "6", "--no-picture"]) == 0
    frames = load_dataset(data).obs
    assert frames.dtype == torch.uint8 and frames.shape[2:] == (3, 64, 64)
    config = load_config("configs/debug.yaml", [f"data={data}", "threads=1", "model.obs_kind=image_conv",
                                                "model.conv_width=4", "model.dim_z=6", "model.dim_a=4",
                                                "precision=bfloat16", "steps=8", "schedule.calibration_steps=4"])
    Trainer(config, tmp_path / "run").fit(progress=False)
    problem = make_problem(str(tmp_path / "run"), make_task("reach", env_name="reacher_rgb"), validation_size=4)
    assert problem.goals.shape[1] == 4
    settings = ["iterations=2", "batch_size=4", "horizon=3", "validate_every=1", "validation_horizon=3"]
    train_policy("jomega", problem, tmp_path / "policy", settings, progress=False)
    report = evaluate_policy_dir(tmp_path / "policy", [3], tmp_path / "eval", with_baselines=False, progress=False)
    assert report["results"][0]["physics_steps"] == 1000 and 0 <= report["results"][0]["returns"][0] <= 1000
