"""Weighting schedules between distortion and rate: REWO (paper Alg. 1) and KL annealing.

Both expose the same small interface to the trainer: ``update(distortion) -> weights``,
``initial_phase`` and ``state_dict``/``load_state_dict`` for resume. The trainer's loss is
``rate_weight * R + distortion_weight * (D - D0)`` (the constant ``D0`` does not change
gradients; it is kept so the logged Lagrangian matches Eq. 4).

Distortion here is measured **per time step and observed dimension** (nats per pixel for
images, per feature for angle vectors), so ``D0`` and the REWO slopes transfer across
sequence length and image size.

Choosing ``D0`` (paper App. A.1 is not available to us): ``D0`` is the reconstruction
quality the model must reach before it may learn dynamics. Our heuristic, used by the
trainer when ``d0`` is left unset: train encoder/decoder alone (the initial phase) for a
fixed number of iterations — this is a plain VAE on single frames — take the mean distortion
``D_vae`` of its last ``1 / (1 - alpha)`` batches and set ``D0 = D_vae + margin * |D_vae|``
(margin 0.1 by default; the absolute value keeps the bound looser than ``D_vae`` also for a
Gaussian decoder, whose distortion can be negative).

One guard beyond Alg. 1: lambda is kept in ``[1 / lambda_max, lambda_max]``. With an explicit
``D0`` far below the starting distortion the multiplicative law would otherwise grow lambda
without bound (by e^(nu tau2 delta) per step) until ``lambda * D`` overflows.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass
class Weights:
    """Multipliers of the rate and of the distortion in the loss."""

    rate: float
    distortion: float


class Rewo:
    """The Lagrange-multiplier law of paper Alg. 1 / Eq. 8.

    ``lambda_i = lambda_{i-1} * exp(-nu * f(lambda_{i-1}, dhat_i - D0) * (dhat_i - D0))`` with
    ``f(lambda, delta) = (1 - H(delta)) * tanh(tau1 * (1/lambda - 1)) - tau2 * H(delta)``,
    ``dhat`` an exponential moving average of the batch distortion. While the constraint is
    violated lambda grows (more weight on reconstruction); once satisfied it decays back to
    1, where the Lagrangian is the negative ELBO. The initial phase (only encoder/decoder
    trained) ends the first time ``dhat <= D0``.

    Args:
        d0: distortion bound per time step and dimension; ``None`` until calibrated.
        alpha: EMA factor of the distortion (weight of the previous average).
        nu: step size of the multiplicative lambda update.
        tau1: slope of the decay toward 1 once the constraint holds.
        tau2: slope of the growth while the constraint is violated.
        lambda_max: lambda stays in ``[1 / lambda_max, lambda_max]`` (a numerical guard).
    """

    def __init__(self, d0: float | None, alpha: float = 0.99, nu: float = 1.0,
                 tau1: float = 1.0, tau2: float = 1.0, lambda_max: float = 1e4) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        self.d0 = d0
        self.alpha, self.nu, self.tau1, self.tau2 = alpha, nu, tau1, tau2
        self.lambda_max = lambda_max
        self.lam = 1.0
        self.ema: float | None = None
        self.initial_phase = True
        self.recent: deque[float] = deque(maxlen=round(1.0 / (1.0 - alpha)))  # the EMA's time scale

    def update(self, distortion: float) -> Weights:
        """Feed one batch-average distortion; return the weights for this iteration."""
        self.ema = distortion if self.ema is None else (1 - self.alpha) * distortion + self.alpha * self.ema
        if self.d0 is None:  # still calibrating D0: plain reconstruction training
            self.recent.append(distortion)
            return Weights(rate=1.0, distortion=self.lam)
        delta = self.ema - self.d0
        violated = delta > 0
        slope = -self.tau2 if violated else math.tanh(self.tau1 * (1.0 / self.lam - 1.0))
        self.lam = min(self.lambda_max, max(1.0 / self.lambda_max, self.lam * math.exp(-self.nu * slope * delta)))
        if not violated:
            self.initial_phase = False
        return Weights(rate=1.0, distortion=self.lam)

    def calibrate(self, margin: float) -> float:
        """Set ``D0 = D_vae + margin * |D_vae|`` from the recent distortions (the documented
        heuristic); return it."""
        if not self.recent:
            raise RuntimeError("calibrate() needs at least one update() first")
        reached = sum(self.recent) / len(self.recent)
        self.d0 = reached + margin * abs(reached)
        return self.d0

    @property
    def lagrange_multiplier(self) -> float:
        return self.lam

    def state_dict(self) -> dict[str, float | bool | list[float] | None]:
        return {"d0": self.d0, "lam": self.lam, "ema": self.ema, "initial_phase": self.initial_phase,
                "recent": list(self.recent)}

    def load_state_dict(self, state: dict[str, float | bool | list[float] | None]) -> None:
        self.d0, self.lam, self.ema = state["d0"], state["lam"], state["ema"]
        self.initial_phase = bool(state["initial_phase"])
        self.recent.clear()
        self.recent.extend(state["recent"])


class KLAnnealing:
    """The baseline: loss = beta * R + D with beta rising linearly from ``beta0`` to 1.

    Everything is trained from the first step (no initial phase).

    Args:
        beta0: the starting rate weight.
        steps: iterations over which beta reaches 1.
    """

    def __init__(self, beta0: float = 0.01, steps: int = 2000) -> None:
        self.beta0, self.steps = beta0, max(1, steps)
        self.i = 0
        self.initial_phase = False
        self.d0: float | None = 0.0

    @property
    def beta(self) -> float:
        return min(1.0, self.beta0 + (1.0 - self.beta0) * self.i / self.steps)

    def update(self, distortion: float) -> Weights:
        weights = Weights(rate=self.beta, distortion=1.0)
        self.i += 1
        return weights

    @property
    def lagrange_multiplier(self) -> float:
        return 1.0 / self.beta

    def state_dict(self) -> dict[str, float | bool | None]:
        return {"i": self.i}

    def load_state_dict(self, state: dict[str, float | bool | None]) -> None:
        self.i = int(state["i"])
