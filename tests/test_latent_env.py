import json
import pickle
from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from synthetic import write_synthetic_pendulum

import latentworld  # noqa: F401  (registers the ids)
from agents.sb3_env import SB3LatentVecEnv
from latentworld.common.errors import DatasetError, GoalError
from latentworld.experiment.checkpoint import CheckpointError
from latentworld.experiment.config import load_config
from latentworld.latent_envs.latent_env import LatentEnv
from latentworld.latent_envs.latent_vec_env import LatentVectorEnv
from latentworld.training.trainer import Trainer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    data = write_synthetic_pendulum(root / "pendulum.npz", n=12, steps=6)
    Trainer(load_config("configs/debug.yaml", [f"data={data}", "threads=1"]), root / "run").fit(progress=False)
    return str(root / "run")


def make(checkpoint, **kwargs):
    kwargs = {"model": checkpoint, "goal": [0.0, 1.0], "horizon": 7, **kwargs}
    return gym.make("LatentPendulum-v0", **kwargs)


def test_gymnasium_and_sb3_env_checkers_pass(checkpoint):
    for kwargs in ({}, {"reward": "vel", "goal": [0.5]}, {"initial": "posterior"},
                   {"goal": None, "goal_conditioned": True}):
        env = make(checkpoint, **kwargs).unwrapped
        check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=False)


def test_same_seed_same_rollout_and_pickle_round_trip(checkpoint):
    def rollout(env, seed):
        obs = [env.reset(seed=seed)[0]]
        rewards = []
        for t in range(7):
            o, r, terminated, truncated, _ = env.step(np.array([np.sin(t)], np.float32))
            obs.append(o)
            rewards.append(r)
        assert truncated and not terminated
        return np.array(obs), np.array(rewards)

    env = make(checkpoint)
    a, b, c = rollout(env, 5), rollout(env, 5), rollout(env, 6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    env.reset(seed=1)
    env.step(np.array([0.3], np.float32))
    clone = pickle.loads(pickle.dumps(env.unwrapped))
    assert len(pickle.dumps(env.unwrapped)) < 20_000  # the model is not pickled, only the arguments
    for _ in range(3):
        np.testing.assert_array_equal(env.step(np.array([0.1], np.float32))[0], clone.step(np.array([0.1], np.float32))[0])


def test_reward_is_negative_squared_distance_on_the_position_or_velocity_dims(checkpoint):
    env = make(checkpoint, goal=[0.25, -0.5]).unwrapped
    env.reset(seed=0)
    obs, reward, *_ = env.step(np.array([0.0], np.float32))
    assert reward == pytest.approx(-((obs[0] - 0.25) ** 2 + (obs[1] + 0.5) ** 2), rel=1e-5)
    env = make(checkpoint, reward="vel", goal=[2.0]).unwrapped
    env.reset(seed=0)
    obs, reward, *_ = env.step(np.array([0.0], np.float32))
    assert reward == pytest.approx(-((obs[2] - 2.0) ** 2), rel=1e-5)


def test_goals_from_images_and_sequences(checkpoint, tmp_path):
    env = make(checkpoint).unwrapped
    model = env.setup.core.model
    frames = (np.random.default_rng(0).random((3, 16, 16, 1)) * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "goal.png", frames[0, :, :, 0])
    np.save(tmp_path / "goals.npy", frames)
    np.savez(tmp_path / "seq.npz", obs=frames, actions=np.zeros((3, 1), np.float32))
    single = make(checkpoint, goal=str(tmp_path / "goal.png")).unwrapped.setup.goal
    want = model.encoder(torch.from_numpy(frames[:1]).permute(0, 3, 1, 2).float() / 255)[0][0]
    torch.testing.assert_close(single, want)
    assert make(checkpoint, goal=str(tmp_path / "goals.npy")).unwrapped.setup.goal.shape == (2,)
    assert make(checkpoint, goal=str(tmp_path / "seq.npz"), reward="vel").unwrapped.setup.goal.shape == (1,)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"model": "/nonexistent/run"}, CheckpointError, "does not exist"),
    ({"goal": [1.0, 2.0, 3.0, 4.0]}, ValueError, "needs 2 values"),
    ({"reward": "speed"}, ValueError, "reward must be"),
    ({"goal": None}, ValueError, "no default goal"),
])
def test_bad_arguments_give_one_clear_error(checkpoint, kwargs, error, match):
    with pytest.raises(error, match=match):
        make(checkpoint, **kwargs)


def test_goal_image_of_wrong_shape_and_other_model_kind_are_refused(checkpoint, tmp_path):
    iio.imwrite(tmp_path / "big.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(GoalError, match="do not match the model's frames"):
        make(checkpoint, goal=str(tmp_path / "big.png"))
    run = tmp_path / "other"
    run.mkdir()
    for name in ("config.yaml", "model.pt"):
        (run / name).write_bytes((Path(checkpoint) / "checkpoint" / name).read_bytes())
    meta = json.loads((Path(checkpoint) / "checkpoint" / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "model_class": "planet"}))
    with pytest.raises(CheckpointError, match="unknown model class 'planet'"):
        make(str(run))


@pytest.mark.parametrize("action, match", [([2.0], "outside the action space"), ([np.nan], "NaN"),
                                           ([0.1, 0.2], "shape")])
def test_bad_actions_give_one_clear_error(checkpoint, action, match):
    env = make(checkpoint)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.unwrapped.step(np.array(action, np.float32))


def test_vector_env_matches_make_vec_and_autoresets(checkpoint):
    venv = gym.make_vec("LatentPendulum-v0", num_envs=5, vectorization_mode="vector_entry_point",
                        model=checkpoint, goal=[0.0, 1.0], horizon=3)
    assert isinstance(venv, LatentVectorEnv)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (5, 3)
    for t in range(3):
        obs, rewards, terminated, truncated, infos = venv.step(np.zeros((5, 1), np.float32))
    assert truncated.all() and not terminated.any() and infos["final_obs"].shape == (5, 3)
    assert rewards.shape == (5,)
    again = gym.make_vec("LatentPendulum-v0", num_envs=5, vectorization_mode="vector_entry_point",
                         model=checkpoint, goal=[0.0, 1.0], horizon=3)
    np.testing.assert_array_equal(again.reset(seed=0)[0], venv.reset(seed=0)[0])


def test_sb3_trains_on_the_vector_adapter(checkpoint, tmp_path):
    venv = SB3LatentVecEnv(8, seed=0, model=checkpoint, goal=[0.0, 1.0], horizon=5)
    agent = PPO("MlpPolicy", venv, n_steps=16, batch_size=32, n_epochs=1, seed=0, verbose=0)
    agent.set_logger(__import__("stable_baselines3.common.logger", fromlist=["configure"]).configure(
        str(tmp_path / "sb3"), []))
    agent.learn(256)
    assert agent.num_timesteps >= 256


def test_core_is_differentiable_with_respect_to_actions(checkpoint):
    core = LatentEnv(model=checkpoint, goal=[0.0, 1.0]).setup.core
    generator = torch.Generator().manual_seed(0)
    z = core.initial(4, generator)
    u = torch.zeros(4, 1, requires_grad=True)
    total = 0
    for _ in range(3):
        z = core.transition(z, u, generator)
        total = total + core.reward(z, torch.tensor([0.0, 1.0])).sum()
    total.backward()
    assert u.grad is not None and torch.isfinite(u.grad).all() and u.grad.abs().sum() > 0


def test_latent_reacher_goal_conditioned_and_angle_goals(tiny_reacher_run):
    env = gym.make("LatentReacher-v0", model=tiny_reacher_run, goal_conditioned=True, horizon=4).unwrapped
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs.shape == (5 + 3,) and env.action_space.shape == (2,)
    np.testing.assert_array_equal(obs[5:], info["goal"])
    goals = {tuple(env.reset(seed=s)[1]["goal"]) for s in range(6)}
    assert len(goals) > 1  # a new goal per episode
    angle_goal = np.array([1.0, 0.0, 0.0, 1.0], np.float32)  # cos/sin of both joints
    np.save(Path(tiny_reacher_run).parent / "goal.npy", angle_goal[None])
    fixed = gym.make("LatentReacher-v0", model=tiny_reacher_run, goal=str(Path(tiny_reacher_run).parent
                                                                              / "goal.npy")).unwrapped
    assert fixed.setup.goal.shape == (3,)
    with pytest.raises(GoalError, match="needs 4 values"):  # the shipped default model has Da = 4
        gym.make("LatentReacher-v0", goal=[0.0, 0.0, 0.0])


def test_a_data_set_of_another_time_step_is_refused(tiny_reacher_run, tmp_path):
    from envs.generate import main as generate

    other = tmp_path / "repeat2.npz"
    assert generate(["reacher_angles", "--out", str(other), "--n-sequences", "4", "--seq-len", "6",
                     "--action-repeat", "2", "--no-picture"]) == 0
    with pytest.raises(DatasetError, match="action_repeat=2, expected 1"):
        gym.make("LatentReacher-v0", model=tiny_reacher_run, goal_conditioned=True, data=str(other))


def test_cli_imagine_writes_decoded_frames(checkpoint, tmp_path, capsys):
    from latentworld.cli import main

    out = tmp_path / "imagined.png"
    assert main(["imagine", checkpoint, "--goal", "0,1", "--episodes", "2", "--horizon", "3", "--out", str(out)]) == 0
    assert out.exists() and "mean return" in capsys.readouterr().out
    assert main(["imagine", checkpoint, "--goal", "0,1,2,3,4"]) == 2
    assert "needs 2 values" in capsys.readouterr().err
    assert main(["imagine", checkpoint, "--reward", "vel", "--goal", "3.0", "--episodes", "1", "--horizon", "2"]) == 0
    assert main(["imagine", checkpoint, "--goal", "upright.png"]) == 2
    assert "neither an existing file" in capsys.readouterr().err


def test_checkpoint_with_learned_h_has_only_the_state_reward(tmp_path):
    data = write_synthetic_pendulum(tmp_path / "pendulum.npz", n=8, steps=4)
    config = load_config("configs/debug.yaml", [f"data={data}", "threads=1", "steps=2",
                                                  "schedule.calibration_steps=1", "model.learn_h=true"])
    Trainer(config, tmp_path / "run").fit(progress=False)
    with pytest.raises(CheckpointError, match="not split into position and velocity.*use reward='state'"):
        make(str(tmp_path / "run"))
    check_env(make(str(tmp_path / "run"), reward="state", goal=[0.0, 1.0, 0.0]).unwrapped, skip_render_check=True)


@pytest.mark.parametrize("kind, settings", [
    ("dks", ["model.hidden=16", "model.feature_dim=8", "model.rnn_hidden=8", "model.transition_hidden=8"]),
    ("dvbs", ["model.hidden=16", "model.feature_dim=8", "model.recognition_hidden=8", "model.num_bases=2"]),
])
def test_baselines_without_a_position_split_work_with_a_whole_state_goal(kind, settings, tmp_path):
    """A goal image gives the goal z through the model's filter; the reward is −‖z − z_g‖²."""
    data = write_synthetic_pendulum(tmp_path / "pendulum.npz", n=8, steps=4)
    config = load_config(f"configs/pendulum_{kind}.yaml", [f"data={data}", "threads=1", "steps=2", "batch_size=4",
                                                          "schedule.calibration_steps=1", *settings])
    Trainer(config, tmp_path / "run").fit(progress=False)
    iio.imwrite(tmp_path / "goal.png", np.full((16, 16), 200, np.uint8))
    env = make(str(tmp_path / "run"), reward="state", goal=str(tmp_path / "goal.png")).unwrapped
    check_env(env, skip_render_check=True)
    goal = env.setup.goal
    assert goal.shape == (3,)
    env.reset(seed=0)
    _, reward, *_ = env.step(np.zeros(1, np.float32))
    assert reward == pytest.approx(-float((env._z[0] - goal).pow(2).sum()), rel=1e-6)
    goal_conditioned = make(str(tmp_path / "run"), reward="state", goal=None, goal_conditioned=True).unwrapped
    assert goal_conditioned.observation_space.shape == (6,)
    with pytest.raises(CheckpointError, match="use reward='state'"):
        make(str(tmp_path / "run"), reward="pos")
    with pytest.raises(GoalError, match="a raw 'state' goal needs 3 values"):
        make(str(tmp_path / "run"), reward="state", goal=[0.0, 1.0])


def test_shipped_pretrained_model_and_default_goal_work_without_arguments():
    env = gym.make("LatentPendulum-v0")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3,) and env.unwrapped.setup.goal.shape == (2,)
    assert np.isfinite(env.step(np.array([0.0], np.float32))[1])


def test_ids_resolve_without_importing_latentworld_first():
    import subprocess
    import sys

    code = ("import gymnasium as gym; env = gym.make('latentworld:LatentPendulum-v0'); "
            "print(env.reset(seed=0)[0].shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert "(3,)" in out.stdout


def test_env_sees_new_weights_after_the_checkpoint_changes_and_refuses_model_objects(tmp_path):
    data = write_synthetic_pendulum(tmp_path / "pendulum.npz", n=8, steps=4)
    config = load_config("configs/debug.yaml", [f"data={data}", "threads=1"])
    run = tmp_path / "run"
    Trainer(config, run).fit(progress=False, until=10)
    before = make(str(run)).unwrapped.setup.core.model
    Trainer(config, run, resume=True).fit(progress=False)
    after = make(str(run)).unwrapped.setup.core.model
    assert after is not before and not torch.equal(after.F_bases, before.F_bases)
    with pytest.raises(TypeError, match="checkpoint directory path"):
        make(str(run), model=after)


def test_vector_env_contract_details(checkpoint):
    venv = LatentVectorEnv(num_envs=3, model=checkpoint, goal=[0.0, 1.0], horizon=2)
    with pytest.raises(RuntimeError, match="reset"):
        venv.step(np.zeros((3, 1), np.float32))
    a, info = venv.reset(seed=[3, 4, 5])
    b, _ = venv.reset(seed=[3, 4, 6])
    assert not np.array_equal(a, b) and info["goal"].shape == (3, 2)
    sb3 = SB3LatentVecEnv(3, seed=0, model=checkpoint, goal=[0.0, 1.0])
    assert sb3.get_attr("action_space")[0].shape == (1,)
    with pytest.raises(ValueError, match="one batch"):
        sb3.env_method("reset", indices=[0])


def test_goal_stack_with_as_many_images_as_pixels_per_side(checkpoint, tmp_path):
    stack = (np.random.default_rng(0).random((16, 16, 16)) * 255).astype(np.uint8)  # 16 grayscale 16×16
    np.save(tmp_path / "stack.npy", stack)
    assert make(checkpoint, goal=str(tmp_path / "stack.npy")).unwrapped.setup.goal.shape == (2,)


def test_pickle_keeps_gymnasium_seed(checkpoint):
    env = make(checkpoint).unwrapped
    env.reset(seed=11)
    assert pickle.loads(pickle.dumps(env)).np_random_seed == env.np_random_seed == 11


def test_noise_scale_zero_rolls_out_the_mean_dynamics_and_given_starts_are_used(checkpoint):
    starts = [[0.5, -0.5, 1.0]]
    envs = [make(checkpoint, noise_scale=0.0, initial="given", initial_states=starts).unwrapped for _ in range(2)]
    first = [env.reset(seed=seed)[0] for env, seed in zip(envs, (1, 2))]
    np.testing.assert_array_equal(first[0], np.float32(starts[0]))
    np.testing.assert_array_equal(first[0], first[1])
    model = envs[0].setup.core.model
    z = torch.tensor(starts)
    for t in range(4):
        u = np.array([np.cos(t)], np.float32)
        a, b = envs[0].step(u)[0], envs[1].step(u)[0]
        np.testing.assert_array_equal(a, b)  # no noise: the seed does not matter
        with torch.no_grad():
            z = model.next_mean(z, torch.from_numpy(u)[None])[0]
        np.testing.assert_allclose(a, z[0].numpy(), rtol=1e-6)
    noisy = make(checkpoint, noise_scale=1.0, initial="given", initial_states=np.array(starts)).unwrapped
    noisy.reset(seed=1)
    envs[0].reset(seed=1)
    u = np.array([1.0], np.float32)
    assert not np.allclose(noisy.step(u)[0], envs[0].step(u)[0])
    spec = gym.make("LatentPendulum-v0", model=checkpoint, goal=[0.0, 1.0], initial="given",
                    initial_states=starts).spec
    assert json.loads(spec.to_json())["kwargs"]["initial_states"] == starts


@pytest.mark.parametrize("kwargs, match", [
    ({"initial": "given"}, "needs initial_states"),
    ({"initial": "given", "initial_states": [[0.0, 1.0]]}, r"shape \(K, 3\)"),
    ({"initial": "given", "initial_states": [[0.0, np.nan, 1.0]]}, "NaN"),
    ({"noise_scale": -1.0}, "noise_scale"),
    ({"state_bound": 0.0}, "state_bound"),
])
def test_bad_latent_env_options_are_refused(checkpoint, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(checkpoint, **kwargs)


def test_states_stay_finite_and_bounded_under_sustained_extreme_actions(checkpoint):
    env = make(checkpoint, state_bound=3.0, horizon=10_000).unwrapped
    env.reset(seed=0)
    for _ in range(2000):
        obs, reward, terminated, _truncated, info = env.step(np.array([1.0], np.float32))
        assert np.isfinite(obs).all() and np.isfinite(reward) and np.abs(obs).max() <= 3.0
        if terminated:
            break
    assert terminated and info["out_of_bounds"]
    venv = LatentVectorEnv(num_envs=4, model=checkpoint, goal=[0.0, 1.0], horizon=10_000, state_bound=3.0)
    venv.reset(seed=0)
    for _ in range(2000):
        obs, _, terminated, _, infos = venv.step(np.ones((4, 1), np.float32))
        assert np.isfinite(obs).all()
        if terminated.any():
            break
    assert infos["final_info"]["out_of_bounds"][terminated].all() and np.isfinite(infos["final_obs"]).all()


def test_escape_on_the_last_step_is_terminated_not_truncated_in_both_envs(checkpoint):
    # From z = 0 one step moves by B u, far more than a bound of 1e-4: the state escapes on the horizon step.
    kwargs = {"state_bound": 1e-4, "horizon": 1, "initial": "given", "initial_states": [[0.0, 0.0, 0.0]],
              "noise_scale": 0.0}
    env = make(checkpoint, **kwargs).unwrapped
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(np.array([1.0], np.float32))
    assert info["out_of_bounds"]
    venv = LatentVectorEnv(num_envs=1, model=checkpoint, goal=[0.0, 1.0], **kwargs)
    venv.reset(seed=0)
    _, _, v_terminated, v_truncated, _ = venv.step(np.array([[1.0]], np.float32))
    assert (terminated, truncated) == (True, False) == (bool(v_terminated[0]), bool(v_truncated[0]))


def test_evaluate_works_on_an_angle_data_set(tiny_reacher_run, tmp_path, capsys):
    from latentworld.cli import main

    assert main(["evaluate", tiny_reacher_run, "--out", str(tmp_path / "eval")]) == 0
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == [
        "eval.json", "latent_space.png", "predictions.png", "training_curves.png"]
    assert "r2_" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "eval" / "eval.json").read_text())["metrics"]
    assert {"r2_raw_wrist_angle", "r2_knn_shoulder_angle", "r2_knn_wrist_velocity"} <= set(metrics)
    assert "r2_raw_shoulder_angle" not in metrics  # the shoulder turns freely
