"""Several processes: `torchrun --nproc-per-node K -m dlspec run SPEC` (or `dlspec run SPEC --nproc K`).

torchrun starts the processes and sets RANK, WORLD_SIZE and LOCAL_RANK; each joins the process group (NCCL on
CUDA, gloo on the CPU) and trains a DistributedDataParallel replica.  Every rank draws the same (seed, epoch)
permutation and each global batch of `batch_size` samples is cut into `world` contiguous parts, one per rank,
each loss weighted by its part's share of the batch: the averaged gradient is the one process's gradient of
the whole batch, so K processes follow one process's trajectory up to float summation order.  The metrics'
sums are added over the ranks; the evaluation splits are cut into parts the same way.  Rank 0 alone prints,
writes the run folder and saves checkpoints, which hold no trace of the world size (a checkpoint of K
processes resumes on any number).  A stop (Ctrl-C, SIGTERM) on any rank stops every rank at the same batch.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

TIMEOUT_S = 120  # a collective that waits longer (a rank died, a node is gone) ends the run with an error
READY_TIMEOUT_S = 900  # how long the ready ranks wait for the others to prepare (load a large data set, ...)
_ready: Any = None  # the gloo group the ranks' verdicts go through (made by join)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def from_env() -> World:
    """The world torchrun describes in the environment (one process when it does not)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return World()
    if size <= 1:
        return World()
    return World(rank, size, local)


def backend(device: Any) -> str:
    """The process group's backend for a device: NCCL for CUDA, gloo otherwise."""
    return "nccl" if getattr(device, "type", "cpu") == "cuda" else "gloo"


def replica(module: Any, device: Any) -> Any:
    """The module's DistributedDataParallel replica (its backward averages the gradients over the ranks)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def join(world: World, device: Any) -> None:
    """Join the process group (once): NCCL for a CUDA device, gloo otherwise."""
    import torch.distributed as dist

    global _ready
    if not world.distributed or dist.is_initialized():
        return
    dist.init_process_group(backend(device), timeout=datetime.timedelta(seconds=TIMEOUT_S))
    # (made through the store, so it works even where another rank's device failed and it joined with gloo)
    _ready = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=READY_TIMEOUT_S))


def gather(obj: Any, world: World) -> list[Any]:
    """Every rank's `obj` (picklable), in rank order: the ranks' verdicts on whether they can start.  A rank
    that has not joined yet (it stopped before it knew its device) joins with gloo.  Raises RuntimeError
    when another rank is gone or does not answer within READY_TIMEOUT_S."""
    import torch.distributed as dist

    join(world, None)
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj, group=_ready)
    return out


def together(world: World) -> None:
    """Wait for every rank once more after agreeing not to start (each has said what it had to say before
    any exits: torchrun stops the rest when the first process ends).  A rank that is gone does not hold the
    others: its error is let go."""
    import torch.distributed as dist

    if world.distributed and _ready is not None:
        try:
            dist.barrier(group=_ready)
        except (RuntimeError, ValueError, OSError):
            pass


def leave() -> None:
    import torch.distributed as dist

    global _ready
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _ready = None


def part(n: int, world: World) -> slice:
    """This rank's contiguous part of n items (the first n % size ranks one more), as torch.tensor_split cuts."""
    base, extra = divmod(n, world.size)
    start = world.rank * base + min(world.rank, extra)
    return slice(start, start + base + (1 if world.rank < extra else 0))


def add_up(tensors: list[Any], world: World) -> None:
    """Sum tensors (of one dtype and device each) over the ranks, in place."""
    if not world.distributed:
        return
    import torch.distributed as dist

    for t in tensors:
        dist.all_reduce(t)


def summed(sums: dict[str, Any], count: int, world: World, device: Any) -> tuple[dict[str, Any], int]:
    """Copies of named sums (on `device`) and their count, added up over the ranks (a meter's totals)."""
    out = {k: v.to(device, copy=True) for k, v in sums.items()}
    add_up(list(out.values()), world)
    return out, add_counts(count, world, device)


def any_rank(flag: bool, world: World, device: Any) -> bool:
    """Whether any rank says so (a stop asked for on one rank stops them all at the same batch)."""
    if not world.distributed:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def add_counts(count: int, world: World, device: Any) -> int:
    """A sample count summed over the ranks."""
    if not world.distributed:
        return count
    import torch
    import torch.distributed as dist

    t = torch.tensor([count], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return int(t.item())


def share_from_main(model: Any, ok: bool, world: World, device: Any) -> bool:
    """Rank 0's weights into every rank's model when rank 0 says `ok` (it loaded them); whether it did."""
    if not world.distributed:
        return ok
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if ok else 0.0], device=device)
    dist.broadcast(t, 0)
    if t.item() > 0:
        for v in model.state_dict().values():
            dist.broadcast(v, 0)
    return bool(t.item() > 0)


def has_batchnorm(model: Any) -> bool:
    from torch import nn

    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def sync_batchnorm(model: Any) -> Any:
    """The model with its BatchNorm layers as SyncBatchNorm (statistics over every process's part of the
    batch): the same parameters and buffers under the same names, so checkpoints load either way."""
    from torch import nn

    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def barrier(world: World) -> None:
    """Wait for every rank (the end of a run: the processes leave the group together)."""
    if not world.distributed:
        return
    import torch.distributed as dist

    dist.barrier()
