"""The contextual memory: fast path against the reference, the leaky-average scan, plug-in kernels."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sandbox.memories import Kernel
from sandbox.memories.contextual import ContextualMemory, leaky_average, leaky_average_reference, scaled, unit
from sandbox.memories.kernel_regression import strict_past_mask
from sandbox.registry import _KERNELS, get_kernel, list_kernels, register_kernel
from spies import record_calls

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


def test_carried_state_continues_the_average():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 40, 2, generator=gen, dtype=f64)
    leak = torch.tensor([0.3, 0.9, 0.99], dtype=f64)
    whole = leaky_average_reference(x, leak)
    for average in (leaky_average, leaky_average_reference):
        first = average(x[..., :25, :], leak)
        rest = average(x[..., 25:, :], leak, initial=first[..., -1, :])
        torch.testing.assert_close(torch.cat([first, rest], -2), whole, rtol=0, atol=1e-12)


def _options(kernel, normalise, **rest):
    # A kernel defined on the unit sphere needs normalised keys.
    return dict(kernel=kernel, normalise=normalise or get_kernel(kernel).unit_sphere, **rest)


memory_options = st.builds(
    _options, kernel=st.sampled_from(list_kernels()), normalise=st.booleans(), leak=st.booleans(),
    complex_maps=st.booleans(), beta=st.one_of(st.none(), st.floats(0.05, 30)),
    gamma=st.one_of(st.none(), st.floats(0, 1)))


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
    keys, values, _ = memory.features(x)
    outputs = memory.causal(keys, values)  # (B, U, T, h)
    assert torch.equal(outputs[:, :, 0], torch.zeros_like(outputs[:, :, 0]))
    assert torch.isfinite(memory(x[:, :1])).all() and values.shape == (3, 2, 5, 4)


def test_values_peek_at_the_next_input():
    # With γ = 0 the value at t is W_ψ x_{t+1}: changing x_{t+1} changes v_t, changing x_{t+2} does not.
    memory = ContextualMemory(4, 1, gamma=0.0, normalise=False).double()
    x = torch.randn(1, 6, 4, dtype=f64)
    _, v, _ = memory.features(x)
    y = x.clone()
    y[0, 3] += 1
    _, w, _ = memory.features(y)
    changed = (v != w).any(-1)[0, 0]  # (T,)
    assert changed.tolist() == [False, False, True, False, False, False]


def test_a_registered_variant_plugs_in_by_name():
    """A kernel registered by a test is the one every path uses: outputs equal a hand computation."""

    @register_kernel("test_sharper_gaussian")
    class Sharper(Kernel):
        def log_kernel(self, sq_dist, beta):
            return -4 * beta * sq_dist

    try:
        torch.manual_seed(0)
        memory = ContextualMemory(4, 1, kernel="test_sharper_gaussian", beta=0.7, gamma=0.25).double()
        assert isinstance(memory.kernel, Sharper)
        x = torch.randn(1, 7, 4, dtype=f64)
        # By hand: leaky-averaged unit keys, peek values, weights ∝ exp(-4·0.7‖k_t - k_s‖²) over s < t.
        leak, beta = float(memory.leak().detach()), float(memory.beta().detach())  # β = 0.7 as stored in float32
        raw_keys = x[0] @ memory.keys_map.weight.T  # (T, h)
        raw_values = x[0] @ memory.values_map.weight.T
        alpha = float(torch.exp(scaled(memory.alpha_log.detach())))
        keys, values, key_sum = [], [], torch.zeros(4, dtype=f64)
        for t in range(7):
            key_sum = raw_keys[t] + leak * key_sum
            keys.append(key_sum / key_sum.norm())
            following = raw_values[t + 1] if t + 1 < 7 else torch.zeros(4, dtype=f64)
            value = 0.25 * raw_values[t] + 0.75 * following
            values.append(alpha * value / value.norm())
        expected = [torch.zeros(4, dtype=f64)]
        for t in range(1, 7):
            w = torch.tensor([math.exp(-4 * beta * float((keys[t] - keys[s]).detach().pow(2).sum())) for s in range(t)], dtype=f64)
            expected.append(sum(w[s] * values[s] for s in range(t)) / w.sum())
        expected = torch.stack(expected) @ memory.out_map.weight.T  # (T, d)
        for path in ("fast", "reference"):
            torch.testing.assert_close(memory(x, path=path)[0], expected, rtol=0, atol=1e-12)
        cache = {}
        steps = torch.stack([memory.step(x[:, t], cache) for t in range(7)], 1)  # generation, one at a time
        torch.testing.assert_close(steps[0], expected, rtol=0, atol=1e-12)
    finally:
        _KERNELS.pop("test_sharper_gaussian", None)


@pytest.mark.parametrize("kwargs, match", [
    (dict(d=4, units=8), "units must be <= d"),
    (dict(d=0, units=1), "d must be in"),
    (dict(d=8, units=2, kernel="nope"), "unknown kernel 'nope'"),
    (dict(d=8, units=2, kernel="gaussian_sphere", normalise=False), "unit sphere and needs normalise=true"),
    (dict(d=8, units=2, options="gaussian"), "options must be a MemoryOptions"),
    (dict(d=6, units=2, complex_maps=True), "complex maps need an even unit width"),
])
def test_bad_construction(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ContextualMemory(**kwargs)


def test_bad_path():
    with pytest.raises(ValueError, match="path must be one of"):
        ContextualMemory(4, 2)(torch.randn(1, 3, 4), path="slow")


def test_scalars_are_stored_divided_by_ten_and_start_at_their_initial_values():
    # As the official code: θ / 10 is the parameter, so Adam moves θ at the pace of the weights.
    memory = ContextualMemory(8, 4)
    assert scaled(memory.leak_logit.detach()) == pytest.approx(torch.linspace(0.5, 5.0, 4), abs=1e-6)
    assert memory.leak_logit.detach() == pytest.approx(torch.linspace(0.05, 0.5, 4), abs=1e-7)
    torch.testing.assert_close(memory.leak(), torch.exp(-torch.linspace(0.5, 5.0, 4)))
    torch.testing.assert_close(memory.beta(), torch.full((4,), math.exp(2.0) / 2))
    torch.testing.assert_close(scaled(memory.alpha_log.detach()), torch.full((4,), -0.5))


def test_unit_and_the_beta_cap_by_hand():
    from sandbox.memories.contextual import BETA_CAP, learned_beta

    x = torch.tensor([[3e-3, 4e-3], [0.0, 0.0], [30.0, -40.0]], dtype=f64)
    torch.testing.assert_close(unit(x), torch.tensor([[0.6, 0.8], [0.0, 0.0], [0.6, -0.8]], dtype=f64),
                               rtol=0, atol=1e-15)  # short vectors too; a zero vector stays zero
    torch.testing.assert_close(unit(x, torch.tensor([[2.0], [1.0], [0.5]], dtype=f64)),
                               torch.tensor([[1.2, 1.6], [0.0, 0.0], [0.3, -0.4]], dtype=f64), rtol=0, atol=1e-15)
    # β = e^θ / 2 with θ capped at 10 (finite in half precision); below the cap θ is used as it is.
    assert BETA_CAP == 10.0
    torch.testing.assert_close(learned_beta(torch.tensor([20.0, 10.0, 9.5], dtype=f64)),
                               torch.tensor([math.exp(10) / 2, math.exp(10) / 2, math.exp(9.5) / 2], dtype=f64))


def test_scan_chunk_must_be_at_least_two():
    x, leak = torch.randn(1, 1, 5, 2, dtype=f64), torch.tensor([0.5], dtype=f64)
    torch.testing.assert_close(leaky_average(x, leak, 2), leaky_average_reference(x, leak), rtol=0, atol=1e-14)
    from sandbox.memories.contextual import gated_average

    for average, arg in ((leaky_average, leak), (gated_average, torch.log(leak).expand(1, 5))):
        with pytest.raises(ValueError, match=r"^chunk must be in \[2, inf\], got 1$"):
            average(x, arg, 1)


def test_initial_mixes_and_adaptive_beta():
    torch.manual_seed(0)
    memory = ContextualMemory(400, 400, adaptive_beta=True)
    gamma = memory.gamma().detach()  # γ uniform in (0.05, 0.95) per unit
    assert 0.05 <= float(gamma.min()) < 0.06 and 0.94 < float(gamma.max()) <= 0.95
    # α = σ(-2) ≈ 0.12 and β₀ = softplus(0) = log 2 for every unit; one query that sees 1 pair has
    # β = β₁ + log 2.
    torch.testing.assert_close(torch.sigmoid(memory.beta_power_logit.detach()), torch.full((400,), 1 / (1 + math.exp(2))))
    torch.testing.assert_close(memory.beta(torch.tensor([1]))[:, 0].detach(),
                               torch.full((400,), math.exp(2.0) / 2 + math.log(2)))
    fixed = ContextualMemory(4, 2, gamma=0.3, beta=1.5)
    torch.testing.assert_close(fixed.gamma(), torch.full((2,), 0.3))
    torch.testing.assert_close(fixed.beta(), torch.full((2,), 1.5))
    assert fixed.gamma_logit is None and fixed.beta_log is None
    assert ContextualMemory(4, 2, leak=False).leak() is None
    assert ContextualMemory(4, 2, normalise=False).alpha_log is None
    assert ContextualMemory(4, 2).hook_points() == ["keys", "values", "weights", "outputs"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(d=8, units=0), r"^units must be in \[1, inf\], got 0$"),
    (dict(d=8, units=2, width=0), r"^width must be in \[1, inf\], got 0$"),
    (dict(d=8, units=2, window=1), r"^window must be in \[2, inf\], got 1$"),
    (dict(d=8, units=2, lag=(0, 3)), r"^lag must be in \[1, inf\], got 0$"),
    (dict(d=8, units=2, lag=(3, 2)), r"^lag must be in \[3, inf\], got 2$"),
    (dict(d=6, units=2, complex_maps=True), r"^complex maps need an even unit width \(whole 2×2 blocks per unit\), got 3$"),
    (dict(d=4, units=8), r"^units must be <= d so that each unit has width >= 1, got d=4, units=8$"),
])
def test_bad_construction_names_the_parameter_and_range(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ContextualMemory(**kwargs)
    # The ends of each range are accepted.
    ContextualMemory(8, 2, width=1, window=2, lag=(1, 1))
    ContextualMemory(4, 4)
    ContextualMemory(1, 1)  # d = 1


@torch.no_grad()
def _contextual_by_hand(memory: ContextualMemory, x: torch.Tensor, lag: int | None = None):
    """Keys, values (B, U, T, h), weights (B, U, T, T), unit outputs (B, U, T, h) and outputs (B, T, d) of
    the default dot-product memory, position by position from the formulas of the module docstring:

        k̄_t = g_t W_φ x_t + λ_t k̄_{t-1}   (g_t = e^{min(w_g·x_t, 10)}, λ_t = e^{-|w_λ·x_t + θ_λ|} with gated
                                          keys; g = 1, λ = e^{-|θ_λ|} without; k̄_t = W_φ x_t without leak)
        v̄_t = γ W_ψ x_t + (1 - γ) W_ψ x_{t+1} (x_{T+1} = 0),  k = k̄/‖k̄‖, v = e^{θ_α} v̄/‖v̄‖ if normalised
        y_t = Σ_s softmax_s(2β k_t·k_s) v_s over s < t, s > t - window, s <= t - lag; y_t = 0 if none
        β = e^{θ_β}/2 (or fixed); adaptive: β n^{σ(θ_p)} + log(1 + e^{θ_0}), n = max(1, visible pairs)
    """
    B, T, _ = x.shape
    U, h, opts = memory.units, memory.width, memory.options
    f = lambda p: p.detach().double()  # noqa: E731
    raw_keys, raw_values = x @ f(memory.keys_map.weight).T, x @ f(memory.values_map.weight).T  # (B, T, U·h)
    if opts.gamma is None:
        gamma = [1 / (1 + math.exp(-float(g))) for g in f(memory.gamma_logit)]
    else:
        gamma = [opts.gamma] * U
    theta_beta = [10 * float(b) for b in f(memory.beta_log)] if opts.beta is None else None
    keys, values = torch.zeros(B, U, T, h, dtype=f64), torch.zeros(B, U, T, h, dtype=f64)
    weights, units_out = torch.zeros(B, U, T, T, dtype=f64), torch.zeros(B, U, T, h, dtype=f64)
    for b in range(B):
        for u in range(U):
            cols = slice(u * h, (u + 1) * h)
            key_sum = torch.zeros(h, dtype=f64)
            for t in range(T):
                if opts.gated_keys:
                    gate = math.exp(min(float(x[b, t] @ f(memory.gate_map.weight)[u]), 10.0))
                    leak = math.exp(-abs(float(x[b, t] @ f(memory.leak_map.weight)[u]) + 10 * float(memory.leak_logit[u])))
                    key_sum = gate * raw_keys[b, t, cols] + leak * key_sum
                elif opts.leak:
                    key_sum = raw_keys[b, t, cols] + math.exp(-abs(10 * float(memory.leak_logit[u]))) * key_sum
                else:
                    key_sum = raw_keys[b, t, cols]
                following = raw_values[b, t + 1, cols] if t + 1 < T else torch.zeros(h, dtype=f64)
                value = gamma[u] * raw_values[b, t, cols] + (1 - gamma[u]) * following
                if opts.normalise:
                    keys[b, u, t] = key_sum / key_sum.norm()
                    norm = max(float(value.norm()), 1e-12)  # a zero value (γ = 0 at the last position) stays 0
                    values[b, u, t] = math.exp(10 * float(memory.alpha_log[u])) * value / norm
                else:
                    keys[b, u, t], values[b, u, t] = key_sum, value
            for t in range(T):
                seen = [s for s in range(t) if (memory.window is None or s > t - memory.window)
                        and (lag is None or s <= t - lag)]
                beta = math.exp(min(theta_beta[u], 10.0)) / 2 if theta_beta is not None else opts.beta
                if opts.adaptive_beta:
                    power = 1 / (1 + math.exp(-float(memory.beta_power_logit[u])))
                    beta = beta * max(1, len(seen)) ** power + math.log1p(math.exp(float(memory.beta_floor_logit[u])))
                if not seen:
                    continue
                scores = torch.tensor([2 * beta * float(keys[b, u, t] @ keys[b, u, s]) for s in seen], dtype=f64)
                w = torch.exp(scores - scores.max())
                weights[b, u, t, seen] = w / w.sum()
                units_out[b, u, t] = weights[b, u, t] @ values[b, u]
    out = units_out.transpose(1, 2).flatten(-2) @ f(memory.out_map.weight).T  # (B, T, d)
    return keys, values, weights, units_out, out


CONTEXTUAL_CASES = {
    "default": dict(),
    "raw": dict(leak=False, normalise=False, gamma=0.25, beta=1.5),  # exact in float32
    "fixed_gamma_learned_beta": dict(gamma=0.0),
    "window": dict(window=3),
    "lag": dict(lag=(2, 4)),
    "adaptive_beta": dict(adaptive_beta=True),
    "gated_keys": dict(gated_keys=True),
    "everything": dict(window=4, lag=(2, 3), adaptive_beta=True, gated_keys=True, gamma=0.5),
}


@pytest.mark.parametrize("case", CONTEXTUAL_CASES)
def test_contextual_memory_by_hand(case):
    """Every option against the formulas, position by position: both paths, every recorded tensor,
    generation one position at a time and a prompt prefilled in two parts. d = 7 is not a multiple of the
    2 units: each has width 7 // 2 = 3. The learned scalars are moved off their initial values first."""
    from sandbox.layers import Capture

    torch.manual_seed(5)
    memory = ContextualMemory(7, 2, **CONTEXTUAL_CASES[case]).double().eval()
    assert memory.width == 3 and memory.keys_map.weight.shape == memory.values_map.weight.shape == (6, 7)
    assert memory.out_map.weight.shape == (7, 6)
    gen = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for name, p in memory.named_parameters():
            if not name.endswith("map.weight"):  # θ_λ, θ_β, θ_α, γ, β's power and floor
                p.copy_(0.3 * torch.randn(p.shape, generator=gen, dtype=f64))
            elif name.startswith(("gate_map", "leak_map")):  # zero at initialisation
                p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=f64))
    x = torch.randn(2, 8, 7, dtype=f64, generator=gen)
    lag = None if memory.lag is None else memory.lag[0]  # in evaluation the lag is its lower end
    keys, values, weights, units_out, expected = _contextual_by_hand(memory, x, lag)
    for path in ("fast", "reference"):
        memory.capture = Capture()
        memory.capture.requested = {"keys", "values", "weights", "outputs"}
        with torch.no_grad():
            torch.testing.assert_close(memory(x, path=path), expected, rtol=0, atol=1e-12)
        store = memory.capture.store
        for name, tensor in (("keys", keys), ("values", values), ("weights", weights), ("outputs", units_out)):
            torch.testing.assert_close(store[name], tensor, rtol=0, atol=1e-12, msg=f"{path} {name}")
    memory.capture = None
    with torch.no_grad():
        for path in ("fast", "reference"):
            cache = {}
            steps = torch.stack([memory.step(x[:, t], cache) if path == "fast" else
                                 memory(x[:, t:t + 1], path=path, cache=cache)[:, 0] for t in range(8)], 1)
            torch.testing.assert_close(steps, expected, rtol=0, atol=1e-12, msg=path)
            # The cache holds the keys and the finished values of every position but the last.
            torch.testing.assert_close(cache["keys"], keys, rtol=0, atol=1e-12)
            torch.testing.assert_close(cache["values"], values[..., :-1, :], rtol=0, atol=1e-12)
            for cut in (1, 5, 6):  # the rest: 7, 3 and 2 positions
                cache = {}
                parts = [memory(x[:, :cut], path=path, cache=cache), memory(x[:, cut:], path=path, cache=cache)]
                torch.testing.assert_close(torch.cat(parts, 1), expected, rtol=0, atol=1e-12, msg=f"{path} {cut}")


def test_decay_matrix_and_powers_by_hand():
    from sandbox.memories.contextual import decay_matrix, powers

    log_leak = torch.log(torch.tensor([0.5, 0.25], dtype=f64))
    expected = torch.tensor([[[0.5 ** (t - s) if s <= t else 0.0 for s in range(4)] for t in range(4)]
                             for _ in range(2)], dtype=f64)
    expected[1] = torch.tensor([[0.25 ** (t - s) if s <= t else 0.0 for s in range(4)] for t in range(4)], dtype=f64)
    torch.testing.assert_close(decay_matrix(log_leak, 4), expected, rtol=1e-15, atol=0)
    torch.testing.assert_close(powers(log_leak, 3), torch.tensor([[0.5, 0.25, 0.125], [0.25, 0.0625, 0.015625]],
                                                                 dtype=f64), rtol=1e-15, atol=0)
    assert powers(log_leak, 3).dtype == decay_matrix(log_leak, 3).dtype == f64


@pytest.mark.parametrize("length", [1, 2, 5, 7, 9])
def test_leaky_and_gated_averages_by_hand(length):
    """k̄_t = x_t + λ k̄_{t-1} from k̄_0 (the carried-in state), one step at a time; the gated average
    with a leak λ_t per step. Chunks of 2 and 3 cut the sequences at every kind of boundary."""
    from sandbox.memories.contextual import gated_average, gated_average_reference

    gen = torch.Generator().manual_seed(length)
    x = torch.randn(2, 3, length, 2, generator=gen, dtype=f64)  # (B, U, T, h)
    initial = torch.randn(2, 3, 2, generator=gen, dtype=f64)  # (B, U, h)
    leak = torch.tensor([0.3, 0.8, 0.95], dtype=f64)
    log_leaks = -torch.rand(2, 3, length, generator=gen, dtype=f64)  # (B, U, T): log λ_t
    for start in (None, initial):
        fixed, gated = torch.zeros_like(x), torch.zeros_like(x)
        state = torch.zeros(2, 3, 2, dtype=f64) if start is None else start
        gated_state = state
        for t in range(length):
            state = x[..., t, :] + leak[:, None] * state
            gated_state = x[..., t, :] + log_leaks[..., t, None].exp() * gated_state
            fixed[..., t, :], gated[..., t, :] = state, gated_state
        torch.testing.assert_close(leaky_average_reference(x, leak, initial=start), fixed, rtol=0, atol=1e-13)
        torch.testing.assert_close(gated_average_reference(x, log_leaks, initial=start), gated, rtol=0, atol=1e-13)
        for chunk in (2, 3, 64):
            torch.testing.assert_close(leaky_average(x, leak, chunk, initial=start), fixed, rtol=0, atol=1e-13)
            torch.testing.assert_close(gated_average(x, log_leaks, chunk, initial=start), gated, rtol=0, atol=1e-13)


def test_beta_conventions_lag_and_split():
    memory = ContextualMemory(8, 2, adaptive_beta=True)
    with pytest.raises(ValueError, match=r"^an adaptive β depends on the number of pairs stored: give pairs \(Tq,\)$"):
        memory.beta()
    # A query that sees no pair has β as for one pair (n = max(1, pairs)).
    torch.testing.assert_close(memory.beta(torch.tensor([0, 1])).detach()[:, 0], memory.beta(torch.tensor([1])).detach()[:, 0])
    # Checkpoints that kept a fixed attention scale 2β as "beta_fixed" load as β = 2β / 2.
    fixed = ContextualMemory(4, 2, beta=1.0)
    state = fixed.state_dict()
    state["beta_fixed"] = torch.tensor([3.0, 5.0])
    del state["beta_kernel"]
    fixed.load_state_dict(state)
    torch.testing.assert_close(fixed.beta(), torch.tensor([1.5, 2.5]))
    fixed.load_state_dict(fixed.state_dict())  # a current checkpoint loads as it is
    torch.testing.assert_close(fixed.beta(), torch.tensor([1.5, 2.5]))
    assert ContextualMemory(4, 2).current_lag() is None
    assert ContextualMemory(4, 2, lag=(3, 3)).train().current_lag() == 3
    # split: (B, T, U·h) -> (B, U, T, h), unit u the u-th block of h features.
    x = torch.arange(2 * 3 * 8, dtype=f64).reshape(2, 3, 8)
    torch.testing.assert_close(memory.split(x), x.reshape(2, 3, 2, 4).transpose(1, 2), rtol=0, atol=0)


def test_visible_by_hand():
    memory = ContextualMemory(4, 2, window=3)
    t = torch.arange(6)
    seen = memory.visible(t, t, lag=2)  # s < t, s > t - 3, s <= t - 2: exactly s = t - 2
    assert torch.equal(seen, torch.tensor([[s == q - 2 for s in range(6)] for q in range(6)]))
    plain = ContextualMemory(4, 2).visible(t[2:], t)  # queries at 2..5 against keys 0..5: strict past
    assert torch.equal(plain, torch.tensor([[s < q for s in range(6)] for q in range(2, 6)]))


def test_averages_of_one_unbatched_sequence_by_hand():
    """x (U, T, h) with no batch axis (the leading axes are optional): the lengths are read from the
    time axis, -2, not from a fixed position (here h = 2 and T = 5 differ)."""
    from sandbox.memories.contextual import decay_matrix

    gen = torch.Generator().manual_seed(0)
    x, initial = torch.randn(3, 5, 2, generator=gen, dtype=f64), torch.randn(3, 2, generator=gen, dtype=f64)
    leak = torch.tensor([0.3, 0.8, 0.95], dtype=f64)
    expected, state = torch.zeros_like(x), initial
    for t in range(5):
        state = x[:, t] + leak[:, None] * state
        expected[:, t] = state
    for chunk in (2, 64):
        torch.testing.assert_close(leaky_average(x, leak, chunk, initial=initial), expected, rtol=0, atol=1e-13)
    torch.testing.assert_close(leaky_average_reference(x, leak, initial=initial), expected, rtol=0, atol=1e-13)
    assert decay_matrix(torch.log(leak), 5).shape == (3, 5, 5)
    from sandbox.memories.contextual import gated_average, gated_average_reference

    log_leaks = -torch.rand(3, 5, generator=gen, dtype=f64)  # (U, T): log λ_t
    expected, state = torch.zeros_like(x), initial
    for t in range(5):
        state = x[:, t] + log_leaks[:, t, None].exp() * state
        expected[:, t] = state
    torch.testing.assert_close(gated_average_reference(x, log_leaks, initial=initial), expected, rtol=0, atol=1e-13)
    for chunk in (2, 64):
        torch.testing.assert_close(gated_average(x, log_leaks, chunk, initial=initial), expected, rtol=0, atol=1e-13)


def test_the_reference_averages_build_their_tensors_on_the_inputs_device():
    """Every tensor the reference averages make (the steps, the causal mask) follows the inputs' device.
    Checked without a GPU on the `meta` device, where a tensor made on the CPU raises when it meets them."""
    from sandbox.memories.contextual import decay_matrix, gated_average_reference, leaky_average_reference, powers

    meta = dict(device="meta", dtype=torch.float64)
    x, leak, log_leak = torch.empty(2, 3, 5, 4, **meta), torch.empty(3, **meta), torch.empty(3, 5, **meta)
    assert decay_matrix(torch.log(leak), 5).shape == (3, 5, 5)
    assert powers(torch.log(leak), 5).shape == (3, 5)
    assert leaky_average_reference(x, leak, initial=torch.empty(2, 3, 4, **meta)).device.type == "meta"
    assert gated_average_reference(x, log_leak, initial=torch.empty(2, 3, 4, **meta)).device.type == "meta"


def _record_kernel_calls(memory: ContextualMemory) -> list[str]:
    """Wrap the memory's kernel methods so that each call appends its name to the returned list."""
    return record_calls(memory.kernel, ("retrieve", "retrieve_varying", "causal", "causal_varying", "weights"))


def _attention_by_hand(queries, keys, values, beta, mask):
    """Σ_s softmax_s(2β_t q_t·k_s) v_s over the visible s, 0 where none is: β (U,) or (U, Tq), mask (Tq, N)."""
    beta = beta[:, None] if beta.dim() == 1 else beta  # (U, 1) or (U, Tq)
    scores = 2 * beta[..., None] * (queries @ keys.transpose(-1, -2))  # (B, U, Tq, N)
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1).nan_to_num(0.0)
    return weights @ values


@pytest.mark.parametrize("adaptive", [False, True])
def test_each_path_retrieves_and_runs_causally_its_own_way(adaptive):
    """`path` is honoured by `retrieve` and `causal`: the fast path is the kernel's own form (`retrieve`,
    `causal`; `retrieve_varying`, `causal_varying` with one β per query), the reference the kernel's
    weights written out, and both default to the fast path. Which ran is recorded by a spy; every result
    is the attention written out by hand (a query with no visible pair retrieves 0)."""
    torch.manual_seed(0)
    memory = ContextualMemory(8, 2, adaptive_beta=adaptive).double()
    calls = _record_kernel_calls(memory)
    gen = torch.Generator().manual_seed(1)
    q, k, v = (unit(torch.randn(2, 2, n, 4, generator=gen, dtype=f64)) for n in (5, 6, 6))  # (B, U, T, h)
    mask = torch.rand(5, 6, generator=gen) < 0.5  # (Tq, N)
    mask[2] = False  # a query that sees nothing
    pairs = mask.sum(-1)
    fast, varying = ("retrieve_varying", "causal_varying") if adaptive else ("retrieve", "causal")
    with torch.no_grad():
        beta = memory.beta(pairs) if adaptive else memory.beta()
        expected = _attention_by_hand(q, k, v, beta, mask)
        for kwargs, call in ((dict(), fast), (dict(path="fast"), fast), (dict(path="reference"), "weights")):
            calls.clear()
            out = memory.retrieve(q, k, v, mask=mask, pairs=pairs, **kwargs)
            assert calls == [call], kwargs
            torch.testing.assert_close(out, expected, rtol=0, atol=1e-12, msg=str(kwargs))
        causal_mask = strict_past_mask(6)
        beta = memory.beta(causal_mask.sum(-1)) if adaptive else memory.beta()
        expected = _attention_by_hand(k, k, v, beta, causal_mask)
        for kwargs, call in ((dict(), varying), (dict(path="fast"), varying), (dict(path="reference"), "weights")):
            calls.clear()
            out = memory.causal(k, v, **kwargs)
            assert calls == [call], kwargs
            torch.testing.assert_close(out, expected, rtol=0, atol=1e-12, msg=str(kwargs))


@pytest.mark.parametrize("adaptive", [False, True])
def test_retrieval_runs_in_the_inputs_dtype(adaptive):
    """A float64 memory given float32 queries, keys and values retrieves in float32 (β is cast to the
    queries' dtype), on both paths, directly and causally, and agrees with float64 within float32 rounding."""
    torch.manual_seed(0)
    memory = ContextualMemory(8, 2, adaptive_beta=adaptive, window=4).double()
    gen = torch.Generator().manual_seed(1)
    q, k, v = (unit(torch.randn(2, 2, 6, 4, generator=gen, dtype=f64)) for _ in range(3))
    t = torch.arange(6)
    mask = memory.visible(t, t)
    with torch.no_grad():
        for path in ("fast", "reference"):
            for run in (lambda *a: memory.retrieve(*a, mask=mask, pairs=mask.sum(-1), path=path),
                        lambda q, k, v: memory.causal(k, v, path=path)):
                out = run(q.float(), k.float(), v.float())
                assert out.dtype == torch.float32, path
                torch.testing.assert_close(out, run(q, k, v).float(), rtol=0, atol=1e-5, msg=path)
            weights = memory.attention_weights(k.float())
            assert weights.dtype == torch.float32
            torch.testing.assert_close(weights, memory.attention_weights(k).float(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("case", ["default", "window", "lag", "adaptive_beta", "gated_keys", "everything"])
def test_the_memory_makes_its_tensors_on_the_inputs_device(case):
    """Every tensor the module makes (positions, pair counts, masks) follows the input's device: the whole
    memory runs on the `meta` device, where a tensor made on the CPU raises when it meets the others.
    Both paths, the recorded weights, and a prompt continued from a cache."""
    from sandbox.layers import Capture

    memory = ContextualMemory(8, 2, **CONTEXTUAL_CASES[case]).to("meta").eval()
    x = torch.empty(2, 5, 8, device="meta")
    for path in ("fast", "reference"):
        memory.capture = Capture()
        memory.capture.requested = {"weights"}
        assert memory(x, path=path).shape == (2, 5, 8)
        assert memory.capture.store["weights"].shape == (2, 2, 5, 5)
        memory.capture = None
        keys = torch.empty(2, 2, 5, 4, device="meta")
        assert memory.causal(keys, keys, path=path).shape == (2, 2, 5, 4)
        cache = {}
        memory(x[:, :3], path=path, cache=cache)
        assert memory(x[:, 3:], path=path, cache=cache).device.type == "meta"


@pytest.mark.parametrize("gated", [False, True])
def test_features_average_the_keys_the_way_their_path_says(gated, monkeypatch):
    """The fast path averages the keys by the chunked scan (`leaky_average`, `gated_average`), the
    reference by the T×T decay matrix (`*_reference`), from `features` and from `forward`, and both
    default to the fast path. A spy records which average is called first; both give the same keys."""
    from sandbox.memories import contextual

    calls = record_calls(contextual, ("leaky_average", "leaky_average_reference", "gated_average",
                                      "gated_average_reference"), monkeypatch.setattr)
    torch.manual_seed(0)
    memory = ContextualMemory(4, 2, gated_keys=gated).double()
    fast, reference = ("gated_average", "gated_average_reference") if gated else ("leaky_average", "leaky_average_reference")
    x = torch.randn(1, 6, 4, dtype=f64)
    keys = {}
    with torch.no_grad():
        for kwargs, call in ((dict(), fast), (dict(path="fast"), fast), (dict(path="reference"), reference)):
            calls.clear()
            keys[call], _, _ = memory.features(x, **kwargs)
            assert calls[0] == call, kwargs
            calls.clear()
            memory(x, **kwargs)
            assert calls[0] == call, kwargs
    torch.testing.assert_close(keys[fast], keys[reference], rtol=0, atol=1e-12)


@pytest.mark.parametrize("path", ["fast", "reference"])
def test_key_gates_are_capped_at_e_to_the_ten(path):
    """g_t = e^{min(w_g·x_t, 10)} (w_g has no bias): a gate logit of 12 or 1000 gives e^10 (finite in any precision), one
    of 3 gives e^3. Raw keys (no normalisation), W_φ = I, w_λ = 0 and λ = 1/2: k̄_t = g_t x_t + k̄_{t-1}/2."""
    memory = ContextualMemory(2, 1, gated_keys=True, normalise=False).double()
    with torch.no_grad():
        memory.keys_map.weight.copy_(torch.eye(2))
        memory.gate_map.weight.copy_(torch.tensor([[6.0, 0.0]]))  # w_g·x = 6 x_1
        memory.leak_map.weight.zero_()
        memory.leak_logit.fill_(math.log(2) / 10)  # θ_λ = log 2: λ = 1/2
        x = torch.tensor([[[2.0, 0.0], [0.5, 1.0], [1000 / 6, -1.0]]], dtype=f64)  # gate logits 12, 3, 1000
        keys, _, _ = memory.features(x, path=path)
    gates = [math.exp(10), math.exp(3), math.exp(10)]
    expected, state = [], torch.zeros(2, dtype=f64)
    for t in range(3):
        state = gates[t] * x[0, t] + state / 2
        expected.append(state)
    torch.testing.assert_close(keys[0, 0], torch.stack(expected), rtol=1e-12, atol=0)


@pytest.mark.parametrize("gated_keys", [False, True])
@pytest.mark.parametrize("path", ["fast", "reference"])
def test_the_memory_follows_the_dtype_of_bfloat16_autocast(path, gated_keys):
    """Under bfloat16 autocast (what `train.amp` turns on, on CUDA; here on the CPU) the maps compute in
    bfloat16 and the memory's own scalars (λ, γ, α) are cast to that dtype: keys, values and outputs are
    bfloat16 over more than one 64-step chunk of the scan and continued from a cache, and agree with the
    float32 memory within bfloat16 rounding. Gated keys too: the state a chunk carries into the next is
    float32 there, and the keys must stay in the autocast dtype across it."""
    from sandbox.layers import Capture

    torch.manual_seed(0)
    memory = ContextualMemory(8, 2, gated_keys=gated_keys)
    x = torch.randn(2, 70, 8, generator=torch.Generator().manual_seed(1))
    memory.capture = Capture()
    memory.capture.requested = {"keys", "values", "outputs"}
    with torch.no_grad():
        full = memory(x, path=path)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            keys, values, _ = memory.features(x, path=path)
            out = memory(x, path=path)
            cache = {}
            parts = [memory(x[:, :40], path=path, cache=cache), memory(x[:, 40:], path=path, cache=cache)]
    assert keys.dtype == values.dtype == out.dtype == torch.bfloat16
    assert all(memory.capture.store[name].dtype == torch.bfloat16 for name in ("keys", "values", "outputs"))
    for y in (out, torch.cat(parts, 1)):
        assert y.dtype == torch.bfloat16
        torch.testing.assert_close(y.float(), full, rtol=0, atol=3e-2)


@pytest.mark.parametrize("path", ["fast", "reference"])
def test_forward_runs_the_fused_strict_past_only_on_a_fresh_plain_sequence(path):
    """A fresh forward of a memory without window or lag is the strict past of `causal` (on the fast path
    the kernel's fused `causal`, on the reference its weights written out); with a window or a lag, or
    continuing a cache, the queries retrieve under the visibility mask, except one plain step, which sees
    all its past and needs none. Spies record the memory's and the kernel's calls, in order."""
    def spy(memory):
        calls = _record_kernel_calls(memory)
        causal, retrieve = memory.causal, memory.retrieve
        def recorded_causal(*args, **kwargs):
            calls.append("memory.causal")
            return causal(*args, **kwargs)
        def recorded_retrieve(*args, **kwargs):
            calls.append("memory.retrieve" + (" unmasked" if kwargs.get("mask") is None else " masked"))
            return retrieve(*args, **kwargs)
        memory.causal, memory.retrieve = recorded_causal, recorded_retrieve
        return calls

    kernel_call = "causal" if path == "fast" else "weights"
    torch.manual_seed(0)
    x = torch.randn(2, 6, 8)
    plain = ContextualMemory(8, 2).eval()
    calls = spy(plain)
    with torch.no_grad():
        plain(x, path=path)
        assert calls[0] == "memory.causal" and kernel_call in calls, calls
        cache = {}
        plain(x[:, :3], path=path, cache=cache)
        calls.clear()
        plain(x[:, 3:4], path=path, cache=cache)  # one step: its whole past, no mask
        assert calls[0] == "memory.retrieve unmasked", calls
        calls.clear()
        plain(x[:, 4:], path=path, cache=cache)  # two steps
        assert calls == ["memory.retrieve masked", "retrieve" if path == "fast" else "weights"], calls
        for options in (dict(window=3), dict(lag=(2, 2))):
            cut = ContextualMemory(8, 2, **options).eval()
            calls = spy(cut)
            cut(x, path=path)
            assert calls[0] == "memory.retrieve masked", (options, calls)


def test_complex_maps_reach_the_three_maps():
    """complex_maps=True makes W_φ, W_ψ and W_o complex maps: each weight is made of 2×2 blocks
    [[a, -b], [b, a]] (a plain map drawn at random is not)."""
    torch.manual_seed(0)
    memory = ContextualMemory(8, 2, complex_maps=True)
    for name in ("keys_map", "values_map", "out_map"):
        w = getattr(memory, name).weight.detach()  # (out, in)
        assert w.shape == (8, 8), name
        torch.testing.assert_close(w[0::2, 0::2], w[1::2, 1::2], rtol=0, atol=0, msg=name)
        torch.testing.assert_close(w[0::2, 1::2], -w[1::2, 0::2], rtol=0, atol=0, msg=name)
        assert w[0::2, 1::2].abs().min() > 0, name  # b ≠ 0: a genuine rotation part
