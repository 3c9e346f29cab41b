"""The differentiable planning-horizon optimiser (paper §6.4).

Maximises J(ω) = Σ_{t=1}^{H−1} E[r_{t+1}] over a batch of start states by back-propagating the
reward of reparameterised rollouts of the latent dynamics into the policy π_ω(u | z) (Adam).
Every ``validate_every`` iterations the policy is scored on fixed validation states with the mean
dynamics over ``validation_horizon`` steps, and the best snapshot is the one that is kept.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from agents.policy import MLPPolicy
from agents.problem import LatentProblem, rollout_return
from latentworld.common.settings import MAX_SEED, check_settings, setting


@dataclass
class JOmegaConfig:
    """Settings of the J(ω) optimiser."""

    iterations: int = setting(600, low=1)
    """Adam steps."""
    horizon: int = setting(40, low=2)
    """H, the planning horizon of each training rollout (steps of the model, 0.08 s each on the pendulum);
    at least 2, as J sums the rewards r_2..r_H."""
    batch_size: int = setting(256, low=1)
    """Start states per iteration."""
    lr: float = setting(1e-2, low=0, low_open=True)
    """Adam learning rate."""
    hidden: int = setting(64, low=1)
    """Width of the policy's two hidden layers."""
    grad_clip: float = setting(10.0, low=0, low_open=True)
    """Gradient-norm clip (back-propagation through long horizons can spike)."""
    validate_every: int = setting(25, low=1)
    """Iterations between validations (the best validated snapshot is kept)."""
    validation_horizon: int = setting(60, low=2)
    """Steps of each validation rollout."""
    seed: int = setting(0, low=0, high=MAX_SEED)
    """Seed of the policy initialisation and of the start-state draws."""

    def __post_init__(self) -> None:
        check_settings(self)


def make_policy(problem: LatentProblem, hidden: int) -> MLPPolicy:
    """A fresh policy whose observation scaling is the spread of the training start states."""
    return MLPPolicy(*problem.observation_scaling(), problem.action_low, problem.action_high, hidden)


def train_jomega(problem: LatentProblem, config: JOmegaConfig, log_dir: Path | None = None,
                 progress: bool = True, init: dict[str, torch.Tensor] | None = None) -> tuple[MLPPolicy, dict[str, Any]]:
    """Optimise a policy on ``problem``, from scratch or from the weights ``init`` of another J(ω) policy
    of the same width (its observation scaling included).

    Returns:
        The best validated policy and a report (``best_validation_return``, ``best_iteration``,
        ``history``, ``train_seconds``, the config).
    """
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    policy = make_policy(problem, config.hidden)
    if init is not None:
        policy.load_state_dict(init)
    optimiser = torch.optim.Adam(policy.parameters(), lr=config.lr)
    writer = SummaryWriter(str(log_dir)) if log_dir is not None else None
    best_state, best_return, best_iteration = copy.deepcopy(policy.state_dict()), -float("inf"), 0
    history: list[dict[str, float]] = []
    start_time = time.perf_counter()
    bar = tqdm(range(1, config.iterations + 1), desc="J(ω)", disable=not progress, unit="it")
    for iteration in bar:
        index = torch.randint(problem.starts.shape[0], (config.batch_size,), generator=generator)
        goal = problem.training_goals(config.batch_size, generator)
        objective = rollout_return(policy, problem.dynamics, problem.starts[index], goal, config.horizon,
                                   generator).mean()
        optimiser.zero_grad()
        (-objective).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
        optimiser.step()
        if writer is not None:
            writer.add_scalar("train/J", objective.item(), iteration)
            writer.add_scalar("train/grad_norm", float(grad_norm), iteration)
        if iteration % config.validate_every == 0 or iteration == config.iterations:
            value = problem.validation_return(policy, config.validation_horizon)
            history.append({"iteration": iteration, "J": objective.item(), "validation_return": value,
                            "seconds": time.perf_counter() - start_time})
            if value > best_return:
                best_state, best_return, best_iteration = copy.deepcopy(policy.state_dict()), value, iteration
            bar.set_postfix(J=f"{objective.item():.1f}", val=f"{value:.1f}", best=f"{best_return:.1f}")
            if writer is not None:
                writer.add_scalar("eval/validation_return", value, iteration)
    if writer is not None:
        writer.close()
    policy.load_state_dict(best_state)
    report = {"best_validation_return": best_return, "best_iteration": best_iteration, "history": history,
              "train_seconds": time.perf_counter() - start_time, "config": asdict(config)}
    return policy.eval(), report
