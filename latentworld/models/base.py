"""The interface of a latentworld state-space model.

The trainer, the metrics, ``evaluate``, the goals, the latent envs and the real-env observer use a
model only through :class:`StateSpaceModel`; a new model subclasses it, implements every method,
is registered in ``latentworld.models.MODELS``, and passes :func:`latentworld.models.check.check_model`.

Shapes: x ``(B, T, *obs_shape)`` observations (images ``(C, H, W)`` in [0, 1], or vectors
``(Dobs,)``), u ``(B, T, Du)`` actions (``u[:, t]`` acts between frames t and t+1), z ``(..., Dz)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, NoReturn

import torch
from torch import Tensor, nn

from latentworld.common.errors import ModelCapabilityError
from latentworld.models.networks import check_observation_kind

Belief = tuple[Tensor, Tensor]
"""A Gaussian belief over z: mean ``(B, Dz)``, covariance ``(B, Dz, Dz)``; a policy observes the mean."""


class StateSpaceModel(nn.Module, ABC):
    """A deep state-space model: what training, evaluation and the latent envs need from it.

    Attributes:
        kind: the registry name: ``model.kind`` in a config, ``model_class`` in ``meta.json``.
        config_class: its settings dataclass (fields declared with ``latentworld.common.settings.setting``,
            first of them ``kind``); built as ``model_class(config, obs_shape, dim_u)``.
        markovian: whether z_t alone is the model's state. A model whose transition also reads a
            recurrent state (the KVAE's LSTM, the RSSM's GRU) is not: its ``sample_next``,
            ``filter_step`` (and ``decode_mean`` where decoding reads that state) raise
            :class:`~latentworld.common.errors.ModelCapabilityError`, and the latent envs and the observer
            refuse it. It still trains, is evaluated and predicts (carrying the state inside).
        obs_shape: one observation's shape.
        dim_u: action size.
    """

    kind: ClassVar[str]
    config_class: ClassVar[type]
    markovian: ClassVar[bool] = True
    config: Any
    obs_shape: tuple[int, ...]
    dim_u: int

    @classmethod
    def label(cls, config: Any) -> str:
        """The model's row name in result tables: its kind in capitals, "VHP-" before it with the VHP."""
        return f"VHP-{cls.kind.upper()}" if config.prior == "vhp" else cls.kind.upper()

    @classmethod
    def check_data(cls, config: Any, is_image: bool, obs_shape: tuple[int, ...], source: str) -> None:
        """Raise :class:`~latentworld.common.errors.DatasetError` if a data set (images or vectors of
        ``obs_shape``, named ``source``) cannot be modelled with ``config`` (by default: whether its
        ``obs_kind`` observation networks take such data)."""
        check_observation_kind(config.obs_kind, is_image, obs_shape, source)

    def require_markovian(self, use: str) -> None:
        """Raise :class:`~latentworld.common.errors.ModelCapabilityError` unless z alone is the state (``use``
        names what needed it, e.g. "a latent env")."""
        if not self.markovian:
            self.refuse_step_by_step(use)

    def refuse_step_by_step(self, use: str) -> NoReturn:
        """What a non-Markov model's ``sample_next`` and ``filter_step`` do: raise
        :class:`~latentworld.common.errors.ModelCapabilityError` naming ``use``."""
        raise ModelCapabilityError(
            f"{use} needs a model whose state is z alone; the {self.kind} carries a recurrent state beside z "
            "(its transition is not Markov in z), so it is trained, evaluated and predicts, but is not imagined "
            "or filtered step by step; use ekvae, dks or dvbs")

    # ----- sizes
    @property
    def dim_z(self) -> int:
        """Size of the latent state z (the config's ``dim_z``)."""
        return self.config.dim_z

    @property
    def position_dims(self) -> int | None:
        """Dp when the first Dp dims of z are the position and the rest the velocity (the model is
        disentangled); None (the default) otherwise: the latent envs then offer only the whole-state
        reward."""
        return None

    # ----- training
    @abstractmethod
    def loss_terms(self, x: Tensor, u: Tensor) -> dict[str, Tensor]:
        """``distortion`` and ``rate`` ``(B,)`` in nats (one reparameterised sample), and
        ``distortion_per_dim`` (scalar: the batch mean per time step and observed dimension)."""

    @abstractmethod
    def observation_parameters(self) -> list[nn.Parameter]:
        """Decoder and recognition (θ, φ): all that REWO's initial phase trains (the EKVAE: its
        encoder q(a|x) and decoder; a model that infers z directly: its whole inference network)."""

    def dynamics_parameters(self) -> list[nn.Parameter]:
        """Every other parameter (the two groups partition ``parameters()``)."""
        own = {id(p) for p in self.observation_parameters()}
        return [p for p in self.parameters() if id(p) not in own]

    # ----- inference and prediction
    @abstractmethod
    def posterior_means(self, x: Tensor, u: Tensor) -> Tensor:
        """The posterior mean of z at every step ``(B, T, Dz)`` (smoothed where the model smooths):
        the features the metrics regress the true state on."""

    @abstractmethod
    def posterior_initial(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``(B, Dz)`` and covariance ``(B, Dz, Dz)`` of the posterior of z_1."""

    @abstractmethod
    def predict(self, x: Tensor, u: Tensor, n_condition: int = 5, mode: str = "smoothed") -> Tensor:
        """Open-loop predicted mean observations ``(B, T', *obs_shape)`` after conditioning on the first
        ``n_condition`` frames; ``mode`` ``"smoothed"`` (T' = T) or ``"filtered"`` (T' = T − n + 1)."""

    # ----- imagination (latent envs)
    @abstractmethod
    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples of z_1 from the prior, ``(n, Dz)``."""

    @abstractmethod
    def sample_next(self, z: Tensor, u: Tensor, generator: torch.Generator | None = None,
                    noise_scale: float = 1.0) -> Tensor:
        """One sample of z_{t+1} given z_t ``(N, Dz)`` and u_t ``(N, Du)``, the noise scaled by
        ``noise_scale`` (0: the mean). Returns ``(N, Dz)``."""

    @abstractmethod
    def decode_mean(self, z: Tensor) -> Tensor:
        """Mean observation of z ``(..., Dz)``: ``(..., *obs_shape)``."""

    # ----- the real world (observer, goals)
    @abstractmethod
    def filter_step(self, belief: Belief | None, u_prev: Tensor | None, x: Tensor) -> Belief:
        """Online filtering: the belief after frame x ``(B, *obs_shape)``, from the previous belief
        and the action ``(B, Du)`` since (both None at the first frame)."""

    @abstractmethod
    def encode_position(self, x: Tensor) -> Tensor:
        """Position code of single frames x ``(N, *obs_shape)``: ``(N, position_dims)``, the target
        of an image goal."""
