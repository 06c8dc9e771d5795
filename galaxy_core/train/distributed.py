"""Training on several processes with PyTorch's own launcher, ``torchrun``.

``torchrun --nproc_per_node N -m galaxy_core.cli train ...`` starts N copies of the usual command
with RANK, WORLD_SIZE and LOCAL_RANK set; nothing here launches processes. Each copy joins the
process group (NCCL between GPUs, gloo between CPUs), and the run keeps the meaning of its
settings whatever N is:

- ``batch_size`` is the **global** batch. Every process draws the same shuffled order and the
  same augmentation parameters for the whole global batch, then takes every N-th image of it,
  so N processes see exactly the images and transforms one process would, and DDP's averaged
  gradient is the one-process gradient up to BatchNorm's per-process statistics and float
  summation order. The learning-rate schedule counts global steps, so it does not change with N.
- Only rank 0 writes: checkpoints, the history, ``status.json``, and the model folder. A
  checkpoint holds the unwrapped network and the shared RNG, so a run started on N processes
  resumes on any other number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from galaxy_core.errors import GalaxyError


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The one process that writes files and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The world torchrun describes in the environment (one process when it is not set)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise GalaxyError(f"torchrun's RANK/WORLD_SIZE/LOCAL_RANK are not numbers: {exc}") \
            from None
    if size < 1 or not 0 <= rank < size:
        raise GalaxyError(f"RANK {rank} does not fit WORLD_SIZE {size}")
    return World(rank=rank, size=size, local_rank=local)


def join(world: World, device: torch.device) -> None:
    """Join the process group (NCCL for CUDA, gloo otherwise); nothing for one process."""
    if not world.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size)


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.barrier()


def broadcast_float(world: World, value: float, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank (for example the validation loss that decides early
    stopping, so all processes stop at the same epoch)."""
    if not world.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64,
                          device=device if device.type == "cuda" else "cpu")
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def sum_floats(world: World, values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over the ranks (a running loss and its image count)."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64,
                          device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(tensor)
    return tensor.tolist()


def my_share(n: int, world: World) -> slice:
    """The positions of a global batch of ``n`` that this process trains on."""
    return slice(world.rank, n, world.size)
