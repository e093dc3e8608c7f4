"""Data parallelism: the batch slices and loss weights (in process)."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sandbox.distributed import Context, check_batch_size, setup, shard, slice_weight
from tasks.base import Batch


def token_batch(seed: int, rows: int, length: int = 6, vocab: int = 5, masked: float = 0.3) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    targets = torch.randint(vocab, (rows, length), generator=gen)
    targets[torch.rand(rows, length, generator=gen) < masked] = -100
    return Batch(torch.randint(vocab, (rows, length), generator=gen), targets,
                 labels=torch.zeros(rows, length, dtype=torch.long), extras={"scale": torch.tensor(2.0)})


@given(seed=st.integers(0, 2**31), world=st.sampled_from([1, 2, 3, 4]), per_rank=st.integers(1, 4))
def test_slices_partition_the_global_batch(seed, world, per_rank):
    batch = token_batch(seed, world * per_rank)
    slices = [shard(batch, rank, world) for rank in range(world)]
    assert all(s.inputs.shape[0] == per_rank for s in slices)
    assert torch.equal(torch.cat([s.inputs for s in slices]), batch.inputs)
    assert torch.equal(torch.cat([s.targets for s in slices]), batch.targets)
    assert all(torch.equal(s.extras["scale"], batch.extras["scale"]) for s in slices)  # not a batch axis


@given(seed=st.integers(0, 2**31), world=st.sampled_from([2, 3, 4]), per_rank=st.integers(1, 4),
       masked=st.floats(0.0, 0.9))
def test_weighted_slice_gradients_average_to_the_global_gradient(seed, world, per_rank, masked):
    # What DDP computes, (1/W) Σ_r w_r ∇ mean_r, must be ∇ of the global mean loss, masks or not.
    batch = token_batch(seed, world * per_rank, masked=masked)
    if not (batch.targets != -100).any():
        batch.targets[0, 0] = 1
    logits = torch.randn(*batch.targets.shape, 5, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64,
                         requires_grad=True)

    def mean_loss(rows):
        return torch.nn.functional.cross_entropy(logits[rows].flatten(0, 1), batch.targets[rows].flatten(), ignore_index=-100)

    (expected,) = torch.autograd.grad(mean_loss(slice(None)), logits)
    total = (batch.targets != -100).sum()
    averaged = torch.zeros_like(logits)
    for rank in range(world):
        rows = slice(rank * per_rank, (rank + 1) * per_rank)
        terms = (batch.targets[rows] != -100).sum()
        if terms == 0:
            continue  # a slice with nothing to learn adds no gradient (its loss would be NaN, its weight 0)
        (grad,) = torch.autograd.grad(slice_weight(terms, total, world) * mean_loss(rows), logits)
        averaged += grad / world
    torch.testing.assert_close(averaged, expected, rtol=1e-12, atol=1e-12)


def test_equal_slices_weigh_one():
    assert slice_weight(torch.tensor(6), torch.tensor(12), 2) == 1.0


def test_the_global_batch_must_split_evenly():
    with pytest.raises(ValueError, match=r"train.batch_size=6 must be a multiple of the number of ranks \(4\)"):
        check_batch_size(6, 4)


def test_without_torchrun_nothing_is_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context = setup("cpu")
    assert context == Context(device=torch.device("cpu")) and not context.active and context.is_main


def test_a_bad_world_size_is_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer, got 'two'"):
        setup("cpu")
