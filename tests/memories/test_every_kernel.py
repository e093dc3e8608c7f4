"""Every registered kernel on every path: fast against reference, generation step against the
parallel forward, prefill against stepping, causality, and the recorded weights, for the contextual
and persistent memories and a whole mosaic. A kernel that registers is checked here too."""

import pytest
import torch

from sandbox.config import RunConfig, dotted
from sandbox.memories import MemoryOptions
from sandbox.memories.contextual import ContextualMemory, scaled
from sandbox.memories.persistent import PersistentMemory
from sandbox.models import ContextualLayerConfig, MosaicConfig
from sandbox.registry import get_kernel, list_kernels

f64 = torch.float64
KERNELS = list_kernels()


def options(kernel: str, **changes) -> MemoryOptions:
    return MemoryOptions(kernel=kernel, **changes)


# A unit-sphere kernel refuses raw keys (test_sphere_kernel_refuses_raw_keys), so only normalised there.
@pytest.mark.parametrize("kernel, normalise", [(k, n) for k in KERNELS for n in (True, False)
                                               if n or not get_kernel(k).unit_sphere])
def test_persistent_fast_path_matches_reference(kernel, normalise):
    torch.manual_seed(0)
    memory = PersistentMemory(8, 2, 12, options(kernel, normalise=normalise)).double()
    x = torch.randn(2, 9, 8, dtype=f64, requires_grad=True)
    fast, reference = memory(x), memory(x, path="reference")
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-10)
    params = [x, memory.slot_keys, memory.slot_values, memory.beta_log]
    for a, b in zip(torch.autograd.grad(fast.pow(2).sum(), params), torch.autograd.grad(reference.pow(2).sum(), params)):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def mosaic(kernel: str, **changes):
    torch.manual_seed(0)
    config = MosaicConfig(d=8, layers=2, units=2, persistent_slots=6, kernel=kernel, **changes)
    return config.build(input_dim=3, output_dim=3).double().eval()


V2_SWITCHES = {"v1": {}, "adaptive_beta": {"adaptive_beta": True}, "gated_keys": {"gated_keys": True},
               "three_level": {"three_level": True, "window": 3, "lag_range": (2, 5)},
               "v2": {"version": 2, "window": 4, "lag_range": (3, 6)}}


@pytest.mark.parametrize("switches", V2_SWITCHES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_mosaic_fast_reference_step_and_prefill_agree(kernel, switches):
    model = mosaic(kernel, **V2_SWITCHES[switches])
    with torch.no_grad():  # move the v2 parameters off their initial values (gates 1, α small)
        for name, p in model.named_parameters():
            if any(k in name for k in ("gate_map", "leak_map", "beta_power", "beta_floor")):
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(2))
    reference = mosaic(kernel, path="reference", **V2_SWITCHES[switches])
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 11, 3, dtype=f64, generator=torch.Generator().manual_seed(1))
    out = model(x)
    torch.testing.assert_close(reference(x), out, rtol=0, atol=1e-10)
    torch.testing.assert_close(model.step_outputs(x), out, rtol=0, atol=1e-10)
    # A prompt prefilled in one pass leaves the cache that stepping through it leaves.
    prefilled, stepped = {}, {}
    with torch.no_grad():
        model.prefill(x, prefilled)
        for t in range(x.shape[1]):
            model.step(x[:, t], stepped)
    a, b = dotted(prefilled), dotted(stepped)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-10, msg=name)
    # ... and a prompt prefilled in two parts is the same too (a forward continues a cache).
    split = {}
    with torch.no_grad():
        first = model.prefill(x[:, :4], split)
        second = model.prefill(x[:, 4:], split)
    torch.testing.assert_close(torch.cat([first, second], 1), out, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kernel", KERNELS)
def test_mosaic_output_ignores_later_inputs(kernel):
    model = mosaic(kernel, version=2) if kernel == "dot_product" else mosaic(kernel)
    x = torch.randn(1, 10, 3, dtype=f64, requires_grad=True)
    for t in (0, 4, 9):
        (grad,) = torch.autograd.grad(model(x)[0, t].sum(), x)
        assert torch.count_nonzero(grad[0, t + 1:]) == 0
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("kernel", KERNELS)
def test_recorded_weights_are_the_kernels(kernel):
    """The attention maps handed to figures are the weights the outputs were computed with."""
    model = mosaic(kernel)
    x = torch.randn(2, 9, 3, dtype=f64)
    names = ["blocks.0.cmem.weights", "blocks.0.cmem.values", "blocks.0.cmem.outputs",
             "blocks.0.pmem.weights", "blocks.0.pmem.outputs"]
    _, cache = model.run_with_cache(x, names)
    weights = cache["blocks.0.cmem.weights"]  # (B, U, T, T)
    assert torch.count_nonzero(weights.triu()) == 0  # strict past
    torch.testing.assert_close(weights @ cache["blocks.0.cmem.values"], cache["blocks.0.cmem.outputs"], rtol=0, atol=1e-12)
    # The v2 short- and long-term memories record the weights over the part of the past they see.
    v2 = mosaic(kernel, version=2, window=3, lag_range=(4, 6))
    _, levels = v2.run_with_cache(x, [f"blocks.0.{m}.{p}" for m in ("cmem", "cmem_long") for p in ("weights", "values", "outputs")])
    t, s = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
    for name, lags in (("cmem", range(1, 3)), ("cmem_long", range(4, 9))):
        level = levels[f"blocks.0.{name}.weights"]
        outside = ~sum((t - s == lag) for lag in lags).bool()
        assert torch.count_nonzero(level[..., outside]) == 0 and torch.count_nonzero(level) > 0
        torch.testing.assert_close(level @ levels[f"blocks.0.{name}.values"], levels[f"blocks.0.{name}.outputs"], rtol=0, atol=1e-12)
    pmem = model.blocks[0].pmem
    _, slot_values = pmem.slots(f64)
    torch.testing.assert_close(cache["blocks.0.pmem.weights"] @ slot_values, cache["blocks.0.pmem.outputs"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_contextual_layer_on_raw_keys(kernel):
    if get_kernel(kernel).unit_sphere:
        with pytest.raises(ValueError, match="needs normalise=true"):
            ContextualLayerConfig(kernel=kernel)
        return
    torch.manual_seed(0)
    model = ContextualLayerConfig(kernel=kernel, units=3).build(input_dim=6, output_dim=6).double().eval()
    reference = ContextualLayerConfig(kernel=kernel, units=3, path="reference").build(input_dim=6, output_dim=6).double()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 15, 6, dtype=f64) * 0.3
    torch.testing.assert_close(reference(x), model(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(model.step_outputs(x), model(x), rtol=0, atol=1e-10)


def test_sphere_kernel_refuses_raw_keys():
    kernel = get_kernel("gaussian_sphere")()
    keys = torch.randn(5, 3, dtype=f64) * 3
    with pytest.raises(ValueError, match="unit norm .* unit sphere"):
        kernel.retrieve(keys[:2], keys, torch.randn(5, 1, dtype=f64), 1.0)
    with pytest.raises(ValueError, match="needs normalise=true"):
        ContextualMemory(8, 2, kernel="gaussian_sphere", normalise=False)
    # The persistent memory hands such a kernel unit slot keys, whatever its parameters.
    memory = PersistentMemory(8, 2, 5, kernel="gaussian_sphere")
    slot_keys, _ = memory.slots(torch.float32)
    torch.testing.assert_close(slot_keys.norm(dim=-1), torch.ones(2, 5))


@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
def test_streaming_a_compact_kernel_past_out_of_reach_keys(order):
    """Query 0, keys 5 and 0.5, values 1 and 2: only the near key is in the Epanechnikov kernel's
    reach, so the answer is 2 in batch and streaming, whichever key arrives first."""
    kernel = get_kernel("epanechnikov")()
    query = torch.zeros(1, 1, dtype=f64)
    keys, values = torch.tensor([[5.0], [0.5]], dtype=f64), torch.tensor([[1.0], [2.0]], dtype=f64)
    assert float(kernel.retrieve(query, keys, values, 1.0)) == 2.0
    stream = kernel.stream(query, 1.0)
    for i in order:
        stream.store(keys[i:i + 1], values[i:i + 1])
    assert float(stream.outputs()) == 2.0
    far = kernel.stream(query, 1.0).store(keys[:1], values[:1])
    assert float(far.outputs()) == 0.0  # nothing in reach: no answer, as in batch, never NaN


def test_configs_saved_before_kernels_were_named_still_load():
    old = {"task": {"name": "three_moons"}, "model": {
        "name": "contextual_layer", "units": 3, "leak": False, "normalise": False, "beta": 50.0, "gamma": 0.0,
        "complex_maps": True, "memory": "gaussian_sphere", "path": "fast"}}
    config = RunConfig.from_dict(old)
    assert config.model.kernel == "dot_product" and config.model.beta == 25.0  # β_u = 2β = 50 as before
    # A checkpoint of that model kept the attention scale as "beta_fixed": it loads as β = 25.
    model = config.model.build(input_dim=6, output_dim=6)
    state = model.state_dict()
    state["memory.beta_fixed"] = torch.full((3,), 50.0)
    del state["memory.beta_kernel"]
    model.load_state_dict(state)
    torch.testing.assert_close(model.memory.beta(), torch.full((3,), 25.0))


def test_adaptive_beta_grows_with_the_pairs_stored():
    memory = ContextualMemory(8, 2, adaptive_beta=True).double()
    with torch.no_grad():
        memory.beta_power_logit.copy_(torch.tensor([0.0, 1.0]))
        memory.beta_floor_logit.copy_(torch.tensor([-1.0, 2.0]))
    pairs = torch.tensor([1, 4, 64])
    beta = memory.beta(pairs).detach()  # (U, Tq)
    base = torch.exp(scaled(memory.beta_log.detach())) / 2
    alpha = torch.sigmoid(torch.tensor([0.0, 1.0], dtype=f64))
    floor = torch.log1p(torch.exp(torch.tensor([-1.0, 2.0], dtype=f64)))
    for u in range(2):
        for i, n in enumerate(pairs.tolist()):
            assert abs(float(beta[u, i]) - (float(base[u]) * n ** float(alpha[u]) + float(floor[u]))) < 1e-12
    with pytest.raises(ValueError, match="adaptive β depends on the number of pairs"):
        memory.beta()
    with pytest.raises(ValueError, match="exclude each other"):
        MemoryOptions(beta=1.0, adaptive_beta=True)


def test_gated_keys_start_as_v1_and_chunk_like_the_reference():
    from sandbox.memories.contextual import gated_average, gated_average_reference

    torch.manual_seed(0)
    x = torch.randn(2, 30, 8, dtype=f64)
    v1, v2 = ContextualMemory(8, 2).double(), ContextualMemory(8, 2, gated_keys=True).double()
    v2.load_state_dict(v1.state_dict(), strict=False)  # the gates' maps start at zero: g = 1, λ = v1's
    torch.testing.assert_close(v2(x), v1(x), rtol=0, atol=1e-12)
    gen = torch.Generator().manual_seed(1)
    values = torch.randn(2, 3, 150, 4, generator=gen, dtype=f64)
    log_leak = -torch.rand(2, 3, 150, generator=gen, dtype=f64) * 3
    start = torch.randn(2, 3, 4, generator=gen, dtype=f64)
    torch.testing.assert_close(gated_average(values, log_leak, 16, initial=start),
                               gated_average_reference(values, log_leak, initial=start), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="gated_keys gates a leaky average"):
        MemoryOptions(gated_keys=True, leak=False)


def test_version_2_turns_on_every_switch():
    config = MosaicConfig(version=2)
    assert config.adaptive_beta and config.gated_keys and config.three_level
    with pytest.raises(ValueError, match="version must be in"):
        MosaicConfig(version=3)


def test_long_term_lag_is_drawn_in_training_and_fixed_in_evaluation():
    memory = ContextualMemory(8, 2, lag=(2, 5))
    torch.manual_seed(0)
    assert {memory.current_lag() for _ in range(200)} == {2, 3, 4, 5}
    assert {memory.eval().current_lag() for _ in range(20)} == {2}
    with pytest.raises(ValueError, match="lag must be in"):
        ContextualMemory(8, 2, lag=(3, 2))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("bad", [-1.0, 0.0, float("nan"), float("inf")])
def test_one_beta_per_query_is_checked_at_every_query(kernel, bad):
    """A β that is not finite and > 0 is refused wherever it sits, not only at the first query."""
    gen = torch.Generator().manual_seed(0)
    queries, keys, values = (torch.nn.functional.normalize(torch.randn(shape, generator=gen, dtype=f64), dim=-1)
                             for shape in ((2, 3, 4), (2, 5, 4), (2, 5, 4)))
    beta = torch.ones(2, 3, dtype=f64)
    beta[1, 2] = bad  # the last query of the second sequence
    memory = get_kernel(kernel)()
    with pytest.raises(ValueError, match=r"beta must be finite and > 0"):
        memory.retrieve_varying(queries, keys, values, beta)
    beta_seq = torch.ones(2, 5, dtype=f64)
    beta_seq[0, 4] = bad
    with pytest.raises(ValueError, match=r"beta must be finite and > 0"):
        memory.causal_varying(keys, values, beta_seq)
