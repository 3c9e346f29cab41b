"""Bad inputs, one case each, through the command lines as a user runs them.

Every case must end with exit status 2 and one line on stderr that names the problem, and must
leave the files it was given exactly as they were: nothing changed, nothing added, nothing lost
(the installed package included).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from synthetic import write_synthetic_pendulum

from agents.cli import main as agents_main
from envs.generate import main as generate_main
from latentworld.cli import main as latentworld_main
from latentworld.common.fileio import PACKAGE_DIR, check_output_dir
from latentworld.evaluation.evaluate import EVAL_OUTPUTS
from latentworld.experiment.checkpoint import PRETRAINED_DIR
from latentworld.experiment.config import load_config
from latentworld.training.trainer import Trainer

DEBUG_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "debug.yaml")
TRAIN = ["train", "--config", DEBUG_CONFIG, "--set", "data=data.npz", "--set", "threads=1", "--no-progress"]


@pytest.fixture(scope="module")
def base_world(tmp_path_factory) -> Path:
    """A folder with a data set, a finished run and a run stopped at step 10 (of 20), all relative paths."""
    root = tmp_path_factory.mktemp("world")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        write_synthetic_pendulum(Path("data.npz"))
        config = load_config(DEBUG_CONFIG, ["data=data.npz", "threads=1"])
        Trainer(config, "run").fit(progress=False)
        Trainer(config, "half").fit(progress=False, until=10)
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture()
def world(base_world, tmp_path, monkeypatch) -> Path:
    """A fresh copy of the base world as the working directory."""
    copy = tmp_path / "world"
    shutil.copytree(base_world, copy)
    monkeypatch.chdir(copy)
    return copy


def snapshot(*roots: Path) -> dict[str, str]:
    """SHA-256 of every file (and the name of every folder) under ``roots``."""
    tree = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            tree[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return tree


def write_raw_npz(name: str, **changes: Callable[[np.ndarray], np.ndarray] | np.ndarray | None) -> str:
    """data.npz with some arrays changed (a function of the old array, a new array, or None to drop it),
    written without the writer's validation: what a broken or foreign file looks like."""
    with np.load("data.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    for key, change in changes.items():
        if change is None:
            arrays.pop(key)
        else:
            arrays[key] = change(arrays[key]) if callable(change) else change
    np.savez(name, **arrays)
    return name


def with_metadata(**fields) -> Callable[[np.ndarray], np.ndarray]:
    return lambda raw: np.array(json.dumps({**json.loads(str(raw)), **fields}))


def set_nan(array: np.ndarray) -> np.ndarray:
    array = array.copy()
    array.flat[3] = np.nan
    return array


def flip_byte(path: str, offset: int = -40) -> None:
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0xFF
    Path(path).write_bytes(bytes(data))


def edit_json(path: str, **fields) -> None:
    values = json.loads(Path(path).read_text())
    values.update(fields)
    Path(path).write_text(json.dumps(values))


def write_file(path: str, content: str | bytes) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def tiny_kvae_run() -> str:
    """A 4-step KVAE run: a model that is not Markov in z."""
    preset = str(Path(DEBUG_CONFIG).parent / "pendulum_kvae.yaml")
    settings = ["data=data.npz", "threads=1", "steps=4", "eval_every=4", "batch_size=8", "model.hidden=16",
                "model.num_bases=2", "schedule.calibration_steps=2"]
    Trainer(load_config(preset, settings), "kvae_run").fit(progress=False)
    return "kvae_run"


def train_with(*settings: str) -> Callable[[Path], list[str]]:
    return lambda world: [*TRAIN, *(part for s in settings for part in ("--set", s)), "--run-dir", "new_run"]


def train_on(make_data: Callable[[], str]) -> Callable[[Path], list[str]]:
    return lambda world: [*TRAIN, "--set", f"data={make_data()}", "--run-dir", "new_run"]


def evaluate_after(corrupt: Callable[[], None], target: str = "run") -> Callable[[Path], list[str]]:
    def setup(world: Path) -> list[str]:
        corrupt()
        return ["evaluate", target, "--out", "eval_out"]
    return setup


def goal(make_goal: Callable[[], str], reward: str = "pos") -> Callable[[Path], list[str]]:
    return lambda world: ["imagine", "run", "--goal", make_goal(), "--reward", reward, "--episodes", "1",
                          "--horizon", "2"]


def npy(name: str, array: np.ndarray) -> str:
    np.save(name, array)
    return name


def png(name: str, array: np.ndarray) -> str:
    iio.imwrite(name, array)
    return name


CASES = [
    # Config: types (YAML spellings), ranges, options, unknown keys, cross-field rules, the file itself.
    pytest.param(train_with("steps=0"), "steps: must lie in [1, inf), got 0", id="config-steps-zero"),
    pytest.param(train_with("steps=2.5"), "steps: expected an integer, got 2.5", id="config-steps-fractional"),
    pytest.param(train_with("steps=many"), "steps: expected an integer", id="config-steps-text"),
    pytest.param(train_with("grad_clip=-1"), "grad_clip: must lie in (0, inf)", id="config-grad-clip-negative"),
    pytest.param(train_with("model.inference=smother"), "model.inference: must be one of 'smoother', 'filter'",
                 id="config-inference-misspelt"),
    pytest.param(train_with("model.prior=gaussian"), "model.prior: must be one of", id="config-prior-unknown"),
    pytest.param(train_with("device=cuda"), "device: 'cuda' asked for, but torch sees no CUDA GPU", id="config-no-gpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
    pytest.param(train_with("model.kind=planet"), "model.kind: must be one of 'dks', 'dvbs', 'ekvae', 'kvae', 'rssm', got 'planet'", id="config-model-unknown"),
    pytest.param(train_with("schedule.kind=anneal"), "schedule.kind: must be one of", id="config-schedule-unknown"),
    pytest.param(train_with("model.obs_kind=mlp"), "model.obs_kind: must be one of", id="config-obs-kind-unknown"),
    pytest.param(train_with("batch_size=0"), "batch_size: must lie in [1, inf)", id="config-batch-size-zero"),
    pytest.param(train_with("eval_every=0"), "eval_every: must lie in [1, inf)", id="config-eval-every-zero"),
    pytest.param(train_with("lr=.nan"), "lr: must be finite", id="config-lr-nan"),
    pytest.param(train_with("lr=0"), "lr: must lie in (0, inf)", id="config-lr-zero"),
    pytest.param(train_with("lr=true"), "lr: expected a number, got True", id="config-lr-bool"),
    pytest.param(train_with("schedule.alpha=1.5"), "schedule.alpha: must lie in [0, 1)", id="config-alpha-range"),
    pytest.param(train_with("threads=0"), "threads: must lie in [1, inf)", id="config-threads-zero"),
    pytest.param(train_with("seed=-1"), "seed: must lie in [0, 4294967295], got -1", id="config-seed-negative"),
    pytest.param(train_with("model.learn_h=1"), "model.learn_h: expected true or false", id="config-bool-as-int"),
    pytest.param(train_with("model.dim_a=4"), "dim_a (4) must not exceed dim_z (3)", id="config-dim-a-above-dim-z"),
    pytest.param(train_with("schedule.calibration_steps=50"), "calibration_steps (50) must be below steps (20)",
                 id="config-calibration-never-ends"),
    pytest.param(train_with("model.dimz=5"), "unknown setting(s) model.dimz", id="config-unknown-model-key"),
    pytest.param(train_with("step=5"), "unknown setting(s) step", id="config-unknown-key"),
    pytest.param(train_with("model=3"), "model must be a mapping", id="config-section-not-mapping"),
    pytest.param(train_with("steps"), "expected section.field=value", id="config-override-without-value"),
    pytest.param(lambda w: [*TRAIN[:2], "missing.yaml", *TRAIN[3:], "--run-dir", "r"], "missing.yaml does not exist",
                 id="config-file-missing"),
    pytest.param(lambda w: [*TRAIN[:2], write_file("bad.yaml", "steps: [1,\n"), *TRAIN[3:], "--run-dir", "r"],
                 "bad.yaml is not valid YAML", id="config-file-invalid-yaml"),
    pytest.param(lambda w: [*TRAIN[:2], write_file("list.yaml", "- 1\n- 2\n"), *TRAIN[3:], "--run-dir", "r"],
                 "a config must be a YAML mapping", id="config-file-not-mapping"),
    pytest.param(train_with("model.obs_kind=vector"), "holds image observations but model.obs_kind is 'vector'",
                 id="config-obs-kind-does-not-fit-data"),
    pytest.param(lambda w: [*TRAIN[:2], write_file("loop.yaml", "base: loop.yaml\n"), *TRAIN[3:], "--run-dir", "r"],
                 "chain loops back to itself", id="config-file-base-cycle"),
    pytest.param(lambda w: [*TRAIN[:2], write_file("keys.yaml", "yes: 1\n"), *TRAIN[3:], "--run-dir", "r"],
                 "unknown setting(s) True", id="config-file-key-not-a-name"),
    pytest.param(train_with("seed=4294967296"), "seed: must lie in [0, 4294967295]", id="config-seed-too-large"),
    pytest.param(train_with("lr=1e400"), "lr: must be finite", id="config-lr-overflow"),
    # Data sets: missing, foreign, corrupt, non-finite, inconsistent.
    pytest.param(train_on(lambda: "nothing.npz"), "nothing.npz does not exist", id="data-missing"),
    pytest.param(train_on(lambda: write_file("text.npz", "not an archive")), "not a readable .npz",
                 id="data-not-npz"),
    pytest.param(train_on(lambda: write_file("cut.npz", Path("data.npz").read_bytes()[:-300])), "cut.npz",
                 id="data-truncated"),
    pytest.param(train_on(lambda: (os.mkdir("folder.npz"), "folder.npz")[1]), "is not a file", id="data-directory"),
    pytest.param(train_on(lambda: write_raw_npz("keys.npz", states=None)), "lacks arrays ['states']",
                 id="data-wrong-keys"),
    pytest.param(train_on(lambda: write_raw_npz("nan_actions.npz", actions=set_nan)),
                 "actions holds 1 NaN or infinite value(s)", id="data-nan-actions"),
    pytest.param(train_on(lambda: write_raw_npz("nan_states.npz", states=set_nan)),
                 "states holds 1 NaN or infinite value(s)", id="data-nan-states"),
    pytest.param(train_on(lambda: write_raw_npz("float_obs.npz", obs=lambda o: o.astype(np.float32))),
                 "image obs must be (N, T, H, W, C) uint8", id="data-image-dtype"),
    pytest.param(train_on(lambda: write_raw_npz("short_actions.npz", actions=lambda a: a[:, :-1])),
                 "actions must be", id="data-actions-shape"),
    pytest.param(train_on(lambda: write_raw_npz("one_frame.npz", obs=lambda o: o[:, :1],
                                                actions=lambda a: a[:, :1], states=lambda s: s[:, :1])),
                 "at least 2 frames", id="data-one-frame"),
    pytest.param(train_on(lambda: write_raw_npz("overlap.npz", test_indices=np.arange(4))),
                 "disjoint and cover", id="data-split-overlaps"),
    pytest.param(train_on(lambda: write_raw_npz("meta.npz", metadata=np.array("{not json"))),
                 "unreadable metadata", id="data-metadata-corrupt"),
    pytest.param(train_on(lambda: write_raw_npz("meta2.npz", metadata=np.array(json.dumps({"env_id": "x"})))),
                 "metadata lacks", id="data-metadata-incomplete"),
    pytest.param(train_on(lambda: write_raw_npz("kind.npz", metadata=with_metadata(obs_type="video"))),
                 "unknown obs_type 'video'", id="data-obs-type-unknown"),
    # Run directories: never overwrite what is not a run of the same experiment.
    pytest.param(lambda w: [*TRAIN, "--run-dir", write_file("afile", "x")], "is a file", id="run-dir-is-a-file"),
    pytest.param(lambda w: [*TRAIN, "--run-dir", str(Path(write_file("mine/notes.txt", "x")).parent)],
                 "not a training run", id="run-dir-foreign"),
    pytest.param(lambda w: [*TRAIN, "--resume", "--run-dir",
                            str(shutil.copytree(PRETRAINED_DIR / "pendulum_ekvae", "copy"))],
                 "not a training run", id="run-dir-checkpoint-copy"),
    pytest.param(lambda w: [*TRAIN, "--run-dir", "run"], "pass --resume", id="run-dir-existing-run"),
    pytest.param(lambda w: [*TRAIN, "--set", "lr=0.002", "--resume", "--run-dir", "half"],
                 "run of another config (lr: 0.001 -> 0.002)", id="run-dir-other-config"),
    pytest.param(lambda w: [*TRAIN[:2], str(Path(DEBUG_CONFIG).parent / "pendulum_dks.yaml"), *TRAIN[3:], "--resume",
                            "--run-dir", "half"], "run of another config (model.kind: 'ekvae' -> 'dks'",
                 id="run-dir-other-model"),
    pytest.param(lambda w: [*TRAIN, "--run-dir", str(PACKAGE_DIR / "pretrained" / "mine")],
                 "inside the latentworld package", id="run-dir-in-package"),
    pytest.param(lambda w: (write_file("half/run_config.yaml", "steps: ["), [*TRAIN, "--resume", "--run-dir", "half"])[1],
                 "run_config.yaml is corrupt", id="run-dir-marker-corrupt"),
    pytest.param(lambda w: (flip_byte("half/checkpoint/trainer_state.pt"), [*TRAIN, "--resume", "--run-dir", "half"])[1],
                 "trainer_state.pt is corrupt: its SHA-256 differs", id="run-dir-trainer-state-corrupt"),
    pytest.param(lambda w: (write_file("half/history.jsonl", '{"step": 1}\nxx\n{"step": 2}\n'),
                            [*TRAIN, "--resume", "--run-dir", "half"])[1],
                 "history.jsonl line 2 is not a history row", id="run-dir-history-corrupt"),
    # Checkpoints: missing, incomplete, corrupt bytes, edited files, foreign kinds, outputs.
    pytest.param(lambda w: ["evaluate", "nowhere"], "checkpoint nowhere does not exist", id="checkpoint-missing"),
    pytest.param(evaluate_after(lambda: flip_byte("run/checkpoint/model.pt")), "model.pt is corrupt: its SHA-256",
                 id="checkpoint-weights-bytes-flipped"),
    pytest.param(evaluate_after(lambda: write_file("run/checkpoint/model.pt", b"")), "model.pt is corrupt",
                 id="checkpoint-weights-empty"),
    pytest.param(evaluate_after(lambda: write_file("run/checkpoint/meta.json", "{")), "meta.json is corrupt",
                 id="checkpoint-meta-corrupt"),
    pytest.param(evaluate_after(lambda: edit_json("run/checkpoint/meta.json", sha256=None)),
                 "records no file hashes", id="checkpoint-meta-without-hashes"),
    pytest.param(evaluate_after(lambda: edit_json("run/checkpoint/meta.json", model_class="planet")),
                 "unknown model class 'planet'", id="checkpoint-unknown-kind"),
    pytest.param(evaluate_after(lambda: write_file("run/checkpoint/config.yaml", "steps: 3\n")),
                 "config.yaml is corrupt", id="checkpoint-config-edited"),
    pytest.param(evaluate_after(lambda: os.remove("run/checkpoint/model.pt")), "lacks model.pt",
                 id="checkpoint-weights-missing"),
    pytest.param(evaluate_after(lambda: shutil.rmtree("half/checkpoint"), "half"), "has no checkpoint yet",
                 id="checkpoint-run-without-one"),
    pytest.param(lambda w: ["evaluate", "run", "--out", str(Path(write_file("taken/notes.txt", "x")).parent)],
                 "already holds other files", id="evaluate-out-foreign"),
    pytest.param(lambda w: ["evaluate", "run", "--out", write_file("out_file", "x")], "is a file",
                 id="evaluate-out-is-a-file"),
    pytest.param(lambda w: ["evaluate", "pendulum_ekvae", "--out", str(PRETRAINED_DIR / "pendulum_ekvae")],
                 "inside the latentworld package", id="evaluate-out-in-package"),
    pytest.param(lambda w: ["evaluate", "run", "--out", "e", "--data", write_raw_npz("nan.npz", actions=set_nan)],
                 "actions holds 1 NaN", id="evaluate-data-nan"),
    pytest.param(lambda w: ["evaluate", "run", "--out", "e", "--data", str(write_synthetic_pendulum(
        Path("small.npz"), size=32))], "does not fit the model", id="evaluate-data-does-not-fit"),
    # Goals: bit depth, value range, NaN, shape, unreadable files, wrong kind.
    pytest.param(goal(lambda: npy("float255.npy", np.full((16, 16), 200.0, np.float32))),
                 "float goal images must lie in [0, 1]", id="goal-float-0-255"),
    pytest.param(goal(lambda: npy("nan.npy", np.full((16, 16), np.nan, np.float32))), "NaN or infinite",
                 id="goal-nan-image"),
    pytest.param(goal(lambda: npy("int64.npy", np.zeros((16, 16), np.int64))), "dtype int64 are ambiguous",
                 id="goal-int64-image"),
    pytest.param(goal(lambda: npy("bool.npy", np.zeros((16, 16), bool))), "dtype bool are ambiguous",
                 id="goal-bool-image"),
    pytest.param(goal(lambda: png("big.png", np.zeros((32, 32), np.uint8))), "do not match the model's frames",
                 id="goal-image-size"),
    pytest.param(goal(lambda: write_file("broken.png", b"\x89PNG not really")), "cannot read it",
                 id="goal-image-unreadable"),
    pytest.param(goal(lambda: "0.5,nan"), "goal vector contains NaN", id="goal-vector-nan"),
    pytest.param(goal(lambda: "1,2,3,4"), "needs 2 values", id="goal-vector-length"),
    pytest.param(goal(lambda: "upright.png"), "neither an existing file nor comma-separated numbers",
                 id="goal-missing-file"),
    pytest.param(goal(lambda: png("pos.png", np.zeros((16, 16), np.uint8)), reward="vel"), "use reward='pos'",
                 id="goal-image-for-velocity"),
    pytest.param(goal(lambda: (np.savez("seq.npz", obs=np.zeros((3, 16, 16), np.uint8)), "seq.npz")[1], "vel"),
                 "needs arrays 'obs' and 'actions'", id="goal-sequence-without-actions"),
    pytest.param(goal(lambda: (np.savez("seq2.npz", obs=np.zeros((3, 16, 16), np.uint8),
                                        actions=np.zeros((2, 1), np.float32)), "seq2.npz")[1], "vel"),
                 "one per frame", id="goal-sequence-actions-shape"),
    pytest.param(lambda w: ["imagine", tiny_kvae_run()], "a latent env needs a model whose state is z alone",
                 id="imagine-non-markov-model"),
    pytest.param(lambda w: ["imagine", "run", "--out", "frames.xyz"], "name a .png file", id="imagine-out-not-png"),
    pytest.param(goal(lambda: ""), "--goal is empty", id="goal-empty"),
    pytest.param(lambda w: ["generate", "pendulum", "--out", "data.png"], "a data set is an .npz file",
                 id="generate-out-not-npz"),
    pytest.param(lambda w: ["agents", "evaluate", "nowhere", "--out", str(Path(write_file("mine/a.txt", "x")).parent)],
                 "already holds other files (a.txt)", id="agents-evaluate-out-foreign"),
    pytest.param(lambda w: ["imagine", "run", "--out", str(PACKAGE_DIR / "frames.png")],
                 "inside the latentworld package", id="imagine-out-in-package"),
    # The generator checks where it will write before generating anything.
    pytest.param(lambda w: ["generate", "pendulum", "--n-sequences", "100000", "--out",
                            write_file("blocker", "x") + "/data.npz"], "Not a directory", id="generate-out-unwritable"),
    pytest.param(lambda w: ["generate", "pendulum", "--n-sequences", "100000", "--force", "--out",
                            str(Path(os.mkdir("folder.npz") or "folder.npz"))],
                 "Is a directory", id="generate-out-is-a-folder"),
    # The agents' commands share the error types.
    pytest.param(lambda w: ["agents", "train", "jomega", "--model", "run", "--data", "data.npz", "--set", "lr=-1",
                            "--out", "p"], "lr: must lie in (0, inf)", id="agents-setting-range"),
    pytest.param(lambda w: ["agents", "train", "jomega", "--model", "run", "--set", "iterations=1.5", "--out", "p"],
                 "iterations: expected an integer", id="agents-setting-fractional"),
    pytest.param(lambda w: (flip_byte("run/checkpoint/model.pt"),
                            ["agents", "train", "mpc", "--model", "run", "--data", "data.npz", "--out", "p"])[1],
                 "SHA-256", id="agents-model-corrupt"),
]


def run_command(argv: list[str]) -> int:
    if argv[0] == "generate":
        return generate_main(argv[1:])
    if argv[0] == "agents":
        return agents_main(argv[1:])
    return latentworld_main(argv)


@pytest.mark.parametrize("setup, message", CASES)
def test_bad_input_gives_one_line_and_changes_nothing(world, setup, message, capsys):
    argv = setup(world)
    capsys.readouterr()
    before = snapshot(world, PACKAGE_DIR)
    assert run_command(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], lines
    assert snapshot(world, PACKAGE_DIR) == before


def test_debug_shows_the_traceback(world):
    with pytest.raises(Exception, match="steps: must lie"):
        latentworld_main([*TRAIN, "--set", "steps=0", "--run-dir", "r", "--debug"])


def test_yaml_float_spellings_and_integral_numbers_are_read_as_numbers(tmp_path):
    config = load_config(DEBUG_CONFIG, ["lr=1e-3", "schedule.d0=5E-2", "steps=1e2", "schedule.lambda_max=1e4"])
    assert (config.lr, config.schedule.d0, config.steps, config.schedule.lambda_max) == (1e-3, 5e-2, 100, 1e4)
    assert isinstance(config.steps, int)
    preset = write_file(str(tmp_path / "preset.yaml"), f"base: {DEBUG_CONFIG}\nlr: 3e-4\nschedule:\n  d0: 1e-2\n")
    config = load_config(preset)
    assert (config.lr, config.schedule.d0, config.steps) == (3e-4, 1e-2, 20)
    huge = 12345678901234567891  # read exactly, not rounded through a float
    assert load_config(None, [f"steps={huge}"]).steps == huge


def test_sixteen_bit_and_float_goal_images_equal_the_eight_bit_goal(world):
    from latentworld.experiment.checkpoint import load_model
    from latentworld.latent_envs.goals import load_goal

    model, _, _ = load_model("run")
    image = np.zeros((16, 16), np.uint8)
    image[2:9, 7:9] = 255
    eight = load_goal(model, png("g8.png", image), "pos")
    sixteen = load_goal(model, png("g16.png", image.astype(np.uint16) * 257), "pos")
    unit = load_goal(model, npy("gf.npy", image / 255.0), "pos")
    torch.testing.assert_close(sixteen, eight)
    torch.testing.assert_close(unit, eight)


def test_an_opaque_alpha_channel_is_dropped_and_a_transparent_one_refused():
    from latentworld.common.errors import GoalError
    from latentworld.latent_envs.goals import as_observation_batch

    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    opaque = np.dstack([rgb, np.full((8, 8), 255, np.uint8)])
    torch.testing.assert_close(as_observation_batch(opaque, (3, 8, 8)), as_observation_batch(rgb, (3, 8, 8)))
    transparent = opaque.copy()
    transparent[0, 0, 3] = 0
    with pytest.raises(GoalError, match="transparent"):
        as_observation_batch(transparent, (3, 8, 8))


def test_evaluating_the_shipped_model_writes_only_into_its_own_output_folder(small_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = snapshot(PACKAGE_DIR)
    assert latentworld_main(["evaluate", "pendulum_ekvae", "--data", small_data]) == 0
    assert snapshot(PACKAGE_DIR) == before
    out = tmp_path / "runs" / "evaluate" / "pendulum_ekvae"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(p.name for p in out.iterdir())
    assert (out / "eval.json").exists()
    check_output_dir(out, EVAL_OUTPUTS, "--out")  # a second evaluate may refresh its own folder


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(world, monkeypatch, capsys):
    from latentworld.experiment import checkpoint

    before = snapshot(world / "half" / "checkpoint")

    def full_disk(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(checkpoint, "write_synced", full_disk)
    assert latentworld_main([*TRAIN, "--resume", "--run-dir", "half"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert snapshot(world / "half" / "checkpoint") == before
    assert not (world / "half" / ".checkpoint.new").exists()
