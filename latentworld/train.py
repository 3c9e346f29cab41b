"""Training loop: REWO (or annealing) over a model's distortion and rate.

The loss of one iteration is ``w_R * R + w_D * (D - D0)`` averaged over the batch, with the
weights from the schedule (``latentworld.rewo``). During REWO's initial phase only the
observation networks (θ, φ) are stepped; afterwards everything. A run directory holds the
checkpoint files (``latentworld.checkpoint``), ``history.jsonl`` (one line per logged step)
and TensorBoard events under ``tb/``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from latentworld.checkpoint import TRAINER_FILE, CheckpointError, git_commit, load_torch, save_checkpoint
from latentworld.config import TrainConfig
from latentworld.data import SequenceDataset, load_dataset
from latentworld.fileio import atomic_write_bytes
from latentworld.metrics import r2_scores
from latentworld.models import MODELS
from latentworld.rewo import KLAnnealing, Rewo

HISTORY_FILE = "history.jsonl"
LOG_EVERY = 25
VALIDATION_SEQUENCES = 256


def make_schedule(config: TrainConfig) -> Rewo | KLAnnealing:
    s = config.schedule
    if s.kind == "rewo":
        return Rewo(s.d0, alpha=s.alpha, nu=s.nu, tau1=s.tau1, tau2=s.tau2, lambda_max=s.lambda_max)
    if s.kind == "annealing":
        return KLAnnealing(beta0=s.beta0, steps=s.anneal_steps)
    raise ValueError(f"unknown schedule {s.kind!r}; use 'rewo' or 'annealing'")


def build_model(config: TrainConfig, data: SequenceDataset, kind: str = "ekvae") -> torch.nn.Module:
    return MODELS[kind](config.model, tuple(data.obs.shape[2:]), data.actions.shape[-1])


def model_meta(config: TrainConfig, data: SequenceDataset, kind: str, step: int, extra: dict[str, Any]
               ) -> dict[str, Any]:
    return {
        "model_class": kind,
        "obs_shape": list(data.obs.shape[2:]),
        "dim_u": int(data.actions.shape[-1]),
        "dim_z": config.model.dim_z,
        "dim_a": config.model.dim_a,
        "data": config.data,
        "env_id": data.metadata["env_id"],
        "dataset_name": data.metadata.get("name"),
        "action_low": data.metadata.get("action_low"),
        "action_high": data.metadata.get("action_high"),
        "action_repeat": data.metadata["action_repeat"],
        "git_commit": git_commit(),
        "step": step,
        **extra,
    }


class Trainer:
    """Owns the model, optimiser, schedule and run directory of one training run.

    Args:
        config: the resolved configuration.
        run_dir: where checkpoints, history and TensorBoard events go.
        resume: continue from ``run_dir/trainer_state.pt`` (required if the directory already
            holds a checkpoint, so that nothing is overwritten by accident).
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path, resume: bool = False) -> None:
        self.config, self.run_dir = config, Path(run_dir)
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.train_data = load_dataset(config.data, "train")
        self.test_data = load_dataset(config.data, "test")
        self.kind = "ekvae"
        self.model = build_model(config, self.train_data, self.kind)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.schedule = make_schedule(config)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step, self.elapsed = 0, 0.0
        has_checkpoint = (self.run_dir / TRAINER_FILE).exists()
        if has_checkpoint and not resume:
            raise FileExistsError(f"{self.run_dir} already holds a checkpoint; pass --resume to continue it "
                                  "or choose another --run-dir")
        if resume and has_checkpoint:
            self._load_state()

    def _load_state(self) -> None:
        state = load_torch(self.run_dir / TRAINER_FILE)
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise CheckpointError(f"{self.run_dir} was trained with another model config; resume it with "
                                  f"the config in its config.yaml ({err})") from err
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        # Steps logged after the last checkpoint are trained again: drop their history lines.
        history = [row for row in read_history(self.run_dir) if row["step"] <= self.step]
        atomic_write_bytes(self.run_dir / HISTORY_FILE, "".join(json.dumps(row) + "\n" for row in history).encode())

    def save(self, extra: dict[str, Any] | None = None) -> None:
        trainer_state = {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": self.step,
            "elapsed": self.elapsed,
        }
        meta = model_meta(self.config, self.train_data, self.kind, self.step,
                          {"schedule": self.config.schedule.kind, "d0": self.schedule.d0,
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
        c = self.config
        index = torch.randint(len(self.train_data), (c.batch_size,), generator=self.generator)
        terms = self.model.loss_terms(self.train_data.obs[index], self.train_data.actions[index])
        weights = self.schedule.update(terms["distortion_per_dim"].item())
        distortion, rate = terms["distortion"].mean(), terms["rate"].mean()
        logged_distortion, logged_rate = distortion.item(), rate.item()
        d0_total = (self.schedule.d0 or 0.0) * self.train_data.obs[0].numel()  # per-dim D0 → per sequence
        loss = weights.rate * rate + weights.distortion * (distortion - d0_total)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.schedule.initial_phase:  # REWO: only (θ, φ) move before the constraint first holds
            for parameter in self.model.dynamics_parameters():
                parameter.grad = None
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = self._learning_rate()
        self.optimizer.step()
        self.step += 1
        s = c.schedule
        if isinstance(self.schedule, Rewo) and self.schedule.d0 is None and self.step >= s.calibration_steps:
            self.schedule.calibrate(s.d0_margin)
        return {
            "train/distortion": logged_distortion,
            "train/rate": logged_rate,
            "train/elbo": -(logged_distortion + logged_rate),
            "train/distortion_per_dim": terms["distortion_per_dim"].item(),
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
        writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step or None)
        history = (self.run_dir / HISTORY_FILE).open("a")
        bar = tqdm(total=c.steps, initial=self.step, desc="train", disable=not progress, dynamic_ncols=True)
        last: dict[str, float] = {}
        try:
            while self.step < until:
                start = time.perf_counter()
                scalars = self.train_step()
                self.elapsed += time.perf_counter() - start
                if self.step % c.eval_every == 0 or self.step == until:
                    scalars.update({f"eval/{k}": v for k, v in self._validation_r2().items()})
                    self.save()
                if self.step % LOG_EVERY == 0 or any(k.startswith("eval/") for k in scalars):
                    scalars["perf/steps_per_sec"] = self.step / max(self.elapsed, 1e-9)
                    for key, value in scalars.items():
                        writer.add_scalar(key, value, self.step)
                    history.write(json.dumps({"step": self.step, "wall": round(self.elapsed, 2), **scalars}) + "\n")
                    history.flush()
                    bar.set_postfix({"D": f"{scalars['train/distortion_per_dim']:.4f}",
                                     "R": f"{scalars['train/rate']:.1f}",
                                     "lam": f"{scalars['rewo/lambda']:.3g}"})
                last = scalars
                bar.update(1)
        finally:
            bar.close()
            history.close()
            writer.close()
        return last


def read_history(run_dir: str | Path) -> list[dict[str, float]]:
    """The logged scalars of a run, one dictionary per logged step."""
    path = Path(run_dir) / HISTORY_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
