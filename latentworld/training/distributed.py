"""Data-parallel training across processes started by ``torchrun``.

``torchrun --nproc_per_node=N -m latentworld.cli train ...`` starts N processes with the same
arguments; each joins one process group (gloo on the CPU, NCCL when training runs on CUDA, each
process on the GPU of its local rank) and trains on its shard of every global batch
(``batch_size`` stays the global batch), with gradients averaged by ``DistributedDataParallel``.
One process (rank 0) writes checkpoints, history and TensorBoard events. A plain
``latentworld train`` is a group of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """The one process that writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def mean(self, values: Tensor) -> Tensor:
        """The average of ``values`` over the processes (every process gets the same result)."""
        if self.world_size == 1:
            return values
        values = values.detach().clone()
        dist.all_reduce(values)
        return values / self.world_size


def join_process_group(device: torch.device | None = None) -> ProcessGroup:
    """Join the group described by torchrun's environment (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``...),
    or return a group of one when there is none. ``device`` (default CPU) picks the backend."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return ProcessGroup()
    if not dist.is_initialized():
        on_gpu = device is not None and device.type == "cuda"
        if on_gpu:
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if on_gpu else "gloo")
    return ProcessGroup(dist.get_rank(), dist.get_world_size())


class LossTerms(nn.Module):
    """A model's ``loss_terms`` as ``forward``: the call ``DistributedDataParallel`` hooks into."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, u: Tensor) -> dict[str, Tensor]:
        """Args: x ``(b, T, *obs_shape)``, u ``(b, T, Du)``, this process's shard of the batch."""
        return self.model.loss_terms(x, u)
