import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
import torch
from synthetic import write_synthetic_pendulum

from latentworld.cli import main
from latentworld.common.errors import RunDirError
from latentworld.experiment.checkpoint import CheckpointError, git_commit, load_model
from latentworld.experiment.config import load_config
from latentworld.experiment.history import read_history
from latentworld.training.trainer import Trainer


@pytest.mark.parametrize("preset", sorted(p.name for p in (Path(__file__).parents[1] / "configs").glob("*.yaml")))
def test_every_preset_loads_with_its_models_settings(preset):
    from latentworld.models import MODELS

    config = load_config(f"configs/{preset}")
    model_class = MODELS[config.model.kind]
    assert model_class.config_class is type(config.model)
    if preset == "pendulum_ekvae_fast.yaml":  # the base preset with a 3-dim a and the fast schedule's changes
        base = load_config("configs/pendulum_ekvae.yaml")
        assert config.model == dataclasses.replace(base.model, dim_z=4, dim_a=3)
        assert (config.batch_size, config.schedule.calibration_steps, config.steps, config.lr, config.eval_every) == (
            32, 100, 2000, 0.002, 100)


@pytest.fixture()
def debug_config(tmp_path):
    data = write_synthetic_pendulum(tmp_path / "pendulum.npz")
    return load_config("configs/debug.yaml", [f"data={data}", "threads=1"])


def test_debug_training_writes_a_loadable_checkpoint(debug_config, tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(debug_config, run)
    last = trainer.fit(progress=False)
    assert trainer.step == debug_config.steps and "eval/r2_hinge_angle" in last
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint", "history.jsonl", "run_config.yaml", "tb"]
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == ["config.yaml", "meta.json", "model.pt",
                                                                       "trainer_state.pt"]
    assert any((run / "tb").iterdir())
    state = torch.load(run / "checkpoint" / "model.pt", weights_only=True)
    model, config, meta = load_model(run, expect_kind="ekvae")
    assert meta["step"] == debug_config.steps and meta["model_class"] == "ekvae"
    assert meta["precision"] == "float32"  # the debug config's
    torch.testing.assert_close(model.state_dict()["F_bases"], state["F_bases"])
    assert config == debug_config
    history = read_history(run)
    assert history[-1]["step"] == debug_config.steps and history[-1]["rewo/d0"] > 0
    assert not history[-1]["rewo/initial_phase"]


def test_resume_reproduces_an_uninterrupted_run(debug_config, tmp_path):
    straight = Trainer(debug_config, tmp_path / "a")
    straight.fit(progress=False)
    Trainer(debug_config, tmp_path / "b").fit(progress=False, until=10)  # as if killed after step 10 ...
    with (tmp_path / "b" / "history.jsonl").open("a") as history:  # ... having logged step 15 already
        history.write(json.dumps({"step": 15, "wall": 0.0}) + "\n")
    # Where a run trains may change on resume (here "auto" → "cpu", the same device on this machine).
    resumed = Trainer(dataclasses.replace(debug_config, device="cpu"), tmp_path / "b", resume=True)
    assert resumed.step == 10
    resumed.fit(progress=False)
    assert [row["step"] for row in read_history(tmp_path / "b")] == [row["step"] for row in read_history(
        tmp_path / "a")]  # no duplicated history lines
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, msg=key)


def test_existing_run_is_not_overwritten_without_resume(debug_config, tmp_path):
    Trainer(debug_config, tmp_path / "run").fit(progress=False)
    before = (tmp_path / "run" / "checkpoint" / "model.pt").read_bytes()
    with pytest.raises(RunDirError, match="--resume"):
        Trainer(debug_config, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoint" / "model.pt").read_bytes() == before


def test_bad_checkpoints_give_one_clear_error(debug_config, tmp_path):
    run = tmp_path / "run"
    Trainer(debug_config, run).fit(progress=False)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="expected 'rssm'"):
        load_model(run, expect_kind="rssm")
    checkpoint = run / "checkpoint"
    meta = json.loads((checkpoint / "meta.json").read_text())
    (checkpoint / "meta.json").write_text(json.dumps({**meta, "model_class": "planet"}))
    with pytest.raises(CheckpointError, match="unknown model class"):
        load_model(run)
    (checkpoint / "meta.json").write_text(json.dumps(meta))
    (checkpoint / "model.pt").write_bytes((checkpoint / "model.pt").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(run)


def test_cli_train_and_evaluate(debug_config, tmp_path, capsys):
    data = debug_config.data
    run = tmp_path / "cli_run"
    assert main(["train", "--config", "configs/debug.yaml", "--set", f"data={data}", "--set", "threads=1",
                 "--run-dir", str(run), "--no-progress"]) == 0
    assert main(["evaluate", str(run), "--out", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "ours: VHP-EKVAE (CO)" in out and "r2_hinge_angle" in out
    for name in ("latent_space.png", "predictions.png", "training_curves.png", "eval.json"):
        assert (tmp_path / "eval" / name).exists(), name
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_atomic_target_keeps_the_old_file_when_the_write_fails(tmp_path):
    from latentworld.common.fileio import atomic_target

    path = tmp_path / "file.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_target(path) as tmp:
        tmp.write_bytes(b"half-writ")
        raise RuntimeError("killed")
    assert path.read_bytes() == b"old" and list(tmp_path.iterdir()) == [path]


def test_a_history_line_cut_off_by_a_kill_blocks_neither_resume_nor_evaluate(debug_config, tmp_path):
    Trainer(debug_config, tmp_path / "run").fit(progress=False, until=10)
    with (tmp_path / "run" / "history.jsonl").open("a") as history:
        history.write('{"step": 11, "wal')  # the kill came mid-line
    assert [row["step"] for row in read_history(tmp_path / "run")] == [10]
    assert main(["evaluate", str(tmp_path / "run"), "--out", str(tmp_path / "eval")]) == 0
    assert (tmp_path / "eval" / "training_curves.png").exists()
    resumed = Trainer(debug_config, tmp_path / "run", resume=True)
    resumed.fit(progress=False)
    assert [row["step"] for row in read_history(tmp_path / "run")] == [10, 20]


@pytest.mark.parametrize("crash_state", ["new_written", "between_renames", "old_not_removed", "new_partial"])
def test_a_save_interrupted_at_any_stage_leaves_one_consistent_checkpoint(debug_config, tmp_path, crash_state):
    """The directory states a kill can leave inside save_checkpoint; load reads a consistent checkpoint
    and the next resume repairs the folder."""
    import shutil

    run = tmp_path / "run"
    Trainer(debug_config, run).fit(progress=False, until=10)
    current, new, old = run / "checkpoint", run / ".checkpoint.new", run / ".checkpoint.old"
    shutil.copytree(current, new)
    meta = json.loads((new / "meta.json").read_text())
    (new / "meta.json").write_text(json.dumps({**meta, "step": 99}))  # marks the "newer" save
    if crash_state == "between_renames":
        current.rename(old)
    elif crash_state == "old_not_removed":
        shutil.copytree(current, old)
        shutil.rmtree(current)
        new.rename(current)
    elif crash_state == "new_partial":
        (new / "model.pt").unlink()
    before_repair, after_repair = {"new_written": (10, 10), "between_renames": (10, 99),
                                   "old_not_removed": (99, 99), "new_partial": (10, 10)}[crash_state]
    assert load_model(run)[2]["step"] == before_repair  # read-only: the previous or the new checkpoint
    Trainer(debug_config, run, resume=True)  # repairs the folder
    assert load_model(run)[2]["step"] == after_repair
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint", "history.jsonl", "run_config.yaml", "tb"]


@pytest.mark.parametrize("kind, small", [
    ("dks", ["model.rnn_hidden=8", "model.transition_hidden=8"]),
    ("dvbs", ["model.recognition_hidden=8", "model.num_bases=3", "model.mixer_hidden=8"]),
])
def test_the_baselines_train_and_evaluate_through_the_cli(kind, small, tmp_path, capsys):
    data = write_synthetic_pendulum(tmp_path / "pendulum.npz")
    settings = [f"data={data}", "threads=1", "steps=12", "eval_every=6", "batch_size=4", "schedule.calibration_steps=4",
                "model.hidden=16", "model.feature_dim=8", *small]
    run = tmp_path / kind
    assert main(["train", "--config", f"configs/pendulum_{kind}.yaml", *(p for s in settings for p in ("--set", s)),
                 "--run-dir", str(run), "--no-progress"]) == 0
    model, config, meta = load_model(run)
    assert meta["model_class"] == config.model.kind == model.kind == kind and meta["position_dims"] is None
    assert main(["evaluate", str(run), "--out", str(tmp_path / "eval")]) == 0
    assert f"ours: VHP-{kind.upper()} (CO)" in capsys.readouterr().out
    assert main(["imagine", str(run), "--goal", "0,0,0"]) == 2  # no position/velocity split: no rewards
    assert "not split into position and velocity" in capsys.readouterr().err


def test_git_commit_marks_a_run_made_from_uncommitted_changes(tmp_path):
    assert git_commit(tmp_path) is None  # not a checkout
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "preset.yaml").write_text("steps: 1\n")
    subprocess.run([*git, "add", "preset.yaml"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "preset"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (tmp_path / "notes.txt").write_text("untracked files do not count\n")
    assert git_commit(tmp_path) == head
    (tmp_path / "preset.yaml").write_text("steps: 2\n")
    assert git_commit(tmp_path) == head + "-dirty"


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_takes_bfloat16_only_where_the_device_computes_it_natively(native, monkeypatch):
    import warnings

    from latentworld.common import device

    monkeypatch.setattr(device, "native_bfloat16", lambda _: native)
    cpu = torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither auto nor float32 warns
        assert device.resolve_precision("auto", cpu) == ("bfloat16" if native else "float32")
        assert device.resolve_precision("float32", cpu) == "float32"
        if native:
            assert device.resolve_precision("bfloat16", cpu) == "bfloat16"
    if not native:  # asked for explicitly, it is honoured, with a warning that it is emulated
        with pytest.warns(UserWarning, match="no native bfloat16"):
            assert device.resolve_precision("bfloat16", cpu) == "bfloat16"


def test_auto_precision_is_recorded_and_a_resume_in_another_precision_says_so(debug_config, tmp_path, monkeypatch):
    from latentworld.common import device

    config, run = dataclasses.replace(debug_config, precision="auto", steps=7), tmp_path / "run"
    monkeypatch.setattr(device, "native_bfloat16", lambda _: True)  # a machine with AMX, say
    Trainer(config, run).fit(progress=False)
    assert load_model(run)[2]["precision"] == "bfloat16"
    monkeypatch.setattr(device, "native_bfloat16", lambda _: False)  # resumed on one without
    with pytest.warns(UserWarning, match="trained in bfloat16 so far and continues in float32"):
        resumed = Trainer(dataclasses.replace(config, steps=9), run, resume=True)
    resumed.fit(progress=False)
    assert load_model(run)[2]["precision"] == "float32"


def test_native_bfloat16_follows_the_cpus_instruction_sets(monkeypatch):
    from latentworld.common.device import native_bfloat16

    for avx512_bf16, amx, expected in [(False, False, False), (True, False, True), (False, True, True)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert native_bfloat16(torch.device("cpu")) is expected


def test_native_bfloat16_on_a_gpu_does_not_count_emulation(monkeypatch):
    from latentworld.common.device import native_bfloat16

    asked = []
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: asked.append(
        including_emulation) or including_emulation)  # a GPU before Ampere: bfloat16 only emulated
    assert native_bfloat16(torch.device("cuda")) is False and asked == [False]
