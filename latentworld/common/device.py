"""The device training and evaluation run on, chosen once by the config's ``device`` setting."""

from __future__ import annotations

import os
import warnings

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


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products in hardware: a CUDA GPU that supports them
    (Ampere or later), or a CPU with AVX-512 BF16 or AMX. Elsewhere autocast emulates bfloat16, which is
    slower than float32 (6.4x per step of the RGB reacher preset on an AVX2-only CPU; docs/engine.md)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    # Private helpers of torch.cpu (present in the pinned torch); absent ones count as no support.
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(name: str, device: torch.device) -> str:
    """The precision a ``precision`` setting runs the observation networks at on ``device``:
    ``"auto"`` is bfloat16 where the device computes it natively (:func:`native_bfloat16`), else
    float32; ``"float32"`` and ``"bfloat16"`` are taken as asked, bfloat16 with a warning where it is
    emulated."""
    native = native_bfloat16(device)
    if name == "auto":
        return "bfloat16" if native else "float32"
    if name == "bfloat16" and not native:
        what = "GPU (before Ampere)" if device.type == "cuda" else "CPU (no AVX-512 BF16 or AMX)"
        warnings.warn(f"precision: bfloat16 asked for, but this {what} has no native bfloat16: it is "
                      "emulated, which is slower than float32; use precision=auto or float32", stacklevel=3)
    return name
