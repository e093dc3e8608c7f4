"""Loss per position: its mean is the engine's validation loss; band means partition it."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sandbox.analysis.positions import band_means, position_losses
from sandbox.config import TrainConfig
from sandbox.models import GPTConfig
from sandbox.train import evaluate
from tasks.base import Batch
from tasks.text import TextConfig


def test_mean_over_positions_is_the_engines_loss():
    task = TextConfig(seq_len=24).build(0)
    torch.manual_seed(0)
    model = GPTConfig(d=16, layers=1, heads=2).build(vocab_size=task.vocab_size, max_len=24)
    per_position = position_losses(model, task, "val", batches=3, batch_size=5)
    assert per_position.shape == (24,)
    engine = evaluate(model, task, TrainConfig(eval_batches=3, batch_size=5), "cpu")["loss"]
    assert abs(float(per_position.mean()) - engine) < 1e-5


def test_a_model_that_reads_its_context_is_better_late_than_early():
    """On a periodic sequence, a hand-made model that repeats the token seen one period ago is lost
    before it has seen a period and certain after: the per-position curve shows learning in context."""
    period, vocab = 4, 7

    class Repeat(torch.nn.Module):
        seq_len = 16

        def forward(self, x):  # (B, T) -> (B, T, V): confident on the token `period` - 1 steps back
            logits = torch.zeros(*x.shape, vocab)
            logits[:, period - 1:] = 8.0 * torch.nn.functional.one_hot(x[:, :-(period - 1)], vocab)
            return logits

    class Periodic:
        seq_len = 16

        def batch(self, split, index, batch_size, device):
            gen = torch.Generator().manual_seed(index)
            pattern = torch.randint(vocab, (batch_size, period), generator=gen)
            tokens = pattern.repeat(1, 5)[:, :17]
            return Batch(tokens[:, :-1], tokens[:, 1:])

    losses = position_losses(Repeat(), Periodic(), "val", batches=2, batch_size=8)
    assert float(losses[:period - 1].min()) > 1.0 and float(losses[period - 1:].max()) < 0.01


@given(st.lists(st.floats(0, 10), min_size=4, max_size=40), st.data())
def test_bands_partition_the_positions(values, data):
    n = len(values)
    edges = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=3))) + [n]
    bands = band_means(values, edges)
    sizes = [e - s for s, e in zip([0] + edges[:-1], edges)]
    total = sum(m * k for m, k in zip(bands.values(), sizes))
    assert total == pytest.approx(sum(values), rel=1e-9, abs=1e-9)
    assert list(bands)[0].startswith("1-") and list(bands)[-1].endswith(f"-{n}")


def test_bad_bands_are_clear_errors():
    with pytest.raises(ValueError, match="band edge must be in"):
        band_means([1.0, 2.0, 3.0], [2, 2])
    with pytest.raises(ValueError, match="band edge must be in"):
        band_means([1.0, 2.0, 3.0], [4])
