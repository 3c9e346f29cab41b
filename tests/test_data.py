import numpy as np
import pytest
import torch
from synthetic import write_synthetic_pendulum

from latentworld.common.data import DatasetError, load_dataset, read_metadata, save_dataset


def test_loader_keeps_uint8_images_and_gives_float_frames_in_unit_range(tmp_path):
    path = write_synthetic_pendulum(tmp_path / "p.npz", n=8, steps=5)
    train, test = load_dataset(path, "train"), load_dataset(path, "test")
    assert train.obs.shape == (6, 5, 1, 16, 16) and test.obs.shape == (2, 5, 1, 16, 16)
    assert train.obs.dtype == torch.uint8
    frames = train.observations()
    assert frames.dtype == torch.float32 and 0.0 <= frames.min() and frames.max() == 1.0
    torch.testing.assert_close(frames, train.obs.float() / 255, rtol=0, atol=0)
    torch.testing.assert_close(train.observations(np.s_[1:3, :2]), frames[1:3, :2], rtol=0, atol=0)
    assert train.actions.shape == (6, 5, 1) and train.states.shape == (6, 5, 2)
    assert len(load_dataset(path, "all")) == 8
    assert read_metadata(path)["env_id"] == "synthetic/pendulum"


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope.npz")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_file_is_one_clear_error(tmp_path, damage):
    path = write_synthetic_pendulum(tmp_path / "p.npz")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"not a zip" * 100)
    with pytest.raises(DatasetError, match="corrupt|not a readable"):
        load_dataset(path)


def test_mismatched_file_is_refused(tmp_path):
    path = write_synthetic_pendulum(tmp_path / "p.npz")
    with pytest.raises(DatasetError, match="obs_type"):
        load_dataset(path, expect_obs_type="angles")
    with pytest.raises(DatasetError, match="env_id"):
        load_dataset(path, expect_env_id="dm_control/reacher-easy-v0")
    with pytest.raises(DatasetError, match="split"):
        load_dataset(path, "validation")


def test_writer_validates_and_refuses_overwrite(tmp_path):
    path = write_synthetic_pendulum(tmp_path / "p.npz")
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        write_synthetic_pendulum(path)
    assert path.read_bytes() == before
    meta = read_metadata(path)
    with pytest.raises(DatasetError, match="actions"):
        save_dataset(tmp_path / "bad.npz", np.zeros((2, 3, 4, 4, 1), np.uint8), np.zeros((2, 4, 1)),
                     np.zeros((2, 3, 2)), [0], [1], meta)
    assert not (tmp_path / "bad.npz").exists()
