"""Standard-normal noise that does not depend on how a batch is split across processes.

Data-parallel training gives each of W processes one shard of the global batch. If each drew noise
for its own rows only, W processes would train differently from one process with the same global
batch. Inside :func:`batch_shard`, :func:`batch_noise` draws the noise of the *whole* global batch
(every process holds the same random state) and returns this process's rows, so W processes
reproduce the single-process run up to float rounding. Outside it (one process) it is plain
``torch.randn``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

_shard = (0, 1)  # (this process's shard index, number of shards) of the current batch


@contextmanager
def batch_shard(rank: int, world_size: int) -> Iterator[None]:
    """Within the block, batches are shard ``rank`` (contiguous rows) of ``world_size`` equal shards."""
    global _shard
    previous, _shard = _shard, (rank, world_size)
    try:
        yield
    finally:
        _shard = previous


def batch_noise(like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard-normal noise shaped like ``like`` ``(b, ...)``, batch first: rows ``rank·b .. (rank+1)·b``
    of a draw for the global batch ``(world_size·b, ...)``."""
    rank, world_size = _shard
    rows = like.shape[0] if like.dim() else 1
    noise = torch.randn((rows * world_size, *like.shape[1:]), generator=generator, dtype=like.dtype,
                        device=like.device)
    return noise[rank * rows:(rank + 1) * rows].reshape(like.shape) if world_size > 1 else noise.reshape(like.shape)
