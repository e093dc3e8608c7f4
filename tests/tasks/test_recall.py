"""Associative recall: every scored answer is the value stored with the queried key."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.recall import RecallConfig


@settings(max_examples=25)
@given(seed=st.integers(0, 2**31), min_pairs=st.integers(1, 6), extra=st.integers(0, 6), queries=st.integers(1, 5))
def test_answers_are_the_stored_values(seed, min_pairs, extra, queries):
    config = RecallConfig(min_pairs=min_pairs, max_pairs=min_pairs + extra, queries=queries, key_vocab=20, value_vocab=7)
    task = config.build(seed)
    batch = task.batch("train", 0, 6)
    assert batch.inputs.shape[1] == task.seq_len
    for b in range(6):
        n = int(batch.extras["pairs"][b])
        assert config.min_pairs <= n <= config.max_pairs
        seq = torch.cat([batch.inputs[b], batch.targets[b, -1:].clamp(min=0)]).tolist()
        keys, values = seq[0:2 * n:2], seq[1:2 * n:2]
        assert len(set(keys)) == n and all(1 <= k <= 20 for k in keys) and all(21 <= v <= 27 for v in values)
        memory = dict(zip(keys, values))
        scored = (batch.targets[b] != -100).nonzero()[:, 0].tolist()
        assert len(scored) == queries
        for t in scored:
            assert batch.targets[b, t] == memory[int(batch.inputs[b, t])]


def test_accuracy_per_number_of_pairs():
    task = RecallConfig(min_pairs=2, max_pairs=3, queries=4, key_vocab=10, value_vocab=5).build(0)
    batch = task.batch("val", 0, 64)
    perfect = torch.nn.functional.one_hot(batch.targets.clamp(min=0), task.vocab_size).float()
    metrics = task.metrics(perfect, batch)
    assert metrics["accuracy"] == 1.0 and metrics["accuracy_pairs_2"] == metrics["accuracy_pairs_3"] == 1.0
    assert task.metrics(torch.zeros_like(perfect), batch)["accuracy"] == 0.0


def test_seeds():
    task = RecallConfig().build(0)
    assert torch.equal(task.batch("train", 1, 4).inputs, task.batch("train", 1, 4).inputs)
    assert not torch.equal(task.batch("train", 1, 4).inputs, RecallConfig().build(1).batch("train", 1, 4).inputs)


@pytest.mark.parametrize("kwargs, match", [(dict(min_pairs=0), "min_pairs"), (dict(min_pairs=5, max_pairs=4), "max_pairs"),
                                           (dict(max_pairs=40, key_vocab=30), "key_vocab must be in"), (dict(queries=0), "queries")])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RecallConfig(**kwargs)


@pytest.mark.parametrize("field, low", [("min_pairs", 1), ("queries", 1), ("value_vocab", 1)])
def test_integer_parameters_are_accepted_exactly_from_their_minimum(field, low):
    RecallConfig(**{field: low})
    with pytest.raises(ValueError, match=rf"^{field} must be in \[{low}, inf\], got {low - 1}$"):
        RecallConfig(**{field: low - 1})
    with pytest.raises(ValueError, match=r"^max_pairs must be in \[5, inf\], got 4$"):
        RecallConfig(min_pairs=5, max_pairs=4)


def test_queries_ask_every_stored_pair_uniformly_and_independently_per_sequence():
    task = RecallConfig(min_pairs=4, max_pairs=4, queries=8, key_vocab=30, value_vocab=5).build(0)
    batch = task.batch("train", 0, 500)
    asked = []
    for b in range(500):
        keys = batch.inputs[b, 0:8:2].tolist()
        asked.append([keys.index(int(k)) for k in batch.inputs[b, 8::2]])
    asked = torch.tensor(asked)  # (B, Q) which pair each query asks
    counts = torch.bincount(asked.flatten(), minlength=4).double()
    assert ((counts / counts.sum() - 0.25).abs() < 0.03).all()
    assert len({tuple(row) for row in asked.tolist()}) > 400  # not one pattern shared by the batch


def test_targets_align_with_inputs_and_padding_follows_the_last_answer():
    task = RecallConfig(min_pairs=1, max_pairs=6, queries=2, key_vocab=10, value_vocab=3).build(0)
    batch = task.batch("train", 0, 64)
    assert batch.inputs.shape == batch.targets.shape == (64, task.seq_len) and batch.targets.dtype == torch.long
    for b in range(64):
        n = int(batch.extras["pairs"][b])
        end = 2 * n + 2 * 2  # pairs, then two queries with their answers
        assert (batch.inputs[b, end:] == 0).all() and (batch.inputs[b, :end - 1] > 0).all()
