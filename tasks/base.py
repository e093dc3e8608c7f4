"""What every task provides: seeded, pure batch streams and the task's own loss and metrics.

A task is a validated dataclass config whose `build(seed)` returns a `Task`. `Task.batch(split, index,
batch_size)` is a pure function of (seed, split, index, batch_size): asking twice gives identical
tensors, which is what lets training resume exactly with no data-loader state. The three splits draw
from disjoint random streams. Generators know nothing of models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from sandbox.validation import check_choice, check_int

SPLITS = ("train", "val", "test")


@dataclass
class Batch:
    inputs: torch.Tensor  # (B, T) token ids, or (B, T, input_dim) observations
    targets: torch.Tensor  # (B, T) ids with -100 = ignored, or (B, T, output_dim)
    labels: torch.Tensor | None = None  # (B, T) per-position labels where the task has them
    extras: dict = field(default_factory=dict)  # whatever else the task's metrics need

    def to(self, device) -> "Batch":
        move = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
        return Batch(move(self.inputs), move(self.targets), move(self.labels),
                     {k: move(v) for k, v in self.extras.items()})


def stream_seed(seed: int, split: str, index: int) -> int:
    """A 63-bit seed for one batch, distinct per (seed, split, index): splits never share a stream."""
    check_choice(split, "split", SPLITS)
    check_int(index, "index", low=0)
    entropy = [seed & 0xFFFFFFFF, seed >> 32, SPLITS.index(split), index & 0xFFFFFFFF, index >> 32]
    return int(np.random.SeedSequence(entropy).generate_state(2, np.uint64)[0] >> np.uint64(1))


def generator(seed: int, split: str, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, split, index))


class Task:
    """Base class of built tasks. Subclasses set the attributes below and implement `sample`."""

    name: str
    kind: str  # "tokens" or "continuous"
    vocab_size: int | None = None
    input_dim: int | None = None
    output_dim: int | None = None
    seq_len: int

    def __init__(self, seed: int):
        check_int(seed, "seed", low=0)
        self.seed = seed

    def sample(self, gen: torch.Generator, split: str, index: int, batch_size: int) -> Batch:
        raise NotImplementedError

    def batch(self, split: str, index: int, batch_size: int, device="cpu") -> Batch:
        """Batch `index` of `split`: the same arguments always give the same tensors."""
        check_int(batch_size, "batch_size", low=1)
        gen = generator(self.seed, split, index)
        return self.sample(gen, split, index, batch_size).to(device)

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Cross-entropy on token tasks (targets -100 ignored); subclasses may override."""
        return torch.nn.functional.cross_entropy(outputs.flatten(0, -2).float(), batch.targets.flatten(),
                                                 ignore_index=-100)

    def loss_terms(self, batch: Batch) -> torch.Tensor:
        """How many terms `loss` averages over in `batch` (data parallelism weights each rank's slice by it):
        the targets not ignored (-100) on token tasks, every target entry on continuous ones."""
        if batch.targets.is_floating_point():
            return torch.tensor(batch.targets.numel(), device=batch.targets.device)
        return (batch.targets != -100).sum()

    def metrics(self, outputs: torch.Tensor, batch: Batch) -> dict[str, float]:
        return {"loss": float(self.loss(outputs, batch))}

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind}
