"""The persistent memory: fast path against the written-out definition; slots; causality of keys."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.memories.persistent import PersistentMemory, SwiGLUMemory

f64 = torch.float64


@settings(max_examples=25)
@given(seed=st.integers(0, 2**31), length=st.integers(1, 30), units=st.sampled_from([1, 2, 4]),
       slots=st.integers(1, 20), leak=st.booleans(), normalise=st.booleans())
def test_fast_path_matches_reference(seed, length, units, slots, leak, normalise):
    torch.manual_seed(seed)
    memory = PersistentMemory(4 * units, units, slots, leak=leak, normalise=normalise).double()
    x = torch.randn(2, length, 4 * units, dtype=f64, requires_grad=True)
    fast, reference = memory(x), memory(x, path="reference")
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-9)
    g_fast = torch.autograd.grad(fast.sum(), [x, memory.slot_keys, memory.slot_values])
    g_ref = torch.autograd.grad(reference.sum(), [x, memory.slot_keys, memory.slot_values])
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(memory.float()(x.detach().float()), reference.detach().float(), rtol=0, atol=1e-4)


def test_slot_initialisation_and_parameter_count():
    torch.manual_seed(0)
    d, units, slots = 64, 4, 224
    memory = PersistentMemory(d, units, slots)
    width = d // units
    assert memory.slot_keys.shape == memory.slot_values.shape == (units, slots, width)
    assert abs(memory.slot_keys.std().item() - width**-0.5) < 0.02
    # W_φ and W_o (2d²) plus the slots (2Nd) plus λ and β per unit.
    assert sum(p.numel() for p in memory.parameters()) == 2 * d * d + 2 * slots * d + 2 * units


def test_output_at_t_ignores_later_inputs():
    memory = PersistentMemory(8, 2, 5).double()
    x = torch.randn(1, 10, 8, dtype=f64, requires_grad=True)
    (grad,) = torch.autograd.grad(memory(x)[0, 4].sum(), x)
    assert torch.count_nonzero(grad[0, 5:]) == 0 and torch.count_nonzero(grad[0, :5]) > 0


def test_scalars_start_at_their_initial_values_and_keys_are_recorded():
    from sandbox.memories.contextual import scaled

    memory = PersistentMemory(12, 3, 4)
    # θ_λ spread over [0.5, 5] (λ = e^{-θ_λ}), θ_β = log 2β = 2, both stored divided by ten.
    torch.testing.assert_close(scaled(memory.leak_logit.detach()), torch.linspace(0.5, 5.0, 3))
    torch.testing.assert_close(memory.leak(), torch.exp(-torch.linspace(0.5, 5.0, 3)))
    torch.testing.assert_close(memory.beta(), torch.full((3,), math.exp(2.0) / 2))
    assert PersistentMemory(12, 3, 4, leak=False).leak() is None
    assert memory.hook_points() == ["keys", "weights", "outputs"]
    from sandbox.layers import Capture

    memory.capture = Capture()
    memory.capture.requested = {"keys", "outputs"}
    x = torch.randn(2, 5, 12)
    memory(x)
    keys = memory.capture.store["keys"]  # (B, U, T, h), unit norm (normalise is on by default)
    assert keys.shape == (2, 3, 5, 4) and set(memory.capture.store) == {"keys", "outputs"}
    torch.testing.assert_close(keys.norm(dim=-1), torch.ones(2, 3, 5))


def test_bad_sizes_are_named():
    for kwargs, match in ((dict(d=8, units=0, slots=4), r"^units must be in \[1, inf\], got 0$"),
                          (dict(d=8, units=2, slots=0), r"^slots must be in \[1, inf\], got 0$")):
        with pytest.raises(ValueError, match=match):
            PersistentMemory(**kwargs)
    for kwargs, match in ((dict(d=0, slots=4), r"^d must be in \[1, inf\], got 0$"),
                          (dict(d=8, slots=0), r"^slots must be in \[1, inf\], got 0$")):
        with pytest.raises(ValueError, match=match):
            SwiGLUMemory(**kwargs)
    with pytest.raises(ValueError, match=r"^path must be one of \['fast', 'reference'\], got 'slow'$"):
        PersistentMemory(8, 2, 3)(torch.randn(1, 2, 8), path="slow")
    with pytest.raises(ValueError, match=r"^path must be one of \['fast', 'reference'\], got 'slow'$"):
        SwiGLUMemory(8, 3)(torch.randn(1, 2, 8), path="slow")


def test_swiglu_memory_by_hand():
    # Hidden width matching the slot memory's parameters: 3·d·hidden = 2d² + 2Nd, d = 6, N = 9: hidden = 10.
    memory = SwiGLUMemory(6, 9).double()
    assert memory.gate_map.weight.shape == memory.up_map.weight.shape == (10, 6)
    assert memory.out_map.weight.shape == (6, 10) and memory.hook_points() == ["outputs"]
    assert SwiGLUMemory(1, 1).out_map.weight.shape == (1, 1)  # round((2 + 2) / 3) = 1
    x = torch.randn(2, 3, 6, dtype=f64)
    gate, up = x @ memory.gate_map.weight.T, x @ memory.up_map.weight.T
    expected = (gate / (1 + torch.exp(-gate)) * up) @ memory.out_map.weight.T  # silu(g) = g σ(g)
    for path in ("fast", "reference"):
        torch.testing.assert_close(memory(x, path=path), expected, rtol=0, atol=1e-13)
