"""The device training and evaluation run on, chosen once by the config's ``device`` setting."""

from __future__ import annotations

import os

import torch

from latentworld.common.errors import ConfigError


def select_device(name: str) -> torch.device:
    """The device a ``device`` setting names: ``"auto"`` (CUDA when torch sees a GPU), ``"cpu"`` or
    ``"cuda"``; under torchrun the GPU of this process's ``LOCAL_RANK``.

    Raises:
        ConfigError: ``"cuda"`` asked for where torch sees no GPU.
    """
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' asked for, but torch sees no CUDA GPU here; use device=auto or cpu")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
