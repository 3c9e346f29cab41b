"""Observation networks shared by the models: encoders q(a|x) and decoders p(x|a).

Three observation kinds:

- ``"image"`` small grayscale frames (e.g. 16×16): MLP encoder/decoder;
- ``"image_conv"`` larger RGB frames (e.g. 64×64×3): convolutional encoder/decoder, channels-last in
  memory (1.4× faster on a CPU than the default layout);
- ``"vector"`` angle features (cos/sin per joint): MLP with a Gaussian decoder.

Image decoders are **Bernoulli** over pixel intensities in [0, 1] (the usual choice for the
pendulum data; distortion is then the binary cross-entropy in nats). The vector decoder is
Gaussian with a learned per-dimension standard deviation.

Inside :func:`observation_precision` ("bfloat16"), encoders and decoders compute their matrix
products in bfloat16 (autocast; parameters and outputs stay float32). Nothing else is affected:
the transitions, priors and the Kalman core always compute in the model's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from latentworld.common.errors import DatasetError

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}
_precision: torch.dtype | None = None  # the autocast dtype of the observation networks, None: off


@contextmanager
def observation_precision(name: str) -> Iterator[None]:
    """Within the block, encoders and decoders compute in ``name`` (a key of ``PRECISIONS``)."""
    global _precision
    previous, _precision = _precision, PRECISIONS[name]
    try:
        yield
    finally:
        _precision = previous


def _run(body: nn.Module, x: Tensor) -> Tensor:
    """``body(x)`` in the current observation precision, returned in x's dtype."""
    if _precision is None:
        return body(x)
    with torch.autocast(x.device.type, dtype=_precision):
        return body(x).to(x.dtype)


class ChannelsLast(nn.Module):
    """Lays ``(N, C, H, W)`` out channels-last in memory (a no-op for frames already so, as the data
    set's uint8 pixels are)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last)


def mlp(n_in: int, n_hidden: int, n_out: int, n_layers: int = 2, activation: type[nn.Module] = nn.ReLU
        ) -> nn.Sequential:
    """``n_layers`` hidden layers of width ``n_hidden``, linear output."""
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(n_layers):
        layers += [nn.Linear(width, n_hidden), activation()]
        width = n_hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """q(a|x) = N(mean(x), diag exp(logvar(x))).

    Args:
        kind: ``"image"``, ``"image_conv"`` or ``"vector"``.
        obs_shape: ``(C, H, W)`` for images, ``(Dobs,)`` for vectors.
        dim_a: size of the auxiliary variable a.
        hidden: width of the hidden layers.
        conv_width: channels of the first two conv layers (the last two have twice as many).
    """

    def __init__(self, kind: str, obs_shape: tuple[int, ...], dim_a: int, hidden: int, conv_width: int = 32) -> None:
        super().__init__()
        self.kind = kind
        if kind == "image_conv":
            w = conv_width
            self.body = nn.Sequential(
                ChannelsLast(),
                nn.Conv2d(obs_shape[0], w, 4, 2, 1), nn.ReLU(),
                nn.Conv2d(w, w, 4, 2, 1), nn.ReLU(),
                nn.Conv2d(w, 2 * w, 4, 2, 1), nn.ReLU(),
                nn.Conv2d(2 * w, 2 * w, 4, 2, 1), nn.ReLU(),
                nn.Flatten(),
                nn.Linear(2 * w * (obs_shape[1] // 16) * (obs_shape[2] // 16), hidden), nn.ReLU(),
                nn.Linear(hidden, 2 * dim_a),
            ).to(memory_format=torch.channels_last)
        elif kind in ("image", "vector"):
            self.body = nn.Sequential(nn.Flatten(), mlp(math.prod(obs_shape), hidden, 2 * dim_a))
        else:
            raise ValueError(f"unknown observation kind {kind!r}")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x ``(N, *obs_shape)``. Returns: mean, logvar ``(N, Da)``."""
        mean, logvar = _run(self.body, x).chunk(2, dim=-1)
        return mean, logvar.clamp(-12.0, 6.0)


class Decoder(nn.Module):
    """p(x|a): Bernoulli for images, Gaussian with learned std for vectors.

    Args:
        kind: ``"image"``, ``"image_conv"`` or ``"vector"``.
        obs_shape: ``(C, H, W)`` for images, ``(Dobs,)`` for vectors.
        dim_a: size of a.
        hidden: width of the hidden layers.
        conv_width: channels of the last two transposed-conv layers (the first two have twice as many).
    """

    def __init__(self, kind: str, obs_shape: tuple[int, ...], dim_a: int, hidden: int, conv_width: int = 32) -> None:
        super().__init__()
        self.kind, self.obs_shape = kind, tuple(obs_shape)
        if kind == "image_conv":
            w = conv_width
            grid = (2 * w, obs_shape[1] // 16, obs_shape[2] // 16)
            self.body = nn.Sequential(
                nn.Linear(dim_a, hidden), nn.ReLU(),
                nn.Linear(hidden, math.prod(grid)), nn.ReLU(),
                nn.Unflatten(-1, grid), ChannelsLast(),
                nn.ConvTranspose2d(2 * w, 2 * w, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(w, w, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(w, obs_shape[0], 4, 2, 1),
            ).to(memory_format=torch.channels_last)
        else:
            self.body = nn.Sequential(mlp(dim_a, hidden, math.prod(obs_shape)), nn.Unflatten(-1, self.obs_shape))
        self.log_std = nn.Parameter(torch.full(self.obs_shape, -2.0)) if kind == "vector" else None

    def forward(self, a: Tensor) -> Tensor:
        """Args: a ``(N, Da)``. Returns: logits (images) or means (vectors) ``(N, *obs_shape)``."""
        return _run(self.body, a)

    def log_prob(self, x: Tensor, a: Tensor) -> Tensor:
        """log p(x|a) summed over observed dimensions. Args: x ``(N, *obs_shape)``, a ``(N, Da)``.

        Returns: ``(N,)``.
        """
        out = self(a)
        if self.log_std is None:
            return -F.binary_cross_entropy_with_logits(out, x, reduction="none").flatten(1).sum(-1)
        log_std = self.log_std.expand_as(out)
        log_density = -0.5 * ((x - out) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
        return log_density.flatten(1).sum(-1)

    def mean(self, a: Tensor) -> Tensor:
        """The mean observation ``(..., *obs_shape)`` given a ``(..., Da)``."""
        out = self(a.reshape(-1, a.shape[-1])).reshape(*a.shape[:-1], *self.obs_shape)
        return torch.sigmoid(out) if self.log_std is None else out


LOGVAR_RANGE = (-10.0, 4.0)  # the log-variances the baselines' Gaussian heads may take


def split_gaussian(out: Tensor) -> tuple[Tensor, Tensor]:
    """A Gaussian head's output ``(..., 2D)`` as mean and log-variance ``(..., D)``, the latter clamped
    to ``LOGVAR_RANGE``."""
    mean, logvar = out.chunk(2, dim=-1)
    return mean, logvar.clamp(*LOGVAR_RANGE)


def frame_features(encoder: Encoder, x: Tensor, obs_shape: tuple[int, ...]) -> Tensor:
    """The encoder's mean output for every frame, ``(B, T, F)`` for x ``(B, T, *obs_shape)``."""
    return encoder(x.reshape(-1, *obs_shape))[0].reshape(*x.shape[:2], -1)


IMAGE_KINDS = ("image", "image_conv")


def check_observation_kind(kind: str, is_image: bool, obs_shape: tuple[int, ...], source: str) -> None:
    """Raise :class:`DatasetError` unless the observation networks ``kind`` can take the data set
    ``source`` (images or vectors of ``obs_shape``)."""
    if is_image != (kind in IMAGE_KINDS):
        fitting = " or ".join(map(repr, IMAGE_KINDS)) if is_image else "'vector'"
        raise DatasetError(f"{source} holds {'image' if is_image else 'vector'} observations but model.obs_kind "
                           f"is {kind!r}; use {fitting}")
    if kind == "image_conv" and (obs_shape[1] % 16 or obs_shape[2] % 16):
        raise DatasetError(f"{source} has {obs_shape[1]}x{obs_shape[2]} frames; model.obs_kind 'image_conv' "
                           "needs sides divisible by 16 (e.g. 64x64); use 'image' for small frames")
