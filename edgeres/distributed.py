"""Data-parallel training under ``torchrun``: one process per worker; NCCL with one GPU per process (LOCAL_RANK)
when training on CUDA, gloo on CPUs.

``torchrun --nproc-per-node 2 -m edgeres train …`` sets RANK/WORLD_SIZE/LOCAL_RANK; without them training runs as
one process. ``--batch-size`` stays the global batch, so the same options give the same schedule at any size.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from edgeres.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def part(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` items (``n`` divisible by the world size)."""
        per = n // self.size
        return slice(self.rank * per, (self.rank + 1) * per)

    def threads(self) -> int:
        """CPU threads for this rank: the cores shared among the processes of this node."""
        return max(1, (os.cpu_count() or 1) // self.local_size)

    @property
    def device(self) -> torch.device:
        """Where collective tensors live: this rank's GPU under NCCL, else the CPU."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def sum(self, value: float) -> float:
        """``value`` summed over every rank (itself when alone)."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return float(t.item())

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics), as the checkpoint will have them."""
        if self.size > 1:
            for b in module.buffers():
                torch.distributed.broadcast(b, 0)

    def shard(self, n: int) -> slice:
        """This rank's share of ``n`` items for evaluation: contiguous, as even as possible, covering all."""
        lo, hi = n * self.rank // self.size, n * (self.rank + 1) // self.size
        return slice(lo, hi)

    def barrier(self) -> None:
        if self.size > 1:
            torch.distributed.barrier()


def init_world(cuda: bool = False) -> World:
    """Join the process group that torchrun described in the environment, or run alone.

    On CUDA each process takes the GPU of its ``LOCAL_RANK`` and the group talks NCCL; on CPUs, gloo.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run without torchrun")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "gloo"
    if cuda:
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local} has no GPU ({torch.cuda.device_count()} visible); start torchrun "
                              f"with --nproc-per-node {torch.cuda.device_count()} or fewer")
        torch.cuda.set_device(local)
        backend = "nccl" if dist.is_nccl_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                 int(os.environ.get("LOCAL_WORLD_SIZE", str(size))), backend)


def close_world(world: World) -> None:
    if world.size > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
