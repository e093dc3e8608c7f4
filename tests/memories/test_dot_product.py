"""The dot-product kernels' fused paths held to softmax(2β q·k) written out by hand, and to the
reference forms of `Kernel` (weights from `scores`, masks from `strict_past_mask`), on every path:
masked retrieval, one β per query, the causal forms and the one-step sequence."""

import itertools

import pytest
import torch

from sandbox.memories import Kernel
from sandbox.registry import get_kernel

f64 = torch.float64


def attention_by_hand(queries, keys, values, scale, mask=None):
    """softmax over the admissible keys of scale·q·k, a row with none giving 0, one (b, t) at a time."""
    batch = torch.broadcast_shapes(queries.shape[:-2], keys.shape[:-2], values.shape[:-2])
    queries, keys = queries.expand(*batch, *queries.shape[-2:]), keys.expand(*batch, *keys.shape[-2:])
    values = values.expand(*batch, *values.shape[-2:])
    scale = torch.as_tensor(scale, dtype=f64).expand(*batch, queries.shape[-2])  # (..., Tq)
    mask = torch.ones(*batch, queries.shape[-2], keys.shape[-2], dtype=torch.bool) if mask is None else mask.expand(
        *batch, queries.shape[-2], keys.shape[-2])
    out = torch.zeros(*batch, queries.shape[-2], values.shape[-1], dtype=f64)
    for index in itertools.product(*(range(n) for n in (*batch, queries.shape[-2]))):
        *b, t = index
        seen = mask[index]  # (N,)
        if not seen.any():
            continue
        k = torch.exp(scale[index] * (keys[(*b,)][seen] @ queries[(*b, t)]))  # (n,)
        out[index] = (k / k.sum()) @ values[(*b,)][seen]
    return out


def draw(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=f64)


def test_dot_product_weights_and_retrieval_by_hand():
    kernel = get_kernel("dot_product")()
    queries, keys, values = draw(2, 3, 2, seed=0), draw(2, 4, 2, seed=1), draw(2, 4, 5, seed=2)  # Tq ≠ N ≠ dk ≠ dv
    beta = torch.tensor([0.3, 1.7], dtype=f64)  # one per batch item
    scale = 2 * beta[:, None]  # (B, 1): exp(2β q·k)
    mask = torch.tensor([[True, False, True, True], [False, False, False, False], [False, True, False, False]])
    expected = attention_by_hand(queries, keys, values, scale, mask)
    torch.testing.assert_close(kernel.retrieve(queries, keys, values, beta, mask=mask), expected, rtol=0, atol=1e-13)
    assert torch.count_nonzero(expected[:, 1]) == 0  # the query with no admissible key
    torch.testing.assert_close(kernel.retrieve(queries, keys, values, beta), attention_by_hand(queries, keys, values, scale),
                               rtol=0, atol=1e-13)
    eye = torch.eye(4, dtype=f64).expand(2, 4, 4)  # the weights are the outputs of one-hot values
    torch.testing.assert_close(kernel.weights(queries, keys, beta, mask=mask),
                               attention_by_hand(queries, keys, eye, scale, mask), rtol=0, atol=1e-13)


def test_dot_product_one_beta_per_query_by_hand():
    kernel = get_kernel("dot_product")()
    queries, keys, values = draw(2, 3, 2, seed=3), draw(2, 4, 2, seed=4), draw(2, 4, 5, seed=5)
    beta = torch.tensor([[0.2, 1.0, 3.0], [0.5, 0.1, 2.0]], dtype=f64)  # (B, Tq)
    mask = torch.tensor([[True, True, False, True], [False, False, False, False], [True, False, True, False]])
    expected = attention_by_hand(queries, keys, values, 2 * beta, mask)
    torch.testing.assert_close(kernel.retrieve_varying(queries, keys, values, beta, mask=mask), expected, rtol=0, atol=1e-13)
    torch.testing.assert_close(Kernel.retrieve_varying(kernel, queries, keys, values, beta, mask=mask), expected,
                               rtol=0, atol=1e-13)
    unmasked = attention_by_hand(queries, keys, values, 2 * beta)
    torch.testing.assert_close(kernel.retrieve_varying(queries, keys, values, beta), unmasked, rtol=0, atol=1e-13)
    torch.testing.assert_close(Kernel.retrieve_varying(kernel, queries, keys, values, beta), unmasked, rtol=0, atol=1e-13)
    # A single query: its β is the first and only one.
    one = kernel.retrieve_varying(queries[:, :1], keys, values, beta[:, :1])
    torch.testing.assert_close(one, expected[:, :1] if mask[0].all() else attention_by_hand(
        queries[:, :1], keys, values, 2 * beta[:, :1]), rtol=0, atol=1e-13)


def test_dot_product_one_beta_per_query_is_checked():
    kernel = get_kernel("dot_product")()
    queries, keys, values = draw(3, 2, seed=6), draw(4, 2, seed=7), draw(4, 1, seed=8)
    with pytest.raises(ValueError, match="beta must be finite and > 0"):
        kernel.retrieve_varying(queries, keys, values, torch.tensor([-1.0, 1.0, 1.0], dtype=f64))
    with pytest.raises(ValueError, match="keys and values must hold the same number of pairs"):
        kernel.retrieve_varying(queries, keys, values[:3], torch.ones(3, dtype=f64))
    with pytest.raises(ValueError, match=r"mask must broadcast to \(\.\.\., Tq, N\) = \(3, 4\)"):
        kernel.retrieve_varying(queries, keys, values, torch.ones(3, dtype=f64), mask=torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="values must have the dtype of queries"):
        kernel.causal_varying(keys, values.float(), torch.ones(4, dtype=f64))
    with pytest.raises(ValueError, match="beta must be finite and > 0"):
        kernel.causal_varying(keys, values, torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=f64))


@pytest.mark.parametrize("exclude_current", [True, False])
def test_dot_product_causal_forms_by_hand(exclude_current):
    kernel = get_kernel("dot_product")()
    keys, values = draw(2, 3, 5, 2, seed=9), draw(1, 3, 5, 4, seed=10)  # values broadcast over the first batch dim
    beta = torch.tensor([0.4, 1.0, 2.5], dtype=f64)  # one per unit (the last batch dim)
    mask = torch.ones(5, 5, dtype=torch.bool).tril(-1 if exclude_current else 0)
    expected = attention_by_hand(keys, keys, values, 2 * beta[:, None], mask)
    torch.testing.assert_close(kernel.causal(keys, values, beta, exclude_current=exclude_current), expected, rtol=0, atol=1e-13)
    torch.testing.assert_close(Kernel.causal(kernel, keys, values, beta, exclude_current=exclude_current), expected,
                               rtol=0, atol=1e-13)
    varying = torch.rand(2, 3, 5, generator=torch.Generator().manual_seed(11), dtype=f64) + 0.1  # (B, U, T)
    if exclude_current:
        expected = attention_by_hand(keys, keys, values, 2 * varying, mask)
        torch.testing.assert_close(kernel.causal_varying(keys, values, varying), expected, rtol=0, atol=1e-13)
        torch.testing.assert_close(Kernel.causal_varying(kernel, keys, values, varying), expected, rtol=0, atol=1e-13)


def test_dot_product_causal_with_one_and_two_steps():
    """One step sees nothing (0, shaped as the broadcast of keys and values); two steps: the second sees
    the first alone, so its output is the first value."""
    kernel = get_kernel("dot_product")()
    keys, values = draw(2, 1, 1, 3, seed=12), draw(1, 4, 1, 2, seed=13)  # (2, 1, T=1, dk), (1, 4, T=1, dv)
    for out in (kernel.causal(keys, values, 1.0), kernel.causal_varying(keys, values, torch.ones(2, 1, 1, dtype=f64))):
        assert out.shape == (2, 4, 1, 2) and torch.count_nonzero(out) == 0
    keys, values = draw(2, 3, seed=14), draw(2, 2, seed=15)
    out = kernel.causal(keys, values, 1.0)
    assert torch.count_nonzero(out[0]) == 0
    torch.testing.assert_close(out[1], values[0], rtol=0, atol=1e-15)


def test_sphere_gaussian_is_exp_of_minus_beta_squared_distance():
    kernel = get_kernel("gaussian_sphere")()
    unit = lambda x: x / x.norm(dim=-1, keepdim=True)  # noqa: E731
    queries, keys, values = unit(draw(2, 3, 3, seed=16)), unit(draw(2, 4, 3, seed=17)), draw(2, 4, 2, seed=18)
    beta = torch.tensor([0.5, 4.0], dtype=f64)
    k = torch.exp(-beta[:, None, None] * (queries[:, :, None] - keys[:, None]).pow(2).sum(-1))  # (B, Tq, N)
    torch.testing.assert_close(kernel.weights(queries, keys, beta), k / k.sum(-1, keepdim=True), rtol=0, atol=1e-13)
    torch.testing.assert_close(kernel.retrieve(queries, keys, values, beta), (k / k.sum(-1, keepdim=True)) @ values,
                               rtol=0, atol=1e-13)


@pytest.mark.parametrize("path", ["retrieve", "retrieve_varying", "causal", "causal_varying"])
def test_sphere_gaussian_names_what_is_off_the_sphere(path):
    kernel = get_kernel("gaussian_sphere")()
    unit = draw(4, 2, seed=19)
    unit = unit / unit.norm(dim=-1, keepdim=True)
    raw = 3 * unit
    values, beta = draw(4, 1, seed=20), torch.ones(4, dtype=f64)
    calls = {"retrieve": [lambda q, k: kernel.retrieve(q, k, values, 1.0)],
             "retrieve_varying": [lambda q, k: kernel.retrieve_varying(q, k, values, beta)],
             "causal": [lambda q, k: kernel.causal(k, values, 1.0), lambda q, k: kernel.causal(k, values, 1.0, exclude_current=False)],
             "causal_varying": [lambda q, k: kernel.causal_varying(k, values, beta)]}[path]
    for call in calls:
        if path.startswith("retrieve"):
            with pytest.raises(ValueError, match=r"^queries must have unit norm .* \(norms from 3 to 3\)"):
                call(raw, unit)
        with pytest.raises(ValueError, match=r"^(queries|keys) must have unit norm .* \(norms from 3 to 3\)") as error:
            call(unit, raw)
        assert str(error.value).startswith("keys") or path.startswith("causal")
        call(unit, unit)  # on the sphere: no error


def test_dot_product_fast_paths_check_values_and_mask():
    """The fused paths validate as the reference does: a bad value or mask is named, never a deep
    error from inside scaled_dot_product_attention."""
    kernel = get_kernel("dot_product")()
    queries, keys, values = draw(3, 2, seed=21), draw(4, 2, seed=22), draw(4, 1, seed=23)
    with pytest.raises(ValueError, match=r"keys and values must hold the same number of pairs N, .*\(N=4\) .*\(N=3\)"):
        kernel.retrieve(queries, keys, values[:3], 1.0)
    with pytest.raises(ValueError, match=r"keys and values must hold the same number of pairs N, .*\(N=4\) .*\(N=3\)"):
        kernel.causal(keys, values[:3], 1.0)
    with pytest.raises(TypeError, match=r"^mask must be a bool tensor \(True = may attend\), got Tensor of dtype torch.float64$"):
        kernel.retrieve(queries, keys, values, 1.0, mask=torch.ones(3, 4, dtype=f64))
    with pytest.raises(ValueError, match=r"^mask must broadcast to \(\.\.\., Tq, N\) = \(3, 4\), got \(4, 3\)$"):
        kernel.retrieve(queries, keys, values, 1.0, mask=torch.ones(4, 3, dtype=torch.bool))
