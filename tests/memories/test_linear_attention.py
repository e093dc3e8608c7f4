"""Linear attention φ(q)·φ(k), φ = elu(√β ·) + 1, by hand, and its O(T) causal form held to the
reference sequence form (`Kernel.causal`, weights from `scores`) on values and gradients."""

import math

import pytest
import torch

from sandbox.memories import Kernel
from sandbox.registry import get_kernel

f64 = torch.float64


def test_features_by_hand():
    # β = 9, √β = 3: φ(-1) = e^-3, φ(0) = 1, φ(2) = 7 (elu(x) = x for x > 0, eˣ - 1 below).
    phi = get_kernel("linear_attention").features(torch.tensor([-1.0, 0.0, 2.0], dtype=f64), 9.0)
    torch.testing.assert_close(phi, torch.tensor([math.exp(-3), 1.0, 7.0], dtype=f64), rtol=0, atol=1e-15)


def test_weights_by_hand():
    # β = 1, one query (1, 0) and keys (0, 0), (1, -1), (2, 1) in a batch of 2 (the second batch item is
    # the first with queries and keys negated): w_i ∝ φ(q)·φ(k_i).
    kernel = get_kernel("linear_attention")()
    queries = torch.tensor([[[1.0, 0.0]]], dtype=f64)  # (1, Tq=1, 2)
    keys = torch.tensor([[[0.0, 0.0], [1.0, -1.0], [2.0, 1.0]]], dtype=f64)  # (1, N=3, 2)
    queries, keys = torch.cat([queries, -queries]), torch.cat([keys, -keys])  # (2, 1, 2), (2, 3, 2)
    phi = lambda x: x + 1 if x > 0 else math.exp(x)  # noqa: E731  elu(x) + 1 at β = 1
    for b in range(2):
        q = [phi(float(x)) for x in queries[b, 0]]
        k = [sum(qi * phi(float(x)) for qi, x in zip(q, key)) for key in keys[b]]
        expected = torch.tensor([x / sum(k) for x in k], dtype=f64)
        torch.testing.assert_close(kernel.weights(queries, keys, 1.0)[b, 0], expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("exclude_current", [True, False])
@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_causal_running_sums_equal_the_reference_sequence_form(batch, exclude_current):
    kernel = get_kernel("linear_attention")()
    gen = torch.Generator().manual_seed(len(batch))
    keys = torch.randn(*batch, 5, 2, generator=gen, dtype=f64).requires_grad_()  # (..., T, dk)
    values = torch.randn(*batch, 5, 3, generator=gen, dtype=f64).requires_grad_()  # (..., T, dv)
    # One β per batch item where there is a batch: as_beta must give each item its own.
    beta = torch.tensor([0.5, 2.0, 7.0], dtype=f64)[:batch[-1]] if batch else 2.0
    fast = kernel.causal(keys, values, beta, exclude_current=exclude_current)
    reference = Kernel.causal(kernel, keys, values, beta, exclude_current=exclude_current)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-13)
    if exclude_current:
        assert torch.count_nonzero(fast[..., 0, :]) == 0  # the first step sees nothing
    # Gradients too (the first step's 0/0, kept out of the division, must not leak a NaN).
    weights = torch.randn(fast.shape, generator=gen, dtype=f64)
    grads = torch.autograd.grad((fast * weights).sum(), (keys, values))
    expected = torch.autograd.grad((reference * weights).sum(), (keys, values))
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_a_query_whose_features_all_vanish_gets_zero_and_no_gradient():
    """φ(x) = elu(√β x) + 1 is exactly 0 far in the negative orthant (eˣ - 1 rounds to -1): a query
    there has no weight on any key, so its output is 0 and nothing flows back from it, exactly, as in
    the reference; the other steps are weighted averages as usual."""
    kernel = get_kernel("linear_attention")()
    keys = torch.tensor([[0.0], [-400.0], [1.0]], dtype=f64, requires_grad=True)  # φ = 1, 0, 2
    values = torch.tensor([[5.0], [7.0], [2.0]], dtype=f64, requires_grad=True)
    out = kernel.causal(keys, values, 1.0)  # (T, 1)
    assert out[:, 0].tolist() == [0.0, 0.0, 5.0]  # t = 2 sees φ(k) = 1 and 0: all weight on the first
    assert torch.equal(out, Kernel.causal(kernel, keys, values, 1.0))
    for grad in torch.autograd.grad(out[1].sum(), (keys, values)):
        assert torch.count_nonzero(grad) == 0


def test_causal_checks_the_values():
    kernel = get_kernel("linear_attention")()
    keys = torch.randn(4, 2, dtype=f64)
    with pytest.raises(ValueError, match=r"keys and values must hold the same number of pairs N, .*\(N=4\) .*\(N=3\)"):
        kernel.causal(keys, torch.zeros(3, 1, dtype=f64), 1.0)
    with pytest.raises(TypeError, match=r"values must have the dtype of queries \(torch.float64\), got torch.float32"):
        kernel.causal(keys, torch.zeros(4, 1), 1.0)
