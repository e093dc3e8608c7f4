"""The ten claims of docs/kernel-regression.md, each a test, each run on every registered kernel.

A kernel that registers itself (`sandbox.registry.register_kernel`) is tested here without writing a
test. A claim it declares given up (`Kernel.gives_up`, with the reason) runs as a strict expected
failure: the reason is shown, and the run fails if the claim holds after all. Claims are checked in
float64 with tolerances derived from the rounding of the logits (see `Draw.output_tol`), never with a
blanket "close enough".
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.autograd.gradcheck import GradcheckError

from sandbox.registry import get_kernel
from strategies import EPS, KERNELS, Draw, log_uniform, memory, normalise, retrievals


def per_kernel(claim: int):
    """Run a claim on every registered kernel; those that give it up as strict expected failures."""
    params = []
    for name in KERNELS:
        reason = get_kernel(name).gives_up.get(claim)
        marks = [pytest.mark.xfail(strict=True, reason=f"{name} gives up claim {claim}: {reason}")] if reason else []
        params.append(pytest.param(name, marks=marks, id=name))
    return pytest.mark.parametrize("name", params)


def close(actual: torch.Tensor, expected: torch.Tensor, atol: float, claim: str) -> None:
    """assert_close with rtol=0 whose message starts with the claim it checks (the broken-memory
    meta-tests require that message, so a crash cannot pass for a caught bug)."""
    torch.testing.assert_close(actual, expected, rtol=0, atol=atol, msg=lambda detail: f"{claim}\n{detail}")


def retrieve(name: str, d: Draw, **changes) -> torch.Tensor:
    args = dict(queries=d.queries, keys=d.keys, values=d.values, beta=d.beta) | changes
    return memory(name).retrieve(args["queries"], args["keys"], args["values"], args["beta"])


# 1. Weights are >= 0 and sum to 1, so every output coordinate lies between the values' min and max.
@per_kernel(1)
@given(data=st.data())
def test_1_convex_combination(name, data):
    m = memory(name)
    d = data.draw(retrievals(m.unit_sphere))
    weights = m.weights(d.queries, d.keys, d.beta)  # (..., Tq, N)
    assert (weights >= 0).all(), "claim 1: a weight is negative"
    n = d.keys.shape[-2]
    close(weights.sum(-1), torch.ones_like(weights[..., 0]), 16 * EPS * n, "claim 1: the weights do not sum to 1")
    out = retrieve(name, d)  # (..., Tq, dv)
    slack = 16 * EPS * n * d.value_scale
    assert (out >= d.values.amin(-2, keepdim=True) - slack).all(), "claim 1: an output is below the values' minimum"
    assert (out <= d.values.amax(-2, keepdim=True) + slack).all(), "claim 1: an output is above the values' maximum"


# 2. Permuting the stored pairs, or storing each pair twice, leaves f unchanged.
@per_kernel(2)
@given(data=st.data())
def test_2_permutation_and_duplication(name, data):
    d = data.draw(retrievals(memory(name).unit_sphere))
    out = retrieve(name, d)
    perm = torch.tensor(data.draw(st.permutations(range(d.keys.shape[-2]))))
    permuted = retrieve(name, d, keys=d.keys[..., perm, :], values=d.values[..., perm, :])
    doubled = retrieve(name, d, keys=torch.cat([d.keys, d.keys], -2), values=torch.cat([d.values, d.values], -2))
    close(permuted, out, d.output_tol(), "claim 2: permuting the pairs changed f")
    close(doubled, out, d.output_tol(), "claim 2: storing every pair twice changed f")


# 3. Constant values give that constant; f(a·v + b) = a·f(v) + b.
@per_kernel(3)
@given(data=st.data(), a=st.floats(-1e3, 1e3), b=st.floats(-1e3, 1e3))
def test_3_constants_and_affine_in_values(name, data, a, b):
    d = data.draw(retrievals(memory(name).unit_sphere))
    constant = torch.full_like(d.values, b)
    n = d.keys.shape[-2]
    close(retrieve(name, d, values=constant), torch.full_like(retrieve(name, d), b), 1e-13 * (1 + abs(b)) * n,
          "claim 3: constant values do not give that constant")
    out, affine = retrieve(name, d), retrieve(name, d, values=a * d.values + b)
    # The offset b adds only the rounding of a sum of weights that is 1 to within n·eps.
    close(affine, a * out + b, (abs(a) + 1) * d.output_tol() + 1e-13 * abs(b) * n,
          "claim 3: f(a·v + b) differs from a·f(v) + b")


# 4. Translating keys and query by one vector leaves the weights unchanged (whole-space memories);
#    a rotation does too, and is the form of the claim that stays on the unit sphere.
@per_kernel(4)
@given(data=st.data())
def test_4_translation_and_rotation_invariance(name, data):
    m = memory(name)
    d = data.draw(retrievals(m.unit_sphere))
    dk = d.keys.shape[-1]
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**32 - 1)))
    rotation, _ = torch.linalg.qr(torch.randn(dk, dk, generator=gen, dtype=torch.float64))  # (dk, dk)
    moves = {"rotation": (lambda x: x @ rotation)}
    if not m.unit_sphere:
        shift = torch.randn(dk, generator=gen, dtype=torch.float64) * d.spread  # (dk,)
        moves["translation"] = lambda x: x + shift
    weights, out = m.weights(d.queries, d.keys, d.beta), retrieve(name, d)
    for what, move in moves.items():
        moved_keys, moved_queries = move(d.keys), move(d.queries)
        close(m.weights(moved_queries, moved_keys, d.beta), weights, 4 * d.output_tol() / d.value_scale,
              f"claim 4: a {what} of keys and queries changed the weights")
        close(retrieve(name, d, queries=moved_queries, keys=moved_keys), out, 4 * d.output_tol(),
              f"claim 4: a {what} of keys and queries changed f")


# 5. β -> 0 gives the mean of the values; β -> ∞ the value of the nearest key (mean over ties).
@per_kernel(5)
@given(data=st.data())
def test_5_bandwidth_limits(name, data):
    m = memory(name)
    d = data.draw(retrievals(m.unit_sphere, tensor_beta=False))
    sq_dist = (d.queries[..., :, None, :] - d.keys[..., None, :, :]).pow(2).sum(-1)  # (..., Tq, N)
    # The limits are taken on the kernel's own scale: its log-kernel at β = 1 (-‖q - k‖² for the Gaussian).
    log_k1 = m.logits(d.queries, d.keys, 1.0)  # (..., Tq, N)
    tiny = 1e-14 / max(float(log_k1.abs().max()), 1e-300)
    mean = d.values.mean(-2, keepdim=True).expand(*d.queries.shape[:-1], d.values.shape[-1])
    close(retrieve(name, d, beta=tiny), mean, 1e-12 * d.value_scale, "claim 5: β → 0 does not give the mean of the values")

    nearest = sq_dist == sq_dist.amin(-1, keepdim=True)  # (..., Tq, N) exact ties only
    gap = torch.where(nearest, torch.inf, sq_dist - sq_dist.amin(-1, keepdim=True)).amin()
    assume(not torch.isfinite(gap) or gap > 1e-9 * max(d.max_sq_dist, 1e-300))  # no near-ties
    nearest_log_k = torch.where(nearest, log_k1, -torch.inf).amax(-1, keepdim=True)  # (..., Tq, 1)
    log_gap = torch.where(nearest, torch.inf, nearest_log_k - log_k1).amin()  # how much nearer the nearest is
    huge = 60.0 / float(log_gap) if torch.isfinite(gap) else 1.0  # others weigh at most N·e^-60
    assert huge > 0, f"claim 5: the nearest key does not have the largest log-kernel (gap {float(log_gap)})"
    expected = (nearest.double() @ d.values) / nearest.sum(-1, keepdim=True)
    close(retrieve(name, d, beta=huge), expected, 1e-12 * d.value_scale * d.keys.shape[-2],
          "claim 5: β → ∞ does not give the value of the nearest key")


# 6. For unit-norm keys and queries the Gaussian weights are softmax(2β q·k): dot-product attention
#    (a property of the Gaussian kernel: every other kernel gives it up).
@per_kernel(6)
@given(data=st.data())
def test_6_unit_norm_keys_give_softmax_attention(name, data):
    d = data.draw(retrievals(unit_sphere=True))
    beta = d.beta[..., None, None] if isinstance(d.beta, torch.Tensor) else d.beta
    attention = torch.softmax(2 * beta * d.queries @ d.keys.transpose(-1, -2), -1)  # (..., Tq, N)
    close(retrieve(name, d), attention @ d.values, d.output_tol(),
          "claim 6: on the unit sphere f is not softmax(2β q·k) attention")


# 7. Gradients w.r.t. queries, keys, values and β pass gradcheck in float64.
@per_kernel(7)
@given(data=st.data(), masked=st.booleans())
@settings(max_examples=15)
def test_7_gradcheck(name, data, masked):
    d = data.draw(retrievals(memory(name).unit_sphere, beta_range=(-1, 0.5), max_pairs=4, tensor_beta=False))
    # Keys at unit spread and β·‖q - k‖² moderate: finite differences need a function smooth at their scale.
    beta = torch.tensor(d.beta, dtype=torch.float64, requires_grad=True)
    mask = None
    if masked:
        gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**32 - 1)))
        mask = torch.rand(*d.queries.shape[:-1], d.keys.shape[-2], generator=gen) < 0.7
    queries, keys = d.queries / d.spread, d.keys / d.spread
    inputs = [t.clone().requires_grad_() for t in (queries, keys, d.values)] + [beta]
    m = memory(name)
    try:
        torch.autograd.gradcheck(lambda q, k, v, b: m.retrieve(q, k, v, b, mask=mask), inputs,
                                 eps=1e-6, atol=1e-5, rtol=1e-4)
    except GradcheckError as error:
        raise AssertionError(f"claim 7: analytic and numerical gradients differ\n{error}") from error


# 8. Storing pairs one at a time (or in chunks) and querying equals the batch form.
@per_kernel(8)
@given(data=st.data())
def test_8_streaming_equals_batch(name, data):
    m = memory(name)
    d = data.draw(retrievals(m.unit_sphere))
    stream = m.stream(d.queries, d.beta)
    n, start = d.keys.shape[-2], 0
    while start < n:
        size = data.draw(st.integers(1, n - start))
        stream.store(d.keys[..., start:start + size, :], d.values[..., start:start + size, :])
        start += size
    close(stream.outputs(), retrieve(name, d), d.output_tol(), "claim 8: streaming differs from the batch form")


# 9. In the sequence form the output at t depends on no input after t (and, excluding the current
#    step, not on the value at t); it equals retrieval from the prefix alone; y_1 = 0.
@per_kernel(9)
@given(data=st.data(), exclude_current=st.booleans())
@settings(max_examples=20)
def test_9_causality(name, data, exclude_current):
    m = memory(name)
    d = data.draw(retrievals(m.unit_sphere, max_pairs=6, tensor_beta=False))
    keys, values = d.keys.clone().requires_grad_(), d.values.clone().requires_grad_()
    out = m.causal(keys, values, d.beta, exclude_current=exclude_current)  # (..., T, dv)
    T = keys.shape[-2]
    for t in range(T):
        if out.requires_grad:
            grad_k, grad_v = torch.autograd.grad(out[..., t, :].sum(), (keys, values), retain_graph=True,
                                                 allow_unused=True, materialize_grads=True)
        else:  # an output built without the inputs (e.g. y_1 = 0 alone) depends on none of them
            grad_k, grad_v = torch.zeros_like(keys), torch.zeros_like(values)
        assert torch.count_nonzero(grad_k[..., t + 1:, :]) == 0, "claim 9: the output at t depends on a later key"
        last_seen = t if exclude_current else t + 1
        assert torch.count_nonzero(grad_v[..., last_seen:, :]) == 0, "claim 9: the output at t depends on an unseen value"
        if last_seen == 0:
            assert torch.count_nonzero(out[..., t, :]) == 0, "claim 9: the output with nothing seen is not 0"
        else:
            prefix = m.retrieve(d.keys[..., t:t + 1, :], d.keys[..., :last_seen, :], d.values[..., :last_seen, :], d.beta)
            close(out[..., t:t + 1, :].detach(), prefix, d.output_tol(),
                  "claim 9: the output at t differs from retrieval from the prefix")


# 10. Consistency: on y = g(x) + noise the error to g shrinks as n grows with β = β₀ n^{2/(p+4)}.
@per_kernel(10)
@given(seed=st.integers(0, 2**32 - 1), frequency=st.floats(0.5, 1.5), noise=st.floats(0.05, 0.3))
@settings(max_examples=8)
def test_10_consistency(name, seed, frequency, noise):
    m = memory(name)
    gen = torch.Generator().manual_seed(seed)
    g = lambda x: torch.sin(2 * math.pi * frequency * x)  # noqa: E731
    embed = (lambda x: torch.stack([torch.cos(x), torch.sin(x)], -1)) if m.unit_sphere else (lambda x: x[:, None])
    grid = torch.linspace(0.1, 0.9, 64, dtype=torch.float64)  # interior: no boundary bias
    errors = []
    for n in (64, 512, 4096):
        beta = 20.0 * n ** (2 / (1 + 4))  # p = 1
        replicates = []
        for _ in range(6):  # average independent data sets: the claim is about the expected error
            x = torch.rand(n, generator=gen, dtype=torch.float64)
            y = g(x) + noise * torch.randn(n, generator=gen, dtype=torch.float64)
            fit = m.retrieve(embed(grid), embed(x), y[:, None], beta)[:, 0]
            replicates.append(float((fit - g(grid)).pow(2).mean()))
        errors.append(sum(replicates) / len(replicates))
    # The squared error falls like n^{-4/5}: a factor ~5 per 8× more data; ask for a factor 1.5.
    assert errors[1] < errors[0] / 1.5 and errors[2] < errors[1] / 1.5, \
        f"claim 10: the error does not shrink as n grows: {errors}"
