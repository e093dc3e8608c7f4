"""The persistent memory: fast path against the written-out definition; slots; causality of keys."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.memories.persistent import PersistentMemory

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
