"""Shared pytest setup."""

import os

import pytest

# Headless MuJoCo rendering; must be set before mujoco or dm_control is imported.
os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session", autouse=True)
def kalman_kernels_built() -> None:
    """Build the fused Kalman kernels once, first (about 45 s on a fresh machine), in the test process
    itself: not inside a subprocess test that has a time limit or is killed on purpose."""
    from latentworld.probability import kalman_kernels

    kalman_kernels.kernels()


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """40 real pendulum sequences: enough start states for the shipped model, generated in about a second."""
    from envs.generate import main as generate

    path = tmp_path_factory.mktemp("data") / "pendulum.npz"
    assert generate(["pendulum", "--out", str(path), "--n-sequences", "40", "--seed", "3", "--no-picture"]) == 0
    return str(path)


@pytest.fixture(scope="session")
def tiny_reacher_run(tmp_path_factory):
    """A debug-size joint-angle reacher model (Dz 5, Da 3) trained for a few steps on 12 real sequences;
    returns its run directory."""
    from envs.generate import main as generate
    from latentworld.experiment.config import load_config
    from latentworld.training.trainer import Trainer

    root = tmp_path_factory.mktemp("reacher")
    data = root / "reacher_angles.npz"
    assert generate(["reacher_angles", "--out", str(data), "--n-sequences", "12", "--seq-len", "6",
                     "--no-picture"]) == 0
    config = load_config("configs/debug.yaml", [f"data={data}", "threads=1", "model.obs_kind=vector",
                                                "model.dim_z=5", "model.dim_a=3"])
    Trainer(config, root / "run").fit(progress=False)
    return str(root / "run")
