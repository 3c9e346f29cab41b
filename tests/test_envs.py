"""The real environments: spaces, true state, state setting, action repeat, rendering."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs import ENV_NAMES, make_env, wrap_angle


@pytest.fixture
def pendulum():
    env = make_env("pendulum")
    yield env
    env.close()


@pytest.fixture
def reacher_rgb():
    env = make_env("reacher_rgb")
    yield env
    env.close()


@pytest.mark.parametrize("name", ENV_NAMES)
def test_spaces_state_and_reward(name: str) -> None:
    env = make_env(name, action_repeat=2, render_mode="rgb_array")
    try:
        obs, info = env.reset(seed=1)
        assert env.observation_space.contains(obs)
        n_state = len(env.env_spec.state_names)
        assert info["state"].shape == (n_state,) and info["state"].dtype == np.float32
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert type(reward) is float  # shimmy's int 0 must not leak out
        assert not (terminated or truncated)
        np.testing.assert_array_equal(info["state"], env.state)
        assert np.all(np.abs(env.state[env.env_spec.angle_state_dims]) <= np.pi)
        frame = env.render()
        assert frame.dtype == np.uint8 and frame.shape[-1] == 3
    finally:
        env.close()


@pytest.mark.parametrize("name", ENV_NAMES)
def test_gymnasium_check_env(name: str) -> None:
    env = make_env(name, render_mode="rgb_array")
    try:
        check_env(env, skip_render_check=False)
    finally:
        env.close()


def test_obs_spaces() -> None:
    expected = {"pendulum": ((16, 16, 1), np.uint8), "reacher_angles": ((4,), np.float32),
                "reacher_rgb": ((64, 64, 3), np.uint8)}
    for name, (shape, dtype) in expected.items():
        env = make_env(name)
        assert env.observation_space.shape == shape and env.observation_space.dtype == dtype
        env.close()


def test_unknown_name_and_bad_repeat() -> None:
    with pytest.raises(ValueError, match="unknown environment"):
        make_env("cartpole")
    with pytest.raises(ValueError, match="action_repeat"):
        make_env("pendulum", action_repeat=0)


def test_pendulum_state_matches_dm_control(pendulum) -> None:
    rng = np.random.default_rng(0)
    pendulum.reset(seed=0, options={"state": pendulum.sample_initial_state(rng)})
    for _ in range(10):
        _, _, _, _, info = pendulum.step(pendulum.action_space.sample())
        angle, velocity = info["state"]
        physics = pendulum.physics
        # pole_orientation() is the pole frame's (zz, xz) = (cos angle, sin angle), 0 = upright.
        np.testing.assert_allclose([np.cos(angle), np.sin(angle)], physics.pole_orientation(), atol=1e-5)
        np.testing.assert_allclose(np.cos(angle), physics.pole_vertical(), atol=1e-5)
        np.testing.assert_allclose(velocity, physics.angular_velocity(), rtol=1e-5)


def test_reacher_state_and_angle_obs_match_qpos() -> None:
    env = make_env("reacher_angles")
    try:
        env.reset(seed=0, options={"state": env.sample_initial_state(np.random.default_rng(1))})
        for _ in range(10):
            obs, _, _, _, info = env.step(env.action_space.sample())
            qpos = env.physics.named.data.qpos[["shoulder", "wrist"]]
            qvel = env.physics.named.data.qvel[["shoulder", "wrist"]]
            np.testing.assert_allclose(info["state"][:2], wrap_angle(qpos), atol=1e-5)
            np.testing.assert_allclose(info["state"][2:], qvel, rtol=1e-5)
            np.testing.assert_allclose(obs, [np.cos(qpos[0]), np.sin(qpos[0]), np.cos(qpos[1]), np.sin(qpos[1])],
                                       atol=1e-6)
    finally:
        env.close()


def test_reset_sets_state_and_wraps_angles(pendulum) -> None:
    _, info = pendulum.reset(seed=0, options={"state": np.array([3 * np.pi / 2, -6.5])})
    np.testing.assert_allclose(info["state"], [-np.pi / 2, -6.5], atol=1e-6)
    sampled = np.stack([pendulum.sample_initial_state(np.random.default_rng(s)) for s in range(200)])
    assert np.all(np.abs(sampled[:, 0]) <= np.pi) and np.all(np.abs(sampled[:, 1]) <= 8.0)
    assert sampled[:, 1].min() < -6 and sampled[:, 1].max() > 6  # fast rotations are drawn


@pytest.mark.parametrize("name", ["pendulum", "reacher_angles"])
def test_action_repeat_really_repeats(name: str) -> None:
    one, three = make_env(name, action_repeat=1), make_env(name, action_repeat=3)
    try:
        state = one.sample_initial_state(np.random.default_rng(2))
        one.reset(seed=0, options={"state": state})
        three.reset(seed=0, options={"state": state})
        action = three.action_space.sample()
        t0 = three.physics.data.time
        _, reward3, _, _, info3 = three.step(action)
        assert three.physics.data.time - t0 == pytest.approx(3 * three.control_timestep)
        assert three.dt == pytest.approx(3 * 0.02)
        rewards1 = [one.step(action)[1] for _ in range(3)]
        np.testing.assert_array_equal(info3["state"], one.state)
        assert reward3 == pytest.approx(sum(rewards1))
    finally:
        one.close()
        three.close()


def test_pendulum_pole_is_bright_and_moves(pendulum) -> None:
    pendulum.reset(seed=0)
    images = {}
    for angle in np.linspace(-np.pi, np.pi, 16, endpoint=False):
        pendulum.set_state(np.array([angle, 0.0]))
        image = pendulum._observe()[..., 0].astype(int)
        images[angle] = image
        assert image.max() >= 200, f"pole too faint at angle {angle:.2f}"
        assert (image > 100).sum() >= 5, f"pole too small at angle {angle:.2f}"
        assert (image < 10).mean() > 0.8  # dark background
    up = pendulum.reset(options={"state": np.array([0.0, 0.0])})[0][..., 0].astype(int)
    down = pendulum.reset(options={"state": np.array([np.pi, 0.0])})[0][..., 0].astype(int)
    assert np.abs(up - down).sum() > 1500
    assert up[:8].sum() > 5 * up[8:].sum()  # upright pole is in the top half of the frame
    assert down[8:].sum() > 5 * down[:8].sum()


def test_reacher_target_is_not_drawn(reacher_rgb) -> None:
    obs, _ = reacher_rgb.reset(seed=0, options={"state": np.array([0.3, 1.0, 0.0, 0.0])})
    assert (obs.max(axis=-1) > 100).sum() > 30  # the arm is visible
    reacher_rgb.physics.named.model.geom_pos["target", :2] = [0.1, -0.1]
    reacher_rgb.physics.forward()
    np.testing.assert_array_equal(reacher_rgb._observe(), obs)


def test_close_is_idempotent_and_exit_is_clean() -> None:
    code = (
        "import os; os.environ['MUJOCO_GL'] = 'egl'\n"
        "import envs\n"
        "closed = envs.make_env('pendulum'); closed.reset(seed=0); closed.close(); closed.close()\n"
        "left_open = envs.make_env('reacher_rgb', render_mode='rgb_array'); left_open.reset(seed=0)\n"
        "left_open.render()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "Exception" not in result.stderr and "Error" not in result.stderr, result.stderr


def test_factory_default_repeat_is_the_spec_default() -> None:
    env = make_env("reacher_angles")
    assert env.action_repeat == envs.SPECS["reacher_angles"].action_repeat
    env.close()
