"""Data-set generation: determinism, format, refusal to overwrite, arguments, stored truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from envs import make_env, wrap_angle
from envs.generate import main
from latentworld.common.data import REQUIRED_KEYS, load_dataset, read_metadata

TINY = ["--n-sequences", "4", "--seq-len", "5", "--no-picture"]


def _generate(name: str, out: Path, *extra: str) -> Path:
    assert main([name, "--out", str(out), *TINY, *extra]) == 0
    return out


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {key: npz[key] for key in REQUIRED_KEYS}


@pytest.fixture(scope="module")
def pendulum_file(tmp_path_factory) -> Path:
    return _generate("pendulum", tmp_path_factory.mktemp("data") / "pendulum.npz", "--seed", "3")


def test_same_seed_same_arrays_different_seed_different(pendulum_file: Path, tmp_path: Path) -> None:
    first = _arrays(pendulum_file)
    again = _arrays(_generate("pendulum", tmp_path / "again.npz", "--seed", "3"))
    for key in REQUIRED_KEYS:
        assert first[key].dtype == again[key].dtype
        assert first[key].tobytes() == again[key].tobytes(), key
    other = _arrays(_generate("pendulum", tmp_path / "other.npz", "--seed", "4"))
    assert not np.array_equal(first["obs"], other["obs"])
    assert not np.array_equal(first["states"], other["states"])


def test_workers_give_the_same_arrays(pendulum_file: Path, tmp_path: Path) -> None:
    parallel = _arrays(_generate("pendulum", tmp_path / "parallel.npz", "--seed", "3", "--workers", "2"))
    for key, value in _arrays(pendulum_file).items():
        assert value.tobytes() == parallel[key].tobytes(), key


def test_pendulum_format_and_metadata(pendulum_file: Path) -> None:
    train = load_dataset(pendulum_file, "train", expect_obs_type="image")
    test = load_dataset(pendulum_file, "test")
    assert len(train) + len(test) == 4 and len(test) >= 1
    assert train.obs.shape == (len(train), 5, 1, 16, 16)
    assert train.obs.dtype == torch.uint8
    assert 0.0 <= float(train.observations().min()) and float(train.observations().max()) <= 1.0
    assert train.actions.shape == (len(train), 5, 1) and train.states.shape == (len(train), 5, 2)
    raw = _arrays(pendulum_file)
    assert raw["obs"].dtype == np.uint8 and raw["states"].dtype == np.float32
    assert np.all(np.abs(raw["actions"]) <= 1.0)
    meta = read_metadata(pendulum_file)
    assert meta["env_id"] == "dm_control/pendulum-swingup-v0" and meta["name"] == "pendulum"
    assert meta["seed"] == 3 and meta["action_repeat"] == 4 and meta["image_size"] == 16
    assert (meta["n_sequences"], meta["seq_len"]) == (4, 5)
    assert meta["control_timestep"] == pytest.approx(0.02) and meta["dt"] == pytest.approx(0.08)
    assert meta["state_names"] == ["hinge_angle", "hinge_velocity"] and meta["angle_state_dims"] == [0]
    assert meta["action_low"] == [-1.0] and meta["action_high"] == [1.0]
    assert meta["camera"]["distance"] > 0 and meta["test_fraction"] == pytest.approx(0.2)
    assert set(meta["versions"]) == {"mujoco", "dm-control", "gymnasium", "shimmy", "numpy"}
    assert meta["generator_version"] >= 1
    spread = meta["angle_spread"]["hinge_angle"]
    assert set(spread) == {"window", "path", "per_frame"} and spread["window"]["median"] > 0


@pytest.mark.parametrize("name, obs_shape", [("reacher_angles", (4,)), ("reacher_rgb", (64, 64, 3))])
def test_reacher_formats(name: str, obs_shape: tuple[int, ...], tmp_path: Path) -> None:
    path = _generate(name, tmp_path / f"{name}.npz", "--test-fraction", "0.5")
    raw = _arrays(path)
    assert raw["obs"].shape == (4, 5, *obs_shape)
    assert raw["obs"].dtype == (np.float32 if name == "reacher_angles" else np.uint8)
    assert raw["actions"].shape == (4, 5, 2) and raw["states"].shape == (4, 5, 4)
    assert len(raw["test_indices"]) == 2
    meta = read_metadata(path)
    assert meta["obs_type"] == ("angles" if name == "reacher_angles" else "image")
    assert meta["state_names"] == ["shoulder_angle", "wrist_angle", "shoulder_velocity", "wrist_velocity"]
    assert meta["angle_state_dims"] == [0, 1]
    if name == "reacher_angles":
        q = raw["states"][..., :2]
        expected = np.stack([np.cos(q[..., 0]), np.sin(q[..., 0]), np.cos(q[..., 1]), np.sin(q[..., 1])], -1)
        np.testing.assert_allclose(raw["obs"], expected, atol=1e-6)


def test_action_hold_repeats_each_random_action(tmp_path: Path) -> None:
    path = _generate("reacher_angles", tmp_path / "held.npz", "--action-hold", "2", "--seq-len", "7")
    actions = _arrays(path)["actions"]
    np.testing.assert_array_equal(actions[:, 0::2][:, :3], actions[:, 1::2])
    assert (actions[:, 0] != actions[:, 2]).all()  # a new draw every second frame
    assert read_metadata(path)["action_hold"] == 2


def test_stored_states_agree_with_the_simulator(pendulum_file: Path, tmp_path: Path) -> None:
    """Replay each stored sequence from its stored first state with its stored actions."""
    raw = _arrays(pendulum_file)
    env = make_env("pendulum", action_repeat=4)
    try:
        for i in range(raw["states"].shape[0]):
            obs, _ = env.reset(seed=0, options={"state": raw["states"][i, 0]})
            for t in range(raw["states"].shape[1]):
                angle, velocity = raw["states"][i, t]
                physics = env.physics
                np.testing.assert_allclose(physics.pole_orientation(), [np.cos(angle), np.sin(angle)], atol=1e-3)
                np.testing.assert_allclose(physics.angular_velocity(), velocity, atol=1e-3)
                assert np.abs(obs.astype(int) - raw["obs"][i, t].astype(int)).mean() < 2
                obs, *_ = env.step(raw["actions"][i, t])
    finally:
        env.close()
    reacher = _arrays(_generate("reacher_angles", tmp_path / "r.npz"))
    env = make_env("reacher_angles")
    try:
        env.reset(seed=0, options={"state": reacher["states"][0, 0]})
        for t in range(reacher["states"].shape[1]):
            qpos = env.physics.named.data.qpos[["shoulder", "wrist"]]
            np.testing.assert_allclose(wrap_angle(qpos), reacher["states"][0, t, :2], atol=1e-3)
            env.step(reacher["actions"][0, t])
    finally:
        env.close()


def test_refuses_to_overwrite(pendulum_file: Path, capsys) -> None:
    before = pendulum_file.read_bytes()
    mtime = pendulum_file.stat().st_mtime_ns
    assert main(["pendulum", "--out", str(pendulum_file), *TINY, "--seed", "9"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--force" in err and str(pendulum_file) in err
    assert pendulum_file.read_bytes() == before and pendulum_file.stat().st_mtime_ns == mtime


def test_force_overwrites(tmp_path: Path) -> None:
    path = _generate("pendulum", tmp_path / "p.npz", "--seed", "1")
    _generate("pendulum", path, "--seed", "2", "--force")
    assert read_metadata(path)["seed"] == 2


@pytest.mark.parametrize("bad", [
    ["cartpole"],
    ["pendulum", "--n-sequences", "-3"],
    ["pendulum", "--n-sequences", "0"],
    ["pendulum", "--n-sequences", "1"],
    ["pendulum", "--seq-len", "1"],
    ["pendulum", "--action-repeat", "0"],
    ["pendulum", "--seed", "-1"],
    ["pendulum", "--workers", "0"],
    ["pendulum", "--test-fraction", "0"],
    ["pendulum", "--test-fraction", "1"],
    ["pendulum", "--test-fraction", "1.5"],
    ["pendulum", "--n-sequences", "many"],
])
def test_bad_arguments_exit_2(bad: list[str], tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*bad, "--out", str(tmp_path / "x.npz")])
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_pictures_are_written(tmp_path: Path, capsys) -> None:
    out = tmp_path / "reacher_angles.npz"
    assert main(["reacher_angles", "--out", str(out), "--n-sequences", "4", "--seq-len", "5"]) == 0
    for picture in (tmp_path / "reacher_angles.png", tmp_path / "reacher_angles_states.png"):
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "wall time" in printed and "MiB" in printed
