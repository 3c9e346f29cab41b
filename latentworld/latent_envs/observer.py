"""The model's online filter over raw real-env frames: what a controller in the real world sees.

A policy trained in the latent env observes the latent state z_t. In the real env z_t is unknown;
the :class:`Observer` runs the model's filter one frame at a time and keeps the belief
N(mean, cov) over z_t. **The rule, the same in both worlds: the policy observes the belief mean.**
In the latent env the state is known exactly (a belief with zero covariance), so its mean is z_t
itself; in the real env it is the filtered mean E[z_t | x_1:t, u_1:t-1]. A sample would add noise
to every action for no benefit, so none is drawn.

No MuJoCo here: frames are arrays (uint8 ``(H, W, C)`` as ``envs`` renders them, or float angle
features), so any source of frames can drive it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from latentworld.latent_envs.goals import as_observation_batch
from latentworld.models.base import StateSpaceModel


class Observer:
    """Stateful online filter: ``reset(first_frame)``, then ``step(prev_action, frame)`` per env step.

    Args:
        model: a :class:`~latentworld.models.base.StateSpaceModel` (its ``filter_step``,
            ``obs_shape`` and ``dim_u``).
    """

    def __init__(self, model: StateSpaceModel) -> None:
        model.require_markovian("the real-env observer")
        self.model = model
        self.dim_u: int = model.dim_u
        self._belief: tuple[Tensor, Tensor] | None = None

    def _frame(self, frame: Any) -> Tensor:
        batch = as_observation_batch(np.asarray(frame), self.model.obs_shape)
        if batch.shape[0] != 1:
            raise ValueError(f"one frame at a time: got a batch of {batch.shape[0]}")
        if not torch.isfinite(batch).all():
            raise ValueError("frame contains NaN or infinite values")
        return batch

    def reset(self, frame: Any) -> np.ndarray:
        """Start a new episode at its first frame. Returns the belief mean ``(Dz,)`` float32."""
        self._belief = self.model.filter_step(None, None, self._frame(frame))
        return self.mean

    def step(self, prev_action: Any, frame: Any) -> np.ndarray:
        """Fold in the action applied since the last frame and the new frame. Returns the mean ``(Dz,)``."""
        if self._belief is None:
            raise RuntimeError("call reset(first_frame) before step()")
        u = torch.as_tensor(np.asarray(prev_action, dtype=np.float32)).reshape(1, -1)
        if u.shape[1] != self.dim_u:
            raise ValueError(f"action has {u.shape[1]} values, the model expects {self.dim_u}")
        self._belief = self.model.filter_step(self._belief, u, self._frame(frame))
        return self.mean

    @property
    def mean(self) -> np.ndarray:
        """The belief mean ``(Dz,)`` float32: what the policy observes."""
        if self._belief is None:
            raise RuntimeError("no belief yet: call reset(first_frame)")
        return self._belief[0][0].numpy().astype(np.float32)

    @property
    def cov(self) -> np.ndarray:
        """The belief covariance ``(Dz, Dz)``."""
        if self._belief is None:
            raise RuntimeError("no belief yet: call reset(first_frame)")
        return self._belief[1][0].numpy()
