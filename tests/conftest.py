"""Shared pytest setup."""

import os

import pytest

# Headless MuJoCo rendering; must be set before mujoco or dm_control is imported.
os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """40 real pendulum sequences: enough start states for the shipped model, generated in about a second."""
    from envs.generate import main as generate

    path = tmp_path_factory.mktemp("data") / "pendulum.npz"
    assert generate(["pendulum", "--out", str(path), "--n-sequences", "40", "--seed", "3", "--no-picture"]) == 0
    return str(path)
