"""Agents: J(ω), SB3 factory, MPC, saved policies, the real-env wrapper and its evaluation."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from agents.belief_env import BeliefEnv
from agents.cli import main as agents_main
from agents.jomega import JOmegaConfig, make_policy, train_jomega
from agents.mpc import CEMPlanner, MPCConfig
from agents.problem import make_problem, rollout_return
from agents.saved_policy import PolicyError, load_policy, save_policy
from agents.tasks import make_task
from envs import RealEnv
from latentworld.experiment.checkpoint import PRETRAINED_DIR
from latentworld.latent_envs.observer import Observer


@pytest.fixture(scope="module")
def problem(small_data):
    return make_problem("pendulum_ekvae", make_task("swingup"), data=small_data, validation_size=32)


def test_gradients_of_j_reach_every_policy_parameter(problem):
    torch.manual_seed(0)
    policy = make_policy(problem, hidden=16)
    objective = rollout_return(policy, problem.dynamics, problem.starts[:32], problem.goal, horizon=10).mean()
    objective.backward()
    for name, param in policy.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
        assert torch.isfinite(param.grad).all(), name


def test_jomega_improves_latent_return_and_keeps_the_best_snapshot(problem):
    config = JOmegaConfig(iterations=60, horizon=20, batch_size=64, hidden=32, validate_every=10,
                          validation_horizon=20)
    torch.manual_seed(config.seed)
    before = problem.validation_return(make_policy(problem, config.hidden), config.validation_horizon)
    policy, report = train_jomega(problem, config, progress=False)
    after = problem.validation_return(policy, config.validation_horizon)
    assert after == pytest.approx(report["best_validation_return"])
    assert after == max(h["validation_return"] for h in report["history"])
    assert after > before + 0.1 * abs(before), (before, after)


def test_mpc_beats_random_actions_in_latent_return(problem):
    starts = problem.validation_starts[:16]
    mean_dynamics = problem.with_noise(0.0).dynamics
    planner = CEMPlanner(problem, MPCConfig(plan_horizon=15, samples=64, elites=8, iterations=2))
    horizon = 20
    z_mpc, z_random, mpc_return, random_return = starts, starts, 0.0, 0.0
    generator = torch.Generator().manual_seed(0)
    for _ in range(horizon):
        z_mpc = mean_dynamics.transition(z_mpc, planner.plan(z_mpc))
        u = torch.rand((starts.shape[0], 1), generator=generator) * 2 - 1
        z_random = mean_dynamics.transition(z_random, u)
        mpc_return += float(mean_dynamics.reward(z_mpc, problem.goal).mean())
        random_return += float(mean_dynamics.reward(z_random, problem.goal).mean())
    assert mpc_return > random_return + 0.2 * abs(random_return), (mpc_return, random_return)


def test_observer_matches_the_batched_filter(problem, small_data):
    from latentworld.common.data import load_dataset

    data = load_dataset(small_data, "test")
    model = problem.model
    frames = data.obs[0].permute(0, 2, 3, 1).numpy()  # (T, H, W, C) uint8 as stored
    actions = data.actions[0].numpy()
    observer = Observer(model)
    means = [observer.reset(frames[0])]
    means += [observer.step(actions[t - 1], frames[t]) for t in range(1, len(frames))]
    with torch.no_grad():
        batched = model.posterior(data.observations(slice(0, 1)), data.actions[:1]).filtered_mean[0].numpy()
    np.testing.assert_allclose(np.stack(means), batched, atol=1e-4)
    with pytest.raises(RuntimeError, match="reset"):
        Observer(model).step(actions[0], frames[0])
    with pytest.raises(ValueError, match="do not match"):
        observer.step(actions[0], np.zeros((8, 8, 1), np.uint8))


def test_belief_env_equals_stepping_the_real_env_and_filter_by_hand(problem):
    actions = np.sin(np.arange(6))[:, None].astype(np.float32)
    env = BeliefEnv(problem.model, "pendulum", problem.action_repeat)
    real, observer = RealEnv("pendulum", action_repeat=problem.action_repeat), Observer(problem.model)
    try:
        belief, _ = env.reset(seed=7)
        frame, _ = real.reset(seed=7)
        np.testing.assert_array_equal(belief, observer.reset(frame))
        for u in actions:
            belief, reward, *_ , info = env.step(u)
            frame, real_reward, *_ = real.step(u)
            np.testing.assert_array_equal(belief, observer.step(u, frame))
            np.testing.assert_array_equal(info["frame"], frame)
            assert reward == real_reward
        assert info["physics_steps"] == len(actions) * problem.action_repeat
    finally:
        env.close()
        real.close()


def test_saved_policies_load_and_act_the_same(problem, tmp_path):
    torch.manual_seed(0)
    policy = make_policy(problem, hidden=16)
    out = save_policy(tmp_path / "jomega", "jomega", problem, {"hidden": 16}, {"train_seconds": 0.0},
                      policy.state_dict())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left
    controller, _loaded_problem, meta = load_policy(out)
    assert meta["method"] == "jomega" and meta["task"] == "swingup"
    assert torch.load(out / "policy.pt", weights_only=True).keys() == policy.state_dict().keys()
    for z in problem.validation_starts[:5]:
        with torch.no_grad():
            want = policy(z[None])[0].numpy()
        np.testing.assert_array_equal(controller.act(z.numpy()), want)
    with pytest.raises(FileExistsError, match="already exists"):
        save_policy(out, "jomega", problem, {"hidden": 16}, {}, policy.state_dict())


def test_ppo_factory_trains_and_its_saved_actor_reloads(problem, tmp_path):
    from agents.sb3 import SB3Config, train_sb3

    config = SB3Config(timesteps=1024, num_envs=16, episode_horizon=20, validate_every=512, validation_horizon=10)
    actor, report = train_sb3(problem, "ppo", config, progress=False)
    assert len(report["history"]) >= 2 and np.isfinite(report["best_validation_return"])
    out = save_policy(tmp_path / "ppo", "ppo", problem, {}, report, actor.state_dict())
    controller, _, _ = load_policy(out)
    z = problem.validation_starts[:4]
    with torch.no_grad():
        want = actor(z).numpy()
    got = np.stack([controller.act(row) for row in z.numpy()])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert (np.abs(got) <= 1).all()


def test_bad_inputs_give_one_clear_error(problem, tmp_path, capsys):
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown task"):
        make_task("dance")
    # A policy of another model: same architecture, other weights.
    other = tmp_path / "other_model"
    shutil.copytree(PRETRAINED_DIR / "pendulum_ekvae", other)
    state = torch.load(other / "model.pt", weights_only=True)
    state["R_logvar"] = state["R_logvar"] + 0.1
    torch.save(state, other / "model.pt")
    out = save_policy(tmp_path / "p", "mpc", problem, {"plan_horizon": 5}, {})
    with pytest.raises(PolicyError, match="holds other weights"):
        load_policy(out, model=str(other))
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "method": "dqn"}))
    assert agents_main(["evaluate", str(out), "--episodes", "1"]) == 2
    assert "unknown method 'dqn'" in capsys.readouterr().err
    assert agents_main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_train_and_evaluate_commands_write_policy_json_and_video(small_data, tmp_path, capsys):
    # The shipped model's own data set is not in a fresh clone: train from the small one.
    out = tmp_path / "policy"
    assert agents_main(["train", "jomega", "--out", str(out), "--data", small_data, "--set", "iterations=3",
                        "--set", "validate_every=1", "--no-progress"]) == 0
    assert (out / "policy.pt").is_file() and (out / "tb").is_dir()
    assert agents_main(["evaluate", str(out), "--episodes", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "random" in printed and "zero" in printed
    report = json.loads((out / "real_eval" / "real_eval.json").read_text())
    labels = [r["label"] for r in report["results"]]
    assert labels == ["jomega", "random", "zero"]
    assert report["results"][0]["physics_steps"] == 1000
    assert (out / "real_eval" / "episode.gif").stat().st_size > 1000
    assert agents_main(["train", "jomega", "--out", str(out), "--data", small_data]) == 2
    assert "already exists" in capsys.readouterr().err


def test_a_policy_finds_its_relative_model_from_another_directory(problem, tmp_path, monkeypatch):
    shutil.copytree(PRETRAINED_DIR / "pendulum_ekvae", tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    relative = dataclasses.replace(problem, model_ref="model")
    out = save_policy(tmp_path / "p", "mpc", relative, {"plan_horizon": 5}, {})
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    controller, loaded, meta = load_policy(out)
    assert meta["model"] == "model" and loaded.goal.shape == (2,)
    assert controller.act(problem.validation_starts[0].numpy()).shape == (1,)


def test_rotation_goal_is_a_real_steady_turn_and_unreachable_speeds_are_refused():
    from agents.tasks import rotation_demonstration

    demo = rotation_demonstration(-8.0, action_repeat=4)
    assert demo.mean_velocity == pytest.approx(-8.0, rel=0.05) and demo.torque < 0
    assert demo.frames.shape == (15, 16, 16, 1) and demo.actions.shape == (15, 1)
    assert (demo.actions == demo.torque).all() and demo.physics_steps > 0
    with pytest.raises(ValueError, match="out of reach"):
        rotation_demonstration(12.0, action_repeat=4)
    with pytest.raises(ValueError, match="non-zero"):
        make_task("rotation", 0.0)


def test_init_starts_jomega_from_a_saved_policy_and_is_refused_elsewhere(problem, tmp_path):
    from agents.training import initial_weights, train_policy

    torch.manual_seed(1)
    policy = make_policy(problem, hidden=16)
    source = save_policy(tmp_path / "source", "jomega", problem, {"hidden": 16}, {}, policy.state_dict())
    for name, value in initial_weights(source, problem, 16).items():
        torch.testing.assert_close(value, policy.state_dict()[name])
    with pytest.raises(PolicyError, match="hidden width"):
        initial_weights(source, problem, 32)
    with pytest.raises(ValueError, match="cannot use it"):
        train_policy("ppo", problem, tmp_path / "ppo", init=source)


def test_sac_actor_is_rescaled_into_the_action_box_and_reloads(problem, tmp_path):
    from agents.sb3 import SB3Config, train_sb3

    config = SB3Config(timesteps=600, num_envs=8, episode_horizon=10, validate_every=300, validation_horizon=5,
                       gradient_steps=1)
    actor, report = train_sb3(problem, "sac", config, progress=False)
    out = save_policy(tmp_path / "sac", "sac", problem, {}, report, actor.state_dict())
    controller, _, _ = load_policy(out)
    z = problem.validation_starts[:6]
    with torch.no_grad():
        squashed = actor.policy._predict((z - actor.obs_mean) / actor.obs_std, deterministic=True)
    got = np.stack([controller.act(row) for row in z.numpy()])
    np.testing.assert_allclose(got, squashed.numpy(), atol=1e-6)  # the box is [-1, 1]: the rescale is the identity
    assert (np.abs(got) <= 1).all()


def test_cli_refuses_bad_settings_and_malformed_policies_with_one_line(problem, small_data, tmp_path, capsys):
    base = ["train", "mpc", "--data", small_data, "--no-progress", "--out"]
    for extra, message in ((["--set", "horizon=3"], "unknown setting(s) horizon"),
                               (["--set", "samples=many"], "an integer"),
                           (["--set", "elites=1"], "elites: must lie"), (["--set", "seed=3"], "--seed instead")):
        assert agents_main([*base, str(tmp_path / "p"), *extra]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    with pytest.raises(SystemExit):
        agents_main(["evaluate", str(tmp_path), "--threads", "0"])
    assert "must be >= 1" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "meta.json").write_text(json.dumps({"method": "jomega"}))
    assert agents_main(["evaluate", str(bad)]) == 2
    assert "lacks or has malformed fields" in capsys.readouterr().err


def test_training_leaves_nothing_beside_the_policy_and_the_policy_is_readable(small_data, tmp_path):
    out = tmp_path / "policy"
    assert agents_main(["train", "jomega", "--out", str(out), "--data", small_data, "--set", "iterations=2",
                        "--set", "validate_every=1", "--no-progress"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy"]
    assert (out / "tb").is_dir() and (out.stat().st_mode & 0o055) == 0o055  # group/other can read and enter


def test_an_image_model_acts_only_in_an_env_that_draws_frames_as_its_training_data(small_data, tmp_path):
    from envs import get_spec
    from latentworld.experiment.checkpoint import CheckpointError
    from latentworld.experiment.config import load_config
    from latentworld.training.trainer import Trainer

    # Training records how its frames were drawn (the data set's record of the renderer).
    run = tmp_path / "run"
    Trainer(load_config("configs/debug.yaml", [f"data={small_data}", "threads=1", "steps=6", "eval_every=6"]),
            run).fit(progress=False)
    meta = json.loads((run / "checkpoint" / "meta.json").read_text())
    assert meta["camera"] == json.loads(json.dumps(get_spec("pendulum").render.record()))
    make_problem(str(run), make_task("swingup"), with_starts=False)  # drawn alike: accepted

    def recorded(camera: dict | None) -> str:  # edited in place: a loaded model is reloaded when meta.json changes
        (run / "checkpoint" / "meta.json").write_text(json.dumps({**meta, "camera": camera}))
        return str(run)

    # The same model, had its frames come from a camera 10 cm further away: refused, naming the difference.
    with pytest.raises(CheckpointError, match=r"drawn otherwise.*distance: 1\.5 then, 1\.4 now"):
        make_problem(recorded({**meta["camera"], "distance": 1.5}), make_task("swingup"), with_starts=False)
    # A colour changed alone (the pole drawn red): refused as well.
    red_pole = {**meta["camera"]["geom_colours"], "pole": [1.0, 0.0, 0.0, 1.0]}
    with pytest.raises(CheckpointError, match=r"geom_colours: .*'pole': \[1\.0, 0\.0, 0\.0, 1\.0\]"):
        make_problem(recorded({**meta["camera"], "geom_colours": red_pole}), make_task("swingup"), with_starts=False)
    # A record from before the colours were kept is compared on what it names.
    older = {key: value for key, value in meta["camera"].items() if key != "geom_colours"}
    make_problem(recorded(older), make_task("swingup"), with_starts=False)
    with pytest.raises(CheckpointError, match=r"distance: 1\.5 then, 1\.4 now"):
        make_problem(recorded({**older, "distance": 1.5}), make_task("swingup"), with_starts=False)
    # Models of joint angles, and checkpoints from before the record, have none and are not checked.
    make_problem(recorded(None), make_task("swingup"), with_starts=False)
