"""Data parallelism through `torchrun`: which rank this process is, its slice of the batch, collectives.

    torchrun --standalone --nproc_per_node=2 -m sandbox train task=bigram train.batch_size=32 ...

torchrun starts one process per rank and tells each its RANK, WORLD_SIZE and LOCAL_RANK; `setup`
reads them, joins the process group (NCCL on CUDA, gloo on the CPU) and picks the rank's device. Every
rank draws the whole global batch from the task's seeded generator and keeps its own contiguous
slice (`shard`), so a run sees the same data whatever the number of ranks. The gradient of the
global mean loss is recovered exactly: each rank's slice-mean loss is weighted by its share of the
loss terms (`slice_weight`) before DistributedDataParallel averages the gradients over ranks.
Without torchrun (no WORLD_SIZE, or WORLD_SIZE=1) everything here is the identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sandbox.device import resolve_device


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes files or prints."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def setup(device_name: str) -> Context:
    """The rank's context; under torchrun (WORLD_SIZE > 1) also join the process group."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Context(device=resolve_device(device_name))
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = resolve_device(device_name)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but this node has {torch.cuda.device_count()} CUDA devices: "
                             "start at most one process per GPU (torchrun --nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"train.device={device_name}: data parallelism runs on CUDA (NCCL) or the CPU (gloo), "
                         f"not on {device.type}")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Context(rank=rank, world=world, local_rank=local_rank, device=device)


def rank_seed(seed: int, rank: int) -> int:
    """The torch seed of rank `rank` > 0 after initialisation (distinct dropout masks per rank)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def check_batch_size(batch_size: int, world: int) -> None:
    if batch_size % world:
        raise ValueError(f"train.batch_size={batch_size} must be a multiple of the number of ranks ({world}): "
                         "it is the global batch, split evenly between them")


def shard(batch, rank: int, world: int):
    """Rows [rank·B/W, (rank+1)·B/W) of every batch tensor whose first axis is the batch axis."""
    size = batch.inputs.shape[0]
    check_batch_size(size, world)
    rows = slice(rank * size // world, (rank + 1) * size // world)
    take = lambda t: t[rows] if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == size else t  # noqa: E731
    return type(batch)(take(batch.inputs), take(batch.targets), take(batch.labels),
                       {k: take(v) for k, v in batch.extras.items()})


def slice_weight(terms, total, world: int):
    """W·n_r/N for a slice holding n_r of the N loss terms of the global batch.

    DDP averages gradients over the W ranks, so weighting each rank's slice-mean loss by this factor
    gives the gradient of the global mean loss, even when slices hold different numbers of terms
    (masked positions): (1/W) Σ_r (W n_r/N) ∇mean_r = Σ_r ∇(sum_r)/N. With equal slices it is 1.
    A global batch with no loss terms at all gives 1 (its loss is not a number anyway).
    """
    total = float(total)
    return world * float(terms) / total if total > 0 else 1.0


def global_slice_weight(terms: torch.Tensor, context: Context) -> float:
    """`slice_weight` of this rank, the total summed over the ranks."""
    if not context.active:
        return 1.0
    total = terms.detach().to(torch.float64).clone()
    dist.all_reduce(total)
    return slice_weight(terms, total, context.world)


def mean_over_ranks(value: torch.Tensor, context: Context) -> torch.Tensor:
    """The average of a scalar over the ranks (every rank gets it); the value itself without DDP."""
    if not context.active:
        return value.detach()
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / context.world


def broadcast(obj, context: Context):
    """Rank 0's `obj` on every rank."""
    if not context.active:
        return obj
    box = [obj if context.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj, context: Context) -> list:
    """Every rank's `obj`, in rank order (on every rank)."""
    if not context.active:
        return [obj]
    box = [None] * context.world
    dist.all_gather_object(box, obj)
    return box


def wrap(model: torch.nn.Module, context: Context) -> torch.nn.Module:
    """DistributedDataParallel around `model` when running under torchrun; the model itself otherwise."""
    if not context.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def teardown() -> None:
    """Leave the process group, if this process joined one (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """False on the ranks > 0 of a torchrun launch (they print nothing)."""
    return _env_int("RANK", 0) == 0
