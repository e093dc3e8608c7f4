"""Examples and validation for the reference memory (the claims themselves are in tests/property)."""

import math

import numpy as np
import pytest
import torch

from sandbox.memories import (
    NadarayaWatson,
    causal_kernel_regression,
    kernel_regression,
    kernel_weights,
)

f64 = torch.float64


def test_two_keys_by_hand():
    # q = 0, keys at 0 and 1, β = ln 2: w ∝ (1, 1/2) -> f = (2·0 + 1·3)/3 = 1.
    q = torch.zeros(1, 1, dtype=f64)
    k = torch.tensor([[0.0], [1.0]], dtype=f64)
    v = torch.tensor([[0.0], [3.0]], dtype=f64)
    assert kernel_regression(q, k, v, math.log(2)).item() == pytest.approx(1.0, abs=1e-14)
    w = kernel_weights(q, k, v, math.log(2))
    torch.testing.assert_close(w, torch.tensor([[2 / 3, 1 / 3]], dtype=f64), rtol=0, atol=1e-15)


def test_mask_without_admissible_key_gives_zeros_and_finite_gradients():
    q = torch.randn(3, 2, dtype=f64, requires_grad=True)
    k = torch.randn(4, 2, dtype=f64, requires_grad=True)
    v = torch.randn(4, 5, dtype=f64)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False
    out = kernel_regression(q, k, v, 2.0, mask=mask)
    assert torch.equal(out[1], torch.zeros(5, dtype=f64))
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    assert torch.equal(q.grad[1], torch.zeros(2, dtype=f64))


def test_beta_tensor_broadcasts_over_batch_dims():
    q, k, v = torch.randn(2, 3, 1, 2), torch.randn(2, 3, 4, 2), torch.randn(2, 3, 4, 1)
    beta = torch.tensor([0.5, 1.0, 4.0])  # one per unit, broadcast over the leading batch dim
    out = kernel_regression(q, k, v, beta)
    for u in range(3):
        torch.testing.assert_close(out[:, u], kernel_regression(q[:, u], k[:, u], v[:, u], float(beta[u])))


def test_float32_agrees_with_float64():
    q, k, v = (torch.randn(2, 6, 3, dtype=f64) * 3 for _ in range(3))
    out64 = kernel_regression(q, k, v, 0.7)
    out32 = kernel_regression(q.float(), k.float(), v.float(), 0.7)
    torch.testing.assert_close(out32.double(), out64, rtol=0, atol=1e-5)


def test_causal_first_output_is_zero_and_inclusive_form_sees_itself():
    k, v = torch.randn(5, 2, dtype=f64), torch.randn(5, 3, dtype=f64)
    assert torch.equal(causal_kernel_regression(k, v, 1.0)[0], torch.zeros(3, dtype=f64))
    torch.testing.assert_close(causal_kernel_regression(k, v, 1.0, exclude_current=False)[0], v[0])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda q, k, v: kernel_regression(q[0, 0], k, v, 1.0), "queries must have at least 2"),
        (lambda q, k, v: kernel_regression(q, k, v[:, :3], 1.0), "same number of pairs"),
        (lambda q, k, v: kernel_regression(q, k[..., :1], v, 1.0), "key dimension"),
        (lambda q, k, v: kernel_regression(q, k[:1].expand(3, 4, 2), v, 1.0), "batch dimensions"),
        (lambda q, k, v: kernel_regression(q, k, v, 0.0), "beta must be finite and > 0"),
        (lambda q, k, v: kernel_regression(q, k, v, float("inf")), "beta must be finite and > 0"),
        (lambda q, k, v: kernel_regression(q, k, v, torch.tensor([1.0, -1.0])), "beta must be finite"),
        (lambda q, k, v: kernel_regression(q, k, v, torch.ones(3)), "beta must be a float or a tensor"),
        (lambda q, k, v: kernel_regression(q * float("nan"), k, v, 1.0), "queries contains NaN"),
        (lambda q, k, v: kernel_regression(q, k[:, :0], v[:, :0], 1.0), "at least one pair"),
        (lambda q, k, v: kernel_regression(q, k, v, 1.0, mask=torch.ones(2, 5, 4)), "mask must be a bool"),
        (lambda q, k, v: kernel_regression(q, k, v, 1.0, mask=torch.ones(2, 5, 3).bool()), "mask must broadcast"),
    ],
)
def test_bad_input_is_rejected_by_name(call, match):
    q, k, v = torch.randn(2, 5, 2), torch.randn(2, 4, 2), torch.randn(2, 4, 1)
    with pytest.raises((ValueError, TypeError), match=match):
        call(q, k, v)


def test_type_errors():
    q, k, v = torch.randn(5, 2), torch.randn(4, 2), torch.randn(4, 1)
    with pytest.raises(TypeError, match="keys must be a torch.Tensor"):
        kernel_regression(q, k.numpy(), v, 1.0)
    with pytest.raises(TypeError, match="values must have the dtype of queries"):
        kernel_regression(q, k, v.double(), 1.0)
    with pytest.raises(TypeError, match="beta must be a positive"):
        kernel_regression(q, k, v, "1")


def test_nadaraya_watson_cross_validation_picks_a_good_bandwidth():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 400)
    y = np.sin(2 * np.pi * x) + 0.1 * rng.standard_normal(400)
    grid = np.linspace(0.1, 0.9, 100)
    model = NadarayaWatson().fit(x, y)
    cv_error = np.mean((model.predict(grid) - np.sin(2 * np.pi * grid)) ** 2)
    assert model.beta_ == min(model.cv_scores_, key=model.cv_scores_.get)
    # The chosen β beats both an over-smoothed and an under-smoothed fit by a wide margin.
    for beta in (model.beta_ / 100, model.beta_ * 100):
        other = NadarayaWatson(beta=beta).fit(x, y).predict(grid)
        assert cv_error < 0.5 * np.mean((other - np.sin(2 * np.pi * grid)) ** 2)
    assert cv_error < 5e-3


def test_nadaraya_watson_io_types_and_bandwidth():
    x = torch.linspace(0, 1, 20, dtype=torch.float32)
    model = NadarayaWatson(bandwidth=0.1).fit(x, 2 * x)
    assert model.beta_ == pytest.approx(1 / (2 * 0.1**2))
    out = model.predict(x[:5])
    assert isinstance(out, torch.Tensor) and out.shape == (5,) and out.dtype == torch.float32
    assert isinstance(model.predict(np.zeros((3, 1))), np.ndarray)
    assert model.predict(np.zeros(3)).shape == (3,)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: NadarayaWatson(beta=1.0, bandwidth=1.0), "at most one of beta and bandwidth"),
        (lambda: NadarayaWatson(beta=-1.0), "beta must be finite and > 0"),
        (lambda: NadarayaWatson(bandwidth=0), "bandwidth must be finite and > 0"),
        (lambda: NadarayaWatson().fit(np.zeros(3), np.zeros(4)), "same number of rows"),
        (lambda: NadarayaWatson().fit(np.zeros((2, 2, 2)), np.zeros(2)), r"shape \(n,\) or \(n, d\)"),
        (lambda: NadarayaWatson().fit(np.array([np.nan, 1.0]), np.zeros(2)), "keys contains NaN"),
        (lambda: NadarayaWatson().fit(np.zeros(1), np.zeros(1)), "at least 2 pairs"),
        (lambda: NadarayaWatson().predict(np.zeros(1)), "not fitted"),
        (lambda: NadarayaWatson(beta=1.0).fit(np.zeros((3, 2)), np.zeros(3)).predict(np.zeros(3)), "2 columns"),
        (lambda: NadarayaWatson().fit("abc", np.zeros(3)), "numpy array or a torch tensor"),
    ],
)
def test_nadaraya_watson_rejects_bad_input(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_registry_lookup_by_name_path_and_errors():
    from sandbox.memories import GaussianMemory
    from sandbox.registry import get_memory, list_memories, register_memory

    assert "gaussian" in list_memories()
    assert get_memory("gaussian") is GaussianMemory
    assert get_memory("sandbox.memories.kernel_regression:GaussianMemory") is GaussianMemory
    assert get_memory("sandbox.memories.kernel_regression.GaussianMemory") is GaussianMemory
    with pytest.raises(ValueError, match="unknown kernel 'nope'.*registered kernels are"):
        get_memory("nope")
    with pytest.raises(TypeError, match="kernel must be a name or a dotted path"):
        get_memory(3)
    with pytest.raises(ValueError, match="already registered"):
        register_memory("gaussian")(type("Other", (GaussianMemory,), {}))
    with pytest.raises(ValueError, match="must be a Python identifier"):
        register_memory("not a name")


def test_memory_modules_from_the_environment_register(tmp_path, monkeypatch):
    (tmp_path / "my_kernels.py").write_text(
        "from sandbox.memories import KernelMemory\n"
        "from sandbox.registry import register_memory\n"
        "@register_memory('test_env_variant')\n"
        "class Variant(KernelMemory):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SANDBOX_MEMORY_MODULES", "my_kernels")
    from sandbox.registry import _MEMORIES, list_memories

    try:
        assert "test_env_variant" in list_memories()
    finally:
        _MEMORIES.pop("test_env_variant", None)


def test_edge_cases_are_named_errors():
    q, k, v = torch.randn(3, 4), torch.randn(5, 4), torch.randn(5, 2)
    # A β with batch dimensions of its own would silently broadcast the output to (7, 3, 2).
    with pytest.raises(ValueError, match=r"beta must be a float or a tensor broadcastable to the batch dimensions \(\)"):
        kernel_regression(q, k, v, torch.ones(7))
    assert kernel_regression(q, k, v, torch.ones(())).shape == (3, 2)  # a 0-d β adds nothing
    # "no" is a truthy string: it must not be read as exclude_current=True.
    for bad in ("no", 0, None):
        with pytest.raises(TypeError, match="exclude_current must be True or False"):
            causal_kernel_regression(k, v, 1.0, exclude_current=bad)
    # β = 1 / (2 h²) overflows (h tiny) or underflows to 0 (h huge): refused when built, by name.
    for bandwidth in (1e-200, 1e-160, 1e160, 1e300):
        with pytest.raises(ValueError, match="bandwidth must be between about 1e-154 and 1e153"):
            NadarayaWatson(bandwidth=bandwidth)
    for bandwidth in (1e-150, 1e150):  # extreme but representable: fitted without error
        model = NadarayaWatson(bandwidth=bandwidth).fit(np.arange(3.0), np.arange(3.0))
        assert 0 < model.beta_ < math.inf and np.isfinite(model.predict(np.array([0.5]))).all()
