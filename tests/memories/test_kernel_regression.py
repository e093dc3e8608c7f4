"""Examples and validation for the reference memory (the claims themselves are in tests/property)."""

import math
import sys

import numpy as np
import pytest
import torch

from sandbox.memories import (
    GaussianKernel,
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
    monkeypatch.delitem(sys.modules, "my_kernels", raising=False)  # imported afresh, even on a second run
    from sandbox.registry import _MEMORIES, list_memories

    try:
        assert "test_env_variant" in list_memories()
    finally:
        _MEMORIES.pop("test_env_variant", None)
        sys.modules.pop("my_kernels", None)


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


def test_every_input_must_share_the_dtype_and_device_of_the_queries():
    from sandbox.validation import trusted_inputs

    q, k, v = torch.randn(3, 2), torch.randn(4, 2), torch.randn(4, 1)
    with pytest.raises(TypeError, match=r"^keys must have the dtype of queries \(torch.float32\), got torch.float64$"):
        kernel_regression(q, k.double(), v, 1.0)
    # A second device without a GPU: the meta device (its tensors cannot be scanned for NaN, so trusted).
    with trusted_inputs():
        for name, args in (("keys", (k.to("meta"), v.to("meta"))), ("values", (k, v.to("meta")))):
            with pytest.raises(ValueError, match=rf"^{name} must be on the device of queries \(cpu\), got meta$"):
                kernel_regression(q, *args, 1.0)


def test_a_mask_that_is_not_a_bool_tensor_is_named():
    q, k, v = torch.randn(3, 2), torch.randn(4, 2), torch.randn(4, 1)
    with pytest.raises(TypeError, match=r"^mask must be a bool tensor \(True = may attend\), got list$"):
        kernel_regression(q, k, v, 1.0, mask=[[True] * 4] * 3)
    with pytest.raises(TypeError, match=r"^mask must be a bool tensor \(True = may attend\), got Tensor of dtype torch.float32$"):
        kernel_regression(q, k, v, 1.0, mask=torch.ones(3, 4))


def test_an_empty_stream_refuses_to_answer():
    stream = GaussianKernel().stream(torch.zeros(1, 1), 1.0)
    with pytest.raises(ValueError, match=r"^the memory is empty: store at least one \(key, value\) pair before querying$"):
        stream.outputs()


@pytest.mark.parametrize("gives_up", [{11: "beyond the claims"}, {0: "no claim 0"}, {1: ""}, {1: None}])
def test_a_kernel_must_give_up_known_claims_with_a_reason(gives_up):
    from sandbox.memories import Kernel

    with pytest.raises(ValueError, match=r"^Broken.gives_up must map claim numbers \[1, 2, 3, 4, 5, 6, 7, 8, 9, 10\] "
                                         r"to a non-empty reason, got "):
        type("Broken", (Kernel,), {"gives_up": gives_up})
    assert type("Fine", (Kernel,), {"gives_up": {10: "a reason"}}).gives_up == {10: "a reason"}


def test_nadaraya_watson_beta_grid_by_hand():
    # Keys 0, 1, 3, 10: the 16 squared distances (4 zeros on the diagonal, then 1, 1, 4, 4, 9, 9, 49, 49,
    # 81, 81, 100, 100) have median 4 (torch takes the lower middle); the nearest-neighbour squared
    # distances 1, 1, 4, 49 have median 1. So β runs log-evenly from 0.01 / 4 to 10 / 1.
    model = NadarayaWatson(beta=1.0).fit(np.array([0.0, 1.0, 3.0, 10.0]), np.zeros(4))
    grid = model.beta_grid()
    np.testing.assert_allclose(grid, np.logspace(np.log10(0.0025), 1.0, 40), rtol=1e-12)
    assert len(model.beta_grid(size=5)) == 5
    # All keys equal: every β gives the same fit, so the grid is the single β = 1.
    assert NadarayaWatson(beta=1.0).fit(np.full(3, 2.0), np.zeros(3)).beta_grid().tolist() == [1.0]


def test_nadaraya_watson_leave_one_out_scores_by_hand():
    # Each pair is predicted from the other pairs alone: f_-i = Σ_{j≠i} e^{-β(x_i - x_j)²} y_j / Σ_{j≠i} e^{...}.
    x, y = np.array([0.0, 1.0, 3.0, 10.0]), np.array([1.0, -2.0, 0.5, 4.0])
    model = NadarayaWatson().fit(x, y)
    assert list(model.cv_scores_) == model.beta_grid().tolist()
    for beta, score in model.cv_scores_.items():
        errors = []
        for i in range(4):
            w = [math.exp(-beta * (x[i] - x[j]) ** 2) if j != i else 0.0 for j in range(4)]
            errors.append((sum(wj * yj for wj, yj in zip(w, y)) / sum(w) - y[i]) ** 2)
        assert score == pytest.approx(sum(errors) / 4, rel=1e-9, abs=1e-300), beta
    assert model.beta_ == min(model.cv_scores_, key=model.cv_scores_.get)


def test_nadaraya_watson_takes_lists_and_integer_queries():
    model = NadarayaWatson(beta=1.0).fit([0.0, 1.0], [0.0, 1.0])  # plain lists, as numpy
    # The query at 0 weighs the keys 0 and 1 as 1 : e^-1.
    expected = torch.tensor([math.exp(-1) / (1 + math.exp(-1)), 1 / (1 + math.exp(-1))], dtype=torch.float64)
    out = model.predict(torch.tensor([0, 1]))  # integer queries come back as float64
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(model.predict([0.0, 1.0]), expected.numpy(), rtol=0, atol=1e-15)


def test_sequence_forms_on_two_dimensional_keys_and_on_the_keys_device():
    from sandbox.memories.kernel_regression import strict_past_mask
    from sandbox.validation import trusted_inputs

    kernel = GaussianKernel()
    k, v = torch.randn(5, 2, dtype=f64), torch.randn(5, 3, dtype=f64)
    beta = torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0], dtype=f64)  # one β per query position
    out = kernel.causal_varying(k, v, beta)  # (T, dv)
    assert torch.equal(out[0], torch.zeros(3, dtype=f64))
    for t in range(1, 5):
        torch.testing.assert_close(out[t], kernel_regression(k[t:t + 1], k[:t], v[:t], float(beta[t]))[0], rtol=0, atol=1e-15)
    # The strict-past mask is made on the keys' device (the meta device stands for a GPU here).
    with trusted_inputs():
        meta_k, meta_v = k.to("meta"), v.to("meta")
        assert kernel.causal(meta_k, meta_v, 1.0).device.type == "meta"
        assert kernel.causal_varying(meta_k, meta_v, beta.to("meta")).device.type == "meta"
    assert strict_past_mask(3, device="meta").device.type == "meta"
    for call in (lambda: kernel.causal(k[0], v, 1.0), lambda: kernel.causal_varying(k[0], v, beta)):
        with pytest.raises(ValueError, match=r"^keys must have at least 2 dimensions, got shape \(2,\)$"):
            call()
    for call in (lambda: strict_past_mask(3, exclude_current="no"), lambda: kernel.causal(k, v, 1.0, exclude_current="no")):
        with pytest.raises(TypeError, match=r"^exclude_current must be True or False, got 'no'$"):
            call()


def test_streaming_checks_its_inputs_by_name():
    kernel = GaussianKernel()
    with pytest.raises(ValueError, match=r"^queries must have at least 2 dimensions, got shape \(2,\)$"):
        kernel.stream(torch.zeros(2), 1.0)
    with pytest.raises(ValueError, match=r"^beta must be finite and > 0, got 0.0$"):
        kernel.stream(torch.zeros(1, 2), 0.0)
    stream = kernel.stream(torch.zeros(1, 2), 1.0)
    with pytest.raises(ValueError, match="^keys and values must hold the same number of pairs N"):
        stream.store(torch.zeros(3, 2), torch.zeros(2, 1))


def test_kernel_weights_by_hand_with_a_mask_and_checked_values():
    # q = 0, keys 0, 1, 2, β = ln 2: w ∝ (1, 1/2, 1/16); the mask hides the key at 1.
    q, k = torch.zeros(1, 1, dtype=f64), torch.tensor([[0.0], [1.0], [2.0]], dtype=f64)
    mask = torch.tensor([[True, False, True]])
    w = kernel_weights(q, k, None, math.log(2), mask=mask)
    torch.testing.assert_close(w, torch.tensor([[16 / 17, 0.0, 1 / 17]], dtype=f64), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="^keys and values must hold the same number of pairs N"):
        kernel_weights(q, k, torch.zeros(2, 1, dtype=f64), 1.0)


def test_a_beta_tensor_follows_the_queries_dtype_and_device():
    from sandbox.validation import trusted_inputs

    q, k, v = torch.randn(2, 3, 2), torch.randn(2, 4, 2), torch.randn(2, 4, 1)
    beta = torch.tensor([0.5, 2.0], dtype=f64)  # float64 β with float32 inputs: computed in float32
    out = kernel_regression(q, k, v, beta)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, kernel_regression(q, k, v, beta.float()), rtol=0, atol=0)
    with trusted_inputs():  # a β on the CPU with inputs on another device (meta stands for a GPU)
        meta = kernel_regression(q.to("meta"), k.to("meta"), v.to("meta"), torch.tensor([0.5, 2.0]))
    assert meta.device.type == "meta"


def test_weights_alone_check_the_mask():
    q, k = torch.randn(3, 2), torch.randn(4, 2)
    with pytest.raises(TypeError, match=r"^mask must be a bool tensor \(True = may attend\), got Tensor of dtype torch.float32$"):
        GaussianKernel().weights(q, k, 1.0, mask=torch.ones(3, 4))
    with pytest.raises(ValueError, match=r"^mask must broadcast to \(..., Tq, N\) = \(3, 4\), got \(3, 5\)$"):
        GaussianKernel().logits(q, k, 1.0, mask=torch.ones(3, 5, dtype=torch.bool))


@pytest.mark.parametrize("name", ["queries", "keys", "values"])
def test_each_input_is_checked_under_its_own_name(name):
    inputs = dict(queries=torch.randn(5, 2), keys=torch.randn(4, 2), values=torch.randn(4, 1))
    one_dimensional = inputs | {name: inputs[name][0]}
    shape = tuple(inputs[name][0].shape)
    with pytest.raises(ValueError, match=rf"^{name} must have at least 2 dimensions, got shape \({shape[0]},\)$"):
        kernel_regression(*one_dimensional.values(), 1.0)
    with_nan = inputs | {name: inputs[name] * float("nan")}
    with pytest.raises(ValueError, match=rf"^{name} contains NaN or infinite entries$"):
        kernel_regression(*with_nan.values(), 1.0)
    integer = inputs | {name: inputs[name].long()}
    with pytest.raises(TypeError, match=rf"^{name} must be a floating-point tensor, got dtype torch.int64$"):
        kernel_regression(*integer.values(), 1.0)


def test_shape_errors_name_every_shape_involved():
    q, k, v = torch.randn(2, 5, 2), torch.randn(2, 4, 2), torch.randn(2, 4, 1)
    cases = [
        ((q, k, v[:, :3], 1.0), r"keys and values must hold the same number of pairs N, got keys (2, 4, 2) (N=4) "
                                r"and values (2, 3, 1) (N=3)"),
        ((q, k[..., :1], v, 1.0), "queries and keys must share the key dimension dk, got queries (2, 5, 2) and keys (2, 4, 1)"),
        ((q, k[:1].expand(3, 4, 2), v, 1.0),
         "batch dimensions (all but the last two) must broadcast, got queries (2, 5, 2), keys (3, 4, 2), values (2, 4, 1)"),
        ((q, k, v, torch.ones(3)), "beta must be a float or a tensor broadcastable to the batch dimensions (2,), got shape (3,)"),
        ((q, k, v, 0.0), "beta must be finite and > 0, got 0.0"),
        ((q, k[:, :0], v[:, :0], 1.0), "keys must hold at least one pair (N >= 1), got shape (2, 0, 2)"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError) as caught:
            kernel_regression(*args)
        assert str(caught.value) == message
    with pytest.raises(ValueError) as caught:
        kernel_regression(q, k, v, 1.0, mask=torch.ones(2, 5, 3).bool())
    assert str(caught.value) == "mask must broadcast to (..., Tq, N) = (2, 5, 4), got (2, 5, 3)"


def test_nadaraya_watson_beta_grid_with_duplicated_keys():
    # Keys 0, 0, 1, 3, 10: the 25 squared distances are seven zeros, then 1 (4 times), 4 (twice), 9 (4),
    # 49 (2), 81 (2), 100 (4): median 4. Nearest neighbours 0, 0, 1, 4, 49: a duplicate is not a
    # neighbour, so the median is over 1, 4, 49: 4. β runs from 0.01 / 4 to 10 / 4.
    grid = NadarayaWatson(beta=1.0).fit(np.array([0.0, 0.0, 1.0, 3.0, 10.0]), np.zeros(5)).beta_grid()
    np.testing.assert_allclose(grid, np.logspace(np.log10(0.0025), np.log10(2.5), 40), rtol=1e-12)
    # Keys 0, 0, 1, 1, 3, 3: every key has a duplicate, so there is no nearest-neighbour distance and the
    # spread (twelve zeros, then 1, 4, 9 eight times each: median 1) sets both ends.
    grid = NadarayaWatson(beta=1.0).fit(np.repeat([0.0, 1.0, 3.0], 2), np.zeros(6)).beta_grid()
    np.testing.assert_allclose(grid, np.logspace(-2.0, 1.0, 40), rtol=1e-12)
    assert NadarayaWatson(beta=1.0).fit(np.array([5.0]), np.zeros(1)).beta_grid().tolist() == [1.0]  # one key
    # Two pairs: each is predicted from the other alone whatever β, so cross-validation has one candidate.
    model = NadarayaWatson().fit(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    assert model.cv_scores_ == {1.0: 1.0} and model.beta_ == 1.0


def test_nadaraya_watson_beta_grid_is_the_same_on_every_fit():
    # Past 2048 keys the spread is measured on a subsample, drawn from a fixed seed.
    x = np.random.default_rng(0).uniform(0, 1, (2100, 1))
    grids = [NadarayaWatson(beta=1.0).fit(x, np.zeros(2100)).beta_grid() for _ in range(2)]
    assert np.array_equal(grids[0], grids[1])


def test_nadaraya_watson_errors_are_named_whole():
    cases = [
        (lambda: NadarayaWatson().fit("abc", np.zeros(3)), TypeError, "keys must be a numpy array or a torch tensor, got str"),
        (lambda: NadarayaWatson().fit(np.zeros(3), "abc"), TypeError, "values must be a numpy array or a torch tensor, got str"),
        (lambda: NadarayaWatson(beta=1.0).fit(np.zeros(3), np.zeros(3)).predict("abc"), TypeError,
         "queries must be a numpy array or a torch tensor, got str"),
        (lambda: NadarayaWatson().fit(np.zeros(0), np.zeros(0)), ValueError, "keys must hold at least one row, got shape (0, 1)"),
        (lambda: NadarayaWatson().fit(np.zeros(3), np.zeros(4)), ValueError,
         "keys and values must have the same number of rows, got 3 and 4"),
        (lambda: NadarayaWatson(beta=1.0, bandwidth=1.0), ValueError,
         "give at most one of beta and bandwidth (beta = 1 / (2 bandwidth²))"),
        (lambda: NadarayaWatson().predict(np.zeros(1)), ValueError,
         "this NadarayaWatson is not fitted yet: call .fit(keys, values) first"),
        (lambda: NadarayaWatson().fit(np.zeros(1), np.zeros(1)), ValueError,
         "leave-one-out cross-validation needs at least 2 pairs; give beta or bandwidth"),
    ]
    for make, error, message in cases:
        with pytest.raises(error) as caught:
            make()
        assert str(caught.value) == message


def test_nadaraya_watson_keeps_the_value_columns():
    x = np.linspace(0, 1, 6)
    y = np.stack([x, -2 * x], 1)  # (n, 2)
    out = NadarayaWatson(beta=4.0).fit(x, y).predict(np.array([0.5]))
    assert out.shape == (1, 2)
    np.testing.assert_allclose(out[0, 1], -2 * out[0, 0], rtol=1e-14)


def test_nadaraya_watson_leave_one_out_in_chunks_equals_the_whole_matrix(monkeypatch):
    # Chunks of 7 query rows (1024 in use; smaller here to keep the test fast): 30 pairs are 5 chunks.
    import sandbox.memories.nadaraya_watson as module

    monkeypatch.setattr(module, "_QUERY_CHUNK", 7)
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 1, 30), rng.standard_normal(30)
    model = NadarayaWatson().fit(x, y)
    sq = (x[:, None] - x[None, :]) ** 2  # (n, n)
    for beta, score in model.cv_scores_.items():
        logits = -beta * sq
        np.fill_diagonal(logits, -np.inf)
        w = np.exp(logits - logits.max(1, keepdims=True))
        assert score == pytest.approx(np.mean((w @ y / w.sum(1) - y) ** 2), rel=1e-9), beta


def test_one_beta_per_query_is_each_query_retrieved_with_its_own_beta():
    kernel = GaussianKernel()
    gen = torch.Generator().manual_seed(3)
    queries, keys = torch.randn(2, 3, 2, generator=gen, dtype=f64), torch.randn(2, 4, 2, generator=gen, dtype=f64)
    values = torch.randn(2, 4, 5, generator=gen, dtype=f64)
    beta = torch.tensor([[0.2, 1.0, 3.0], [0.5, 0.1, 2.0]], dtype=f64)  # (B, Tq)
    mask = torch.tensor([[True, True, False, True], [False, False, False, False], [True, False, True, False]])
    for m in (None, mask):
        out = kernel.retrieve_varying(queries, keys, values, beta, mask=m)  # (B, Tq, dv)
        for b in range(2):
            for t in range(3):
                expected = kernel_regression(queries[b, t:t + 1], keys[b], values[b], float(beta[b, t]),
                                             mask=None if m is None else m[t:t + 1])
                torch.testing.assert_close(out[b, t:t + 1], expected, rtol=0, atol=1e-14)
