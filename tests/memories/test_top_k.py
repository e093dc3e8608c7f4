"""Top-k retrieval held to the reference Gaussian memory over the k nearest keys, ties and masks."""

import math

import pytest
import torch

from sandbox.memories import kernel_regression
from sandbox.memories.top_k import TIE
from sandbox.registry import get_kernel

f64 = torch.float64


def test_top_k_is_the_gaussian_memory_over_the_k_nearest_keys():
    # Keys on a line at 0..5, queries at 0 and 5.2: the k = 4 nearest are 0..3 and 2..5.
    kernel = get_kernel("top_k")()
    gen = torch.Generator().manual_seed(0)
    keys = torch.arange(6, dtype=f64)[:, None].expand(3, 6, 1)  # (B, N, 1), B = 3 ≠ Tq ≠ N
    queries = torch.tensor([[0.0], [5.2]], dtype=f64).expand(3, 2, 1)  # (B, Tq, 1)
    values = torch.randn(3, 6, 2, generator=gen, dtype=f64)
    beta = 0.1  # wide: every key would weigh, so a key let through changes the output
    out = kernel.retrieve(queries, keys, values, beta)  # (B, Tq, dv)
    for t, nearest in ((0, slice(0, 4)), (1, slice(2, 6))):
        expected = kernel_regression(queries[:, t:t + 1], keys[:, nearest], values[:, nearest], beta)
        torch.testing.assert_close(out[:, t:t + 1], expected, rtol=0, atol=1e-15)
    # The weights put exactly 0 on the others.
    weights = kernel.weights(queries, keys, beta)
    assert torch.count_nonzero(weights[:, 0, 4:]) == 0 and torch.count_nonzero(weights[:, 1, :2]) == 0


def test_top_k_chooses_among_the_admissible_keys():
    # With the nearest two keys masked out, the 4 nearest admissible keys of q = 0 are 2..5.
    kernel = get_kernel("top_k")()
    keys = torch.arange(7, dtype=f64)[:, None]  # (N, 1)
    values = torch.randn(7, 1, generator=torch.Generator().manual_seed(1), dtype=f64)
    query = torch.zeros(1, 1, dtype=f64)
    mask = torch.tensor([[False, False, True, True, True, True, True]])
    out = kernel.retrieve(query, keys, values, 0.1, mask=mask)
    torch.testing.assert_close(out, kernel_regression(query, keys[2:6], values[2:6], 0.1), rtol=0, atol=1e-15)


def test_keys_tied_with_the_kth_to_a_relative_tie_are_all_kept():
    """Log-kernels within TIE·|k-th| below the k-th largest count as tied with it (relative, not
    absolute: here |k-th| = 100, so the key 1e-7 below is kept and the one 1e-5 below is not)."""
    kernel = get_kernel("top_k")()
    query = torch.zeros(1, 1, dtype=f64)
    sq = [0.0, 1.0, 4.0, 100.0, 100.0 + 1e-7, 100.0 + 1e-5]  # β‖q - k‖² at β = 1
    keys = torch.tensor([[math.sqrt(s)] for s in sq], dtype=f64)
    values = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0], [6.0]], dtype=f64)
    kept = kernel.weights(query, keys, 1.0)[0] > 0
    assert kept.tolist() == [True, True, True, True, True, False]


def test_a_key_exactly_on_the_tie_threshold_is_kept():
    # The 4th nearest key at distance 1 (log-kernel -1 at β = 1) puts the threshold at -1 - TIE; a key
    # at √(1 + TIE) has exactly that log-kernel in float64 and is kept; one a rounding further is not.
    kernel = get_kernel("top_k")()
    query = torch.zeros(1, 1, dtype=f64)
    edge = math.sqrt(1 + TIE)
    beyond = math.nextafter(math.nextafter(edge, 2.0), 2.0)
    keys = torch.tensor([[0.0], [0.5], [0.7], [1.0], [edge], [beyond]], dtype=f64)
    logits = kernel.logits(query, keys, 1.0)[0]
    assert float(logits[4]) == -1.0 - TIE * 1.0 and float(logits[5]) < -1.0 - TIE  # the premise, exactly
    assert (kernel.weights(query, keys, 1.0)[0] > 0).tolist() == [True] * 5 + [False]


def test_top_k_refuses_to_stream_and_says_why():
    message = ("top-k retrieval cannot stream: the k nearest keys are known only once every key has arrived; "
               "call retrieve with all of them")
    with pytest.raises(NotImplementedError) as error:
        get_kernel("top_k")().stream(torch.zeros(1, 1), 1.0)
    assert str(error.value) == message
