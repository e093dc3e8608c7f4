"""The persistent memory: fast path against the written-out definition; slots; causality of keys."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.memories.persistent import PersistentMemory, SwiGLUMemory
from spies import record_calls

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


def _persistent_by_hand(memory: PersistentMemory, x: torch.Tensor, leaks, normalise: bool):
    """Keys (B, U, T, h), weights (B, U, T, N), unit outputs (B, U, T, h) and outputs (B, T, d), one loop
    per position: k̄_t = W_φ x_t + λ k̄_{t-1} (λ given by hand), k = k̄/‖k̄‖, w = softmax(2β k·M_k[n]),
    y = Σ_n w_n M_v[n], out = W_o [y_1; …; y_U]; β = e^2/2, the initial value, so 2β = e^2."""
    B, T, _ = x.shape
    U, h = memory.units, memory.width
    raw = x @ memory.keys_map.weight.detach().T  # (B, T, U·h)
    slot_keys, slot_values = memory.slot_keys.detach(), memory.slot_values.detach()  # (U, N, h)
    keys = torch.zeros(B, U, T, h, dtype=x.dtype)
    weights = torch.zeros(B, U, T, slot_keys.shape[1], dtype=x.dtype)
    units_out = torch.zeros(B, U, T, h, dtype=x.dtype)
    for b in range(B):
        for u in range(U):
            key_sum = torch.zeros(h, dtype=x.dtype)
            for t in range(T):
                key_sum = raw[b, t, u * h:(u + 1) * h] + (leaks[u] * key_sum if leaks is not None else 0)
                key = key_sum / key_sum.norm() if normalise else key_sum
                scores = torch.tensor([math.exp(2.0) * float(key @ slot_keys[u, n]) for n in range(slot_keys.shape[1])],
                                      dtype=x.dtype)
                w = torch.exp(scores - scores.max())
                w = w / w.sum()
                keys[b, u, t], weights[b, u, t], units_out[b, u, t] = key, w, w @ slot_values[u]
    out = units_out.transpose(1, 2).flatten(-2) @ memory.out_map.weight.detach().T  # (B, T, d)
    return keys, weights, units_out, out


@pytest.mark.parametrize("leak, normalise", [(True, True), (False, True), (True, False)])
def test_persistent_memory_by_hand(leak, normalise):
    """d = 7 is not a multiple of the 2 units: each unit has width 7 // 2 = 3, W_φ maps 7 -> 6, W_o 6 -> 7.
    λ = e^{-0.5} and e^{-5} (θ_λ spread over [0.5, 5]); every recorded tensor and both paths by hand."""
    from sandbox.layers import Capture

    torch.manual_seed(3)
    memory = PersistentMemory(7, 2, 5, leak=leak, normalise=normalise).double()
    assert memory.keys_map.weight.shape == (6, 7) and memory.out_map.weight.shape == (7, 6)
    # θ_β = 2 and θ_λ = 0.5, 5, stored divided by ten in float32: set to the same values in float64.
    with torch.no_grad():
        torch.testing.assert_close(memory.beta_log, torch.full((2,), 0.2, dtype=f64), rtol=1e-7, atol=0)
        memory.beta_log.copy_(torch.full((2,), 0.2, dtype=f64))
        if leak:
            torch.testing.assert_close(memory.leak_logit, torch.tensor([0.05, 0.5], dtype=f64), rtol=1e-7, atol=0)
            memory.leak_logit.copy_(torch.tensor([0.05, 0.5], dtype=f64))
    x = torch.randn(2, 4, 7, dtype=f64)
    leaks = [math.exp(-0.5), math.exp(-5.0)] if leak else None
    keys, weights, units_out, expected = _persistent_by_hand(memory, x, leaks, normalise)
    for path in ("fast", "reference"):
        memory.capture = Capture()
        memory.capture.requested = {"keys", "weights", "outputs"}
        with torch.no_grad():
            torch.testing.assert_close(memory(x, path=path), expected, rtol=0, atol=1e-12)
        store = memory.capture.store
        torch.testing.assert_close(store["keys"], keys, rtol=0, atol=1e-12)
        torch.testing.assert_close(store["weights"], weights, rtol=0, atol=1e-12)
        torch.testing.assert_close(store["outputs"], units_out, rtol=0, atol=1e-12)
    memory.capture = None
    # Generation: one position at a time, the leaky key sum carried in the cache; a prompt prefilled in
    # one call, then stepped on, gives the same.
    for prompt in (0, 3):
        cache = {}
        with torch.no_grad():
            steps = [memory(x[:, :prompt], cache=cache)] if prompt else []
            steps += [memory.step(x[:, t], cache)[:, None] for t in range(prompt, 4)]
        torch.testing.assert_close(torch.cat(steps, 1), expected, rtol=0, atol=1e-12)
        assert (set(cache) == {"key_state"}) == leak
        if leak:  # the leaky sum k̄_T, before normalisation
            key_sums = _persistent_by_hand(memory, x, leaks, normalise=False)[0]
            torch.testing.assert_close(cache["key_state"], key_sums[..., -1, :], rtol=0, atol=1e-12)


def test_slot_values_start_like_the_slot_keys_and_the_slots_as_the_kernel_sees_them():
    torch.manual_seed(1)
    memory = PersistentMemory(64, 4, 224)
    for slots in (memory.slot_keys, memory.slot_values):  # N(0, 1/h), h = 16
        assert abs(slots.std().item() - 0.25) < 0.01 and abs(slots.mean().item()) < 0.01
    assert not torch.equal(memory.slot_keys, memory.slot_values)
    # A kernel on raw keys sees the slot keys as they are; one on the unit sphere sees them normalised.
    slot_keys, slot_values = memory.double().slots(f64)
    assert slot_keys.dtype == slot_values.dtype == f64
    assert torch.equal(slot_keys, memory.slot_keys) and torch.equal(slot_values, memory.slot_values)
    sphere = PersistentMemory(8, 2, 5, kernel="gaussian_sphere")
    slot_keys, slot_values = sphere.slots(f64)
    raw = sphere.slot_keys.detach().double()
    torch.testing.assert_close(slot_keys, raw / raw.norm(dim=-1, keepdim=True), rtol=0, atol=1e-15)
    assert torch.equal(slot_values, sphere.slot_values.double())
    # The ends of the ranges: one unit, one slot.
    one = PersistentMemory(3, 1, 1)
    assert one.slot_keys.shape == (1, 1, 3) and one(torch.randn(1, 2, 3)).shape == (1, 2, 3)
    assert SwiGLUMemory(3, 1).gate_map.weight.shape == (round((18 + 6) / 9), 3)


def test_swiglu_records_its_hidden_layer():
    from sandbox.layers import Capture

    memory = SwiGLUMemory(4, 2).double()
    memory.capture = Capture()
    memory.capture.requested = {"outputs"}
    x = torch.randn(1, 3, 4, dtype=f64)
    out = memory(x)
    gate, up = x @ memory.gate_map.weight.T, x @ memory.up_map.weight.T
    hidden = gate * torch.sigmoid(gate) * up
    torch.testing.assert_close(memory.capture.store["outputs"], hidden.detach(), rtol=0, atol=1e-14)
    torch.testing.assert_close(out, hidden @ memory.out_map.weight.T, rtol=0, atol=1e-14)
    assert memory.gate_map.bias is None and memory.up_map.bias is None and memory.out_map.bias is None


def test_each_path_averages_the_keys_its_own_way(monkeypatch):
    """`path` is honoured down to the keys: the fast path takes the chunked scan, the reference the T×T
    decay matrix (70 positions cross a chunk boundary), and `keys` defaults to the fast path. Which average
    ran is recorded by spies, not read from rounding differences, which another torch build may not have."""
    from sandbox.memories import persistent
    from sandbox.memories.contextual import leaky_average, leaky_average_reference

    calls = record_calls(persistent, ("leaky_average", "leaky_average_reference"), monkeypatch.setattr)
    torch.manual_seed(0)
    memory = PersistentMemory(8, 2, 3).double()
    x = torch.randn(2, 70, 8, dtype=f64)
    with torch.no_grad():
        raw = memory.keys_map(x).unflatten(-1, (2, 4)).transpose(-3, -2)  # (B, U, T, h)
        fast, reference = leaky_average(raw, memory.leak()), leaky_average_reference(raw, memory.leak())
        for path, expected, call in (("fast", fast, "leaky_average"), ("reference", reference, "leaky_average_reference"),
                                     (None, fast, "leaky_average")):
            calls.clear()
            keys = memory.keys(x) if path is None else memory.keys(x, path=path)
            assert calls == [call] and torch.equal(keys, expected), path


def test_each_path_retrieves_its_own_way():
    """`path` is honoured down to the retrieval: the reference path is the kernel's weights over the slots
    written out, to the last bit, and the fast path is the kernel's own retrieval (a spy records which
    ran); each path's recorded keys come from its own average. The slots come in the dtype asked for."""
    from sandbox.layers import Capture
    from sandbox.memories.contextual import leaky_average, leaky_average_reference, unit

    torch.manual_seed(0)
    memory = PersistentMemory(8, 2, 3).double()
    x = torch.randn(2, 70, 8, dtype=f64)
    memory.capture = Capture()
    memory.capture.requested = {"keys"}
    with torch.no_grad():
        raw = memory.keys_map(x).unflatten(-1, (2, 4)).transpose(-3, -2)  # (B, U, T, h)
        calls = record_calls(memory.kernel, ("retrieve",))
        outputs = {}
        for path in ("fast", "reference"):
            calls.clear()
            outputs[path] = memory(x, path=path)
            assert calls == (["retrieve"] if path == "fast" else []), path
        keys = memory.capture.store["keys"]  # the reference path's, recorded last
        assert torch.equal(keys, unit(leaky_average_reference(raw, memory.leak())))
        slot_keys, slot_values = memory.slots(f64)
        written_out = memory.kernel.weights(keys, slot_keys, memory.beta()) @ slot_values  # (B, U, T, h)
        assert torch.equal(outputs["reference"], memory.out_map(written_out.transpose(-3, -2).flatten(-2)))
        torch.testing.assert_close(outputs["fast"], outputs["reference"], rtol=0, atol=1e-12)
        calls.clear()
        assert torch.equal(memory(x), outputs["fast"]) and calls == ["retrieve"]  # fast by default
        keys = memory.capture.store["keys"]  # the fast path's
        assert torch.equal(keys, unit(leaky_average(raw, memory.leak())))
        written_out = memory.kernel.weights(keys, slot_keys, memory.beta()) @ slot_values
        torch.testing.assert_close(outputs["fast"], memory.out_map(written_out.transpose(-3, -2).flatten(-2)),
                                   rtol=0, atol=1e-12)
    assert all(s.dtype == f64 for s in PersistentMemory(8, 2, 3).slots(f64))


def test_options_are_honoured_as_one_object_and_complex_maps_reach_both_maps():
    from sandbox.layers import ComplexLinear
    from sandbox.memories.options import MemoryOptions

    memory = PersistentMemory(8, 2, 3, MemoryOptions(leak=False, kernel="gaussian_sphere"))
    assert memory.leak() is None and memory.kernel.unit_sphere and memory.options.leak is False
    complex_memory = PersistentMemory(8, 2, 3, complex_maps=True)
    assert isinstance(complex_memory.keys_map, ComplexLinear) and isinstance(complex_memory.out_map, ComplexLinear)
    assert isinstance(PersistentMemory(8, 2, 3).keys_map, torch.nn.Linear)
    assert complex_memory(torch.randn(1, 3, 8)).shape == (1, 3, 8)
