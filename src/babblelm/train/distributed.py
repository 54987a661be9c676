"""Data-parallel training under `torchrun`: one process per device, NCCL on GPU, gloo on CPU.

`torchrun` sets RANK, LOCAL_RANK and WORLD_SIZE; without them everything here is a no-op for a
single process. Each optimizer step's blocks come from the global training plan; rank r reads the
r-th contiguous slice, so words seen stay global and exact, and the loss curve matches a single
process with the same global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..device import resolve_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_name: str) -> tuple[Dist, torch.device]:
    """Join the process group when launched by torchrun; return (Dist, this process's device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        device = resolve_device(device_name)
    except ValueError as err:
        raise ValueError(f"run.device: {err}") from None
    if world == 1:
        return Dist(), device
    ctx = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    want_cuda = device.type == "cuda"
    if want_cuda:
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo", device_id=device if want_cuda else None)
    return ctx, device


def barrier(ctx: Dist) -> None:
    if ctx.enabled:
        dist.barrier()


def mean(value: torch.Tensor, ctx: Dist) -> torch.Tensor:
    """The mean of `value` over ranks (in place on a copy)."""
    value = value.detach().clone()
    if ctx.enabled:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= ctx.world_size
    return value


def from_main(values: list[float] | None, n: int, ctx: Dist, device: torch.device) -> list[float]:
    """Rank 0's `n` floats on every rank (the other ranks pass None): one decision made once."""
    if not ctx.enabled:
        return list(values)
    t = torch.tensor(values if ctx.is_main else [0.0] * n, dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return t.tolist()


def minimum(value: int, ctx: Dist, device: torch.device) -> int:
    if not ctx.enabled:
        return value
    t = torch.tensor([value], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def shutdown(ctx: Dist) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
