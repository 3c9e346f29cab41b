"""Training loop: REWO (or annealing) over a model's distortion and rate.

The loss of one iteration is ``w_R * R + w_D * (D - D0)`` averaged over the batch, with the
weights from the schedule (``latentworld.training.rewo``). During REWO's initial phase only the
observation networks (θ, φ) are stepped; afterwards everything.

A run directory holds ``run_config.yaml`` (the resolved config; it marks the folder as a run of
that experiment), ``checkpoint/`` (``latentworld.experiment.checkpoint``), ``history.jsonl`` (one line per
logged step, each step exactly once across kills and resumes) and TensorBoard events under
``tb/``. Training writes nowhere else, and only into a new or empty folder or, with ``--resume``,
a run of the same config.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from latentworld.common.data import SequenceDataset, load_dataset
from latentworld.common.device import resolve_precision, select_device
from latentworld.common.errors import CheckpointError, ConfigError, RunDirError
from latentworld.common.fileio import (
    atomic_write_bytes,
    check_writable,
    is_temporary,
    refuse_package_dir,
    remove_stale_temporaries,
)
from latentworld.evaluation.metrics import r2_scores
from latentworld.experiment.checkpoint import (
    CHECKPOINT_DIR,
    RUN_CONFIG_FILE,
    TRAINER_FILE,
    git_commit,
    load_torch,
    read_meta,
    repair_checkpoint,
    save_checkpoint,
    verify_files,
)
from latentworld.experiment.config import TrainConfig, config_from_dict, config_to_dict
from latentworld.experiment.history import HISTORY_FILE, read_history
from latentworld.models import MODELS, StateSpaceModel
from latentworld.models.networks import observation_precision
from latentworld.probability.noise import batch_shard
from latentworld.training.distributed import LossTerms, join_process_group
from latentworld.training.rewo import KLAnnealing, Rewo

LOG_EVERY = 25
VALIDATION_SEQUENCES = 256
# Config fields a resumed run may change: `steps` extends (or shortens) the run; the cosine learning-rate
# schedule then follows the new length from the resumed step on.
RESUMABLE_CHANGES = ("steps", "eval_every", "threads", "device")


def make_schedule(config: TrainConfig) -> Rewo | KLAnnealing:
    s = config.schedule
    if s.kind == "rewo":
        return Rewo(s.d0, alpha=s.alpha, nu=s.nu, tau1=s.tau1, tau2=s.tau2, lambda_max=s.lambda_max)
    return KLAnnealing(beta0=s.beta0, steps=s.anneal_steps)


def build_model(config: TrainConfig, data: SequenceDataset) -> StateSpaceModel:
    """The model ``config.model.kind`` for ``data``, or a :class:`DatasetError` if it cannot take them."""
    model_class, obs_shape = MODELS[config.model.kind], tuple(data.obs.shape[2:])
    model_class.check_data(config.model, data.is_image, obs_shape, config.data)
    return model_class(config.model, obs_shape, data.actions.shape[-1])


def config_differences(old: TrainConfig, new: TrainConfig) -> list[str]:
    """``"field: old -> new"`` for every setting that differs (``RESUMABLE_CHANGES`` aside)."""
    def flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in values.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    before, after = flat(config_to_dict(old)), flat(config_to_dict(new))
    keys = [*before, *(key for key in after if key not in before)]  # another model kind has other fields
    return [f"{key}: {before.get(key, '(absent)')!r} -> {after.get(key, '(absent)')!r}" for key in keys
            if before.get(key) != after.get(key) and key not in RESUMABLE_CHANGES]


def model_meta(config: TrainConfig, data: SequenceDataset, model: StateSpaceModel, step: int,
               extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "model_class": model.kind,
        "obs_shape": list(model.obs_shape),
        "dim_u": model.dim_u,
        "dim_z": model.dim_z,
        "position_dims": model.position_dims,
        "data": config.data,
        "env_id": data.metadata["env_id"],
        "dataset_name": data.metadata.get("name"),
        "action_low": data.metadata.get("action_low"),
        "action_high": data.metadata.get("action_high"),
        "action_repeat": data.metadata["action_repeat"],
        # How the training frames were drawn: an image model acts only on frames drawn alike.
        "camera": data.metadata.get("camera") if data.is_image else None,
        "git_commit": git_commit(),
        "step": step,
        **extra,
    }


class Trainer:
    """Owns the model, optimiser, schedule and run directory of one training run.

    Args:
        config: the resolved configuration.
        run_dir: where checkpoints, history and TensorBoard events go.
        resume: continue the run in ``run_dir`` (required if it already holds one, so that nothing
            is overwritten by accident; its config must equal ``config`` apart from
            ``RESUMABLE_CHANGES``). A missing or empty ``run_dir`` starts a new run either way.

    Raises:
        RunDirError: ``run_dir`` holds other files, or a run that ``resume`` does not allow to continue.
        DatasetError, CheckpointError: the data do not fit, or the checkpoint to resume is corrupt.
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path, resume: bool = False) -> None:
        self.config, self.run_dir = config, Path(run_dir)
        self.device = select_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)  # what "auto" means here
        self.group = join_process_group(self.device)
        if config.batch_size % self.group.world_size:
            raise ConfigError(f"batch_size ({config.batch_size}) must divide evenly among the "
                              f"{self.group.world_size} processes")
        continuing = self._check_run_dir(resume)  # before any expensive work; writes nothing
        check_writable(self.run_dir)
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.train_data = load_dataset(config.data, "train")
        self.test_data = load_dataset(config.data, "test")
        self.model = build_model(config, self.train_data).to(self.device)
        self.loss_terms: torch.nn.Module = LossTerms(self.model)
        if self.group.world_size > 1:  # averages the gradients of the processes during backward
            self.loss_terms = DistributedDataParallel(
                self.loss_terms, device_ids=[self.device] if self.device.type == "cuda" else None)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.schedule = make_schedule(config)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step, self.elapsed = 0, 0.0
        if self.group.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.run_dir)
            if continuing:
                repair_checkpoint(self.run_dir)
        self.group.barrier()  # the others read the repaired checkpoint
        if continuing and (self.run_dir / CHECKPOINT_DIR).exists():
            self._load_state()
        elif self.group.is_main:  # a new run, or one killed before its first checkpoint: its logs start over
            (self.run_dir / HISTORY_FILE).unlink(missing_ok=True)
            shutil.rmtree(self.run_dir / "tb", ignore_errors=True)
        if self.group.is_main:
            atomic_write_bytes(self.run_dir / RUN_CONFIG_FILE,
                               yaml.safe_dump(config_to_dict(config), sort_keys=False).encode())
        self.group.barrier()  # nobody trains before the run directory is ready

    def _check_run_dir(self, resume: bool) -> bool:
        """True if ``run_dir`` holds a run to continue; raise if it may not be written."""
        run_dir = self.run_dir
        refuse_package_dir(run_dir, "--run-dir")
        if run_dir.exists() and not run_dir.is_dir():
            raise RunDirError(f"--run-dir {run_dir} is a file, not a folder")
        if not run_dir.exists() or all(is_temporary(p) for p in run_dir.iterdir()):
            return False  # new, empty, or holding only what a kill during its creation left
        marker = run_dir / RUN_CONFIG_FILE
        if not marker.is_file():
            raise RunDirError(f"--run-dir {run_dir} already holds files and is not a training run (no "
                              f"{RUN_CONFIG_FILE}); choose a new or empty folder")
        if not resume:
            raise RunDirError(f"--run-dir {run_dir} already holds a training run; pass --resume to continue it, "
                              "or choose another --run-dir")
        try:
            previous = config_from_dict(yaml.safe_load(marker.read_text()), str(marker))
        except (yaml.YAMLError, UnicodeDecodeError, ConfigError) as err:
            raise RunDirError(f"{marker} is corrupt ({err}); cannot tell which experiment the run is") from None
        changed = config_differences(previous, self.config)
        if changed:
            raise RunDirError(f"--run-dir {run_dir} is a run of another config ({'; '.join(changed)}); resume it "
                              f"with --config {marker}, or choose another --run-dir")
        return True

    def _load_state(self) -> None:
        checkpoint_dir = self.run_dir / CHECKPOINT_DIR
        meta = read_meta(checkpoint_dir)
        verify_files(checkpoint_dir, meta, (TRAINER_FILE,))
        if meta.get("precision", self.precision) != self.precision:  # "auto" on another kind of machine
            warnings.warn(f"{self.run_dir} trained in {meta['precision']} so far and continues in {self.precision} "
                          f"(precision: {self.config.precision} on this {self.device.type})", stacklevel=3)
        state = load_torch(checkpoint_dir / TRAINER_FILE)
        try:
            self.model.load_state_dict(state["model"])
        except (KeyError, RuntimeError) as err:
            raise CheckpointError(f"{checkpoint_dir / TRAINER_FILE} does not match the run's config ({err})") from err
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and "cuda_rng" in state:  # the model's noise is drawn there
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        # Steps logged after the last checkpoint are trained again: drop their history lines (and a
        # line cut off by the kill).
        if not self.group.is_main:
            return
        history = [row for row in read_history(self.run_dir) if row["step"] <= self.step]
        atomic_write_bytes(self.run_dir / HISTORY_FILE, "".join(json.dumps(row) + "\n" for row in history).encode())

    def save(self, extra: dict[str, Any] | None = None) -> None:
        trainer_state = {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            **({"cuda_rng": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {}),
            "step": self.step,
            "elapsed": self.elapsed,
        }
        meta = model_meta(self.config, self.train_data, self.model, self.step,
                          {"schedule": self.config.schedule.kind, "d0": self.schedule.d0,
                           "world_size": self.group.world_size, "precision": self.precision,
                           "train_seconds": round(self.elapsed, 1), **(extra or {})})
        save_checkpoint(self.run_dir, self.model, self.config, meta, trainer_state)

    def _learning_rate(self) -> float:
        c = self.config
        progress = min(1.0, self.step / max(1, c.steps))
        return c.lr * (c.lr_final_fraction + (1 - c.lr_final_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))

    def _validation_r2(self) -> dict[str, float]:
        self.model.eval()
        index = torch.arange(min(VALIDATION_SEQUENCES, len(self.train_data)))
        subset = SequenceDataset(self.train_data.obs[index], self.train_data.actions[index],
                                 self.train_data.states[index], self.train_data.metadata)
        scores = r2_scores(self.model, subset, self.test_data)
        self.model.train()
        return scores

    def train_step(self) -> dict[str, float]:
        """One optimiser iteration on a random batch; returns the logged scalars."""
        c, group = self.config, self.group
        index = torch.randint(len(self.train_data), (c.batch_size,), generator=self.generator)
        index = index.view(group.world_size, -1)[group.rank]  # this process's shard of the global batch
        x, u = self.train_data.observations(index).to(self.device), self.train_data.actions[index].to(self.device)
        with batch_shard(group.rank, group.world_size), observation_precision(self.precision), record_function("forward"):
            terms = self.loss_terms(x, u)
        distortion, rate = terms["distortion"].mean(), terms["rate"].mean()
        # Global-batch means (equal shards), so REWO's λ and D0 agree across processes.
        logged_per_dim, logged_distortion, logged_rate = group.mean(
            torch.stack([terms["distortion_per_dim"], distortion, rate]).detach()).tolist()
        weights = self.schedule.update(logged_per_dim)
        d0_total = (self.schedule.d0 or 0.0) * self.train_data.obs[0].numel()  # per-dim D0 → per sequence
        loss = weights.rate * rate + weights.distortion * (distortion - d0_total)
        self.optimizer.zero_grad(set_to_none=True)
        with record_function("backward"):
            loss.backward()
        if self.schedule.initial_phase:  # REWO: only (θ, φ) move before the constraint first holds
            for parameter in self.model.dynamics_parameters():
                parameter.grad = None
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = self._learning_rate()
        with record_function("optimizer"):
            self.optimizer.step()
        self.step += 1
        s = c.schedule
        if isinstance(self.schedule, Rewo) and self.schedule.d0 is None and self.step >= s.calibration_steps:
            self.schedule.calibrate(s.d0_margin)
        return {
            "train/distortion": logged_distortion,
            "train/rate": logged_rate,
            "train/elbo": -(logged_distortion + logged_rate),
            "train/distortion_per_dim": logged_per_dim,
            "rewo/lambda": self.schedule.lagrange_multiplier,
            "rewo/initial_phase": float(self.schedule.initial_phase),
            "rewo/d0": float(self.schedule.d0 or 0.0),
        }

    def fit(self, progress: bool = True, until: int | None = None) -> dict[str, float]:
        """Train until step ``until`` (default ``config.steps``); checkpoint every ``eval_every``
        steps and at the end."""
        c = self.config
        until = c.steps if until is None else min(until, c.steps)
        self.model.train()
        main = self.group.is_main  # the one process that writes
        writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step or None) if main else None
        history = (self.run_dir / HISTORY_FILE).open("a") if main else None
        bar = tqdm(total=c.steps, initial=self.step, desc="train", disable=not (progress and main), dynamic_ncols=True)
        last: dict[str, float] = {}
        try:
            while self.step < until:
                start = time.perf_counter()
                scalars = self.train_step()
                self.elapsed += time.perf_counter() - start
                checkpoint_now = self.step % c.eval_every == 0 or self.step == until
                if checkpoint_now:
                    scalars.update({f"eval/{k}": v for k, v in self._validation_r2().items()})
                if main and (self.step % LOG_EVERY == 0 or checkpoint_now):
                    scalars["perf/steps_per_sec"] = self.step / max(self.elapsed, 1e-9)
                    for key, value in scalars.items():
                        writer.add_scalar(key, value, self.step)
                    # Logged before the checkpoint, so every step up to a checkpoint has its line.
                    history.write(json.dumps({"step": self.step, "wall": round(self.elapsed, 2), **scalars}) + "\n")
                    history.flush()
                    bar.set_postfix({"D": f"{scalars['train/distortion_per_dim']:.4f}",
                                     "R": f"{scalars['train/rate']:.1f}",
                                     "lam": f"{scalars['rewo/lambda']:.3g}"})
                if checkpoint_now and main:
                    self.save()
                last = scalars
                bar.update(1)
        finally:
            bar.close()
            if main:
                history.close()
                writer.close()
        return last
