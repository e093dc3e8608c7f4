"""The contextual memory: fast path against the reference, the leaky-average scan, plug-in retrieval."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.memories import KernelMemory
from sandbox.memories.contextual import ContextualMemory, leaky_average, leaky_average_reference
from sandbox.registry import _MEMORIES, register_memory

f64 = torch.float64


@given(seed=st.integers(0, 2**31), length=st.integers(1, 300), chunk=st.integers(2, 64),
       units=st.integers(1, 3), leak_power=st.floats(-4, -0.01))
def test_chunked_scan_equals_decay_matrix(seed, length, chunk, units, leak_power):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, units, length, 3, generator=gen, dtype=f64)  # (B, U, T, h)
    leak = 1 - 10 ** torch.linspace(leak_power, -0.01, units, dtype=f64)  # λ from 1 - 10^p (up to 0.9999) down to 0.02
    fast, reference = leaky_average(x, leak, chunk), leaky_average_reference(x, leak)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-12 * length)


def test_scan_gradients_match_reference():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 50, 2, generator=gen, dtype=f64, requires_grad=True)
    leak = torch.tensor([0.5, 0.97], dtype=f64, requires_grad=True)
    grads = [torch.autograd.grad(f(x, leak, *a).pow(2).sum(), (x, leak))
             for f, a in ((leaky_average, (7,)), (leaky_average_reference, ()))]
    for fast, ref in zip(*grads):
        torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)


def test_scan_is_finite_for_long_sequences():
    # The closed form λ^t Σ λ^{-s} x_s would overflow here; the scan must not.
    x = torch.ones(1, 1, 20000, 1)
    out = leaky_average(x, torch.tensor([0.9]))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0, 0, -1], torch.tensor([10.0]), rtol=1e-4, atol=0)


memory_options = st.fixed_dictionaries({
    "leak": st.booleans(), "normalise": st.booleans(), "complex_maps": st.booleans(),
    "beta": st.one_of(st.none(), st.floats(0.1, 60)), "gamma": st.one_of(st.none(), st.floats(0, 1)),
})


@settings(max_examples=30)
@given(seed=st.integers(0, 2**31), length=st.integers(1, 40), units=st.sampled_from([1, 2, 3]),
       width=st.sampled_from([2, 4]), options=memory_options, batch=st.integers(1, 3))
def test_fast_path_matches_reference(seed, length, units, width, options, batch):
    torch.manual_seed(seed)
    d = units * width
    memory = ContextualMemory(d, units, **options)
    x = torch.randn(batch, length, d, generator=torch.Generator().manual_seed(seed))
    # float64: the two paths agree to rounding; values and gradients.
    memory64, x64 = memory.double(), x.double().requires_grad_()
    fast, reference = memory64(x64), memory64(x64, path="reference")
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-9)
    params = [x64, *memory64.parameters()]
    g_fast = torch.autograd.grad(fast.pow(2).sum(), params, allow_unused=True, materialize_grads=True)
    g_ref = torch.autograd.grad(reference.pow(2).sum(), params, allow_unused=True, materialize_grads=True)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    # float32: within 1e-4.
    memory32 = memory64.float()
    torch.testing.assert_close(memory32(x), memory32(x, path="reference"), rtol=0, atol=1e-4)


def test_first_step_retrieves_nothing_and_no_nan_anywhere():
    memory = ContextualMemory(8, 2)
    x = torch.randn(3, 5, 8)
    _, values = memory.features(x)
    outputs = memory.retrieve(*memory.features(x))  # (B, U, T, h)
    assert torch.equal(outputs[:, :, 0], torch.zeros_like(outputs[:, :, 0]))
    assert torch.isfinite(memory(x[:, :1])).all() and values.shape == (3, 2, 5, 4)


def test_values_peek_at_the_next_input():
    # With γ = 0 the value at t is W_ψ x_{t+1}: changing x_{t+1} changes v_t, changing x_{t+2} does not.
    memory = ContextualMemory(4, 1, gamma=0.0, normalise=False).double()
    x = torch.randn(1, 6, 4, dtype=f64)
    _, v = memory.features(x)
    y = x.clone()
    y[0, 3] += 1
    _, w = memory.features(y)
    changed = (v != w).any(-1)[0, 0]  # (T,)
    assert changed.tolist() == [False, False, True, False, False, False]


def test_a_registered_variant_plugs_in_by_name():
    @register_memory("test_sharper_gaussian")
    class Sharper(KernelMemory):
        def log_kernel(self, sq_dist, beta):
            return -4 * beta * sq_dist

    try:
        torch.manual_seed(0)
        default = ContextualMemory(8, 2).double()
        torch.manual_seed(0)
        variant = ContextualMemory(8, 2, memory="test_sharper_gaussian").double()
        torch.manual_seed(0)
        whole_space = ContextualMemory(8, 2, memory="gaussian").double()
        x = torch.randn(2, 12, 8, dtype=f64)
        assert isinstance(variant.memory, Sharper)
        # The whole-space Gaussian on unit keys is the same function as the fused sphere path ...
        torch.testing.assert_close(whole_space(x), default(x), rtol=0, atol=1e-12)
        # ... and the variant's kernel is really the one used.
        with torch.no_grad():
            variant.beta_log.fill_(2.0 + torch.log(torch.tensor(4.0)).item())  # β_u·4: same as Sharper at β_u
        assert not torch.allclose(variant(x), default(x))
    finally:
        _MEMORIES.pop("test_sharper_gaussian", None)


@pytest.mark.parametrize("kwargs, match", [
    (dict(d=4, units=8), "units must be <= d"),
    (dict(d=0, units=1), "d must be in"),
    (dict(d=8, units=2, memory="nope"), "unknown memory 'nope'"),
    (dict(d=6, units=2, complex_maps=True), "complex maps need an even unit width"),
])
def test_bad_construction(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ContextualMemory(**kwargs)


def test_bad_path():
    with pytest.raises(ValueError, match="path must be one of"):
        ContextualMemory(4, 2)(torch.randn(1, 3, 4), path="slow")
