"""Models: parameter parity, cached generation, causality, introspection, configs."""

import pytest
import torch

from sandbox.models import MODELS, ContextualLayerConfig, GPTConfig, MosaicConfig, build_model, num_parameters

f64 = torch.float64
TOKEN_MODELS = {
    "mosaic": MosaicConfig(d=16, layers=2, units=4),
    "mosaic_no_persistent": MosaicConfig(d=16, layers=1, units=2, persistent_slots=0, leak=False),
    "mosaic_fixed": MosaicConfig(d=16, layers=2, units=2, beta=5.0, gamma=0.3, complex_maps=True),
    "gpt": GPTConfig(d=16, layers=2, heads=4),
}
CONTINUOUS_MODELS = {
    "mosaic": MosaicConfig(d=16, layers=2, units=4),
    "gpt": GPTConfig(d=16, layers=2, heads=2),
    "contextual_layer": ContextualLayerConfig(),
    "contextual_layer_leaky": ContextualLayerConfig(units=2, leak=True, normalise=True, beta=None, gamma=None, complex_maps=False),
}


def token_model(name, seed=0):
    torch.manual_seed(seed)
    return build_model(TOKEN_MODELS[name], vocab_size=11, max_len=64).double()


def continuous_model(name, seed=0):
    torch.manual_seed(seed)
    return build_model(CONTINUOUS_MODELS[name], input_dim=6, output_dim=6, max_len=64).double()


@pytest.mark.parametrize("d, layers", [(128, 2), (256, 4)])
def test_mosaic_and_gpt_have_the_same_parameter_count(d, layers):
    mosaic = MosaicConfig(d=d, layers=layers).build(vocab_size=65)
    gpt = GPTConfig(d=d, layers=layers).build(vocab_size=65, max_len=256)
    a, b = num_parameters(mosaic, embeddings=False), num_parameters(gpt, embeddings=False)
    assert abs(a / b - 1) < 0.01, (a, b)
    # Per layer: mosaic 5d² + 2Nd with N = 3.5d, GPT 12d² (plus norms, biases and per-unit scalars).
    assert abs(a - layers * (5 * d * d + 2 * round(3.5 * d) * d)) < 0.005 * a


@pytest.mark.parametrize("name", TOKEN_MODELS)
def test_cached_steps_equal_full_recomputation_tokens(name):
    model = token_model(name).eval()
    x = torch.randint(0, 11, (3, 25), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model.step_outputs(x), model(x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", CONTINUOUS_MODELS)
def test_cached_steps_equal_full_recomputation_continuous(name):
    model = continuous_model(name).eval()
    x = torch.randn(2, 30, 6, dtype=f64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model.step_outputs(x), model(x), rtol=0, atol=1e-10)


def _tensors(cache: dict) -> dict:
    """A nested cache flattened to {path: tensor}."""
    flat = {}
    for key, value in cache.items():
        for sub, tensor in (_tensors(value).items() if isinstance(value, dict) else [("", value)]):
            flat[f"{key}/{sub}"] = tensor
    return flat


@pytest.mark.parametrize("length", [1, 2, 17])
@pytest.mark.parametrize("kind, name", [("tokens", n) for n in TOKEN_MODELS] + [("continuous", n) for n in CONTINUOUS_MODELS])
def test_prefill_equals_stepping_through_the_prompt(kind, name, length):
    """The parallel prefill gives the forward outputs and the very cache that stepping leaves behind."""
    gen = torch.Generator().manual_seed(3)
    if kind == "tokens":
        model, x = token_model(name).eval(), torch.randint(0, 11, (2, length), generator=gen)
    else:
        model, x = continuous_model(name).eval(), torch.randn(2, length, 6, dtype=f64, generator=gen)
    stepped, prefilled = {}, {}
    with torch.no_grad():
        by_steps = torch.stack([model.step(x[:, t], stepped) for t in range(length)], 1)
        at_once = model.prefill(x, prefilled)
    torch.testing.assert_close(at_once, by_steps, rtol=0, atol=1e-10)
    torch.testing.assert_close(at_once, model(x), rtol=0, atol=1e-10)
    assert _tensors(prefilled).keys() == _tensors(stepped).keys()
    for key, tensor in _tensors(stepped).items():
        torch.testing.assert_close(_tensors(prefilled)[key], tensor, rtol=0, atol=1e-10, msg=key)


@pytest.mark.parametrize("name", ["mosaic", "gpt"])
def test_greedy_generation_equals_argmax_of_full_forward(name):
    model = token_model(name).eval()
    prompt = torch.randint(0, 11, (2, 4), generator=torch.Generator().manual_seed(2))
    out = model.generate(prompt, 12)
    assert out.shape == (2, 16) and torch.equal(out[:, :4], prompt)
    for t in range(4, 16):  # every generated token is the argmax of a full recomputation
        assert torch.equal(out[:, t], model(out[:, :t])[:, -1].argmax(-1))


def test_sampled_generation_is_seeded():
    model = token_model("mosaic")
    prompt = torch.zeros(2, 3, dtype=torch.long)
    draw = lambda seed: model.generate(prompt, 10, sample=True, temperature=20.0, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(5), draw(5)) and not torch.equal(draw(5), draw(6))


def test_continuous_generation_feeds_predictions_back():
    model = continuous_model("contextual_layer")
    prompt = torch.randn(1, 5, 6, dtype=f64)
    out = model.generate(prompt, 3)
    torch.testing.assert_close(out[:, 5], model(out[:, :5])[:, -1])
    torch.testing.assert_close(out[:, 7], model(out[:, :7])[:, -1])


def _gradient_wrt_inputs(model, x, t, tokens):
    """d output[:, t] / d (input embeddings or observations), (B, T, ·)."""
    captured = []
    if tokens:
        def hook(module, args, output):
            output = output.detach().requires_grad_()
            captured.append(output)
            return output

        handle = model.read_in.register_forward_hook(hook)
        out = model(x)
        handle.remove()
        inputs = captured[0]
    else:
        inputs = x.clone().requires_grad_()
        out = model(inputs)
    (grad,) = torch.autograd.grad(out[:, t].sum(), inputs)
    return grad


@pytest.mark.parametrize("kind, name", [("tokens", n) for n in TOKEN_MODELS] + [("continuous", n) for n in CONTINUOUS_MODELS])
def test_output_at_t_does_not_depend_on_later_inputs(kind, name):
    tokens = kind == "tokens"
    model = token_model(name) if tokens else continuous_model(name)
    x = torch.randint(0, 11, (2, 12)) if tokens else torch.randn(2, 12, 6, dtype=f64)
    for t in (0, 5, 11):
        grad = _gradient_wrt_inputs(model, x, t, tokens)
        assert torch.count_nonzero(grad[:, t + 1:]) == 0
    assert torch.count_nonzero(_gradient_wrt_inputs(model, x, 11, tokens)[:, :11]) > 0


def test_reference_path_equals_fast_path_for_a_whole_model():
    torch.manual_seed(0)
    config = MosaicConfig(d=16, layers=2, units=4)
    fast = config.build(vocab_size=11).double()
    reference = MosaicConfig(d=16, layers=2, units=4, path="reference").build(vocab_size=11).double()
    reference.load_state_dict(fast.state_dict())
    x = torch.randint(0, 11, (2, 40))
    torch.testing.assert_close(fast(x), reference(x), rtol=0, atol=1e-9)


def test_run_with_cache_returns_exactly_what_was_asked():
    model = token_model("mosaic")
    x = torch.randint(0, 11, (2, 9))
    names = model.hook_names()
    assert "blocks.0.cmem.weights" in names and "blocks.1.pmem.keys" in names
    out, cache = model.run_with_cache(x, ["blocks.0.cmem.weights", "blocks.1.cmem.keys"])
    assert set(cache) == {"blocks.0.cmem.weights", "blocks.1.cmem.keys"}
    weights = cache["blocks.0.cmem.weights"]  # (B, U, T, T) over the strict past
    assert weights.shape == (2, 4, 9, 9)
    torch.testing.assert_close(weights[:, :, 1:].sum(-1), torch.ones(2, 4, 8, dtype=f64))
    assert torch.count_nonzero(weights.triu()) == 0
    torch.testing.assert_close(out, model(x))
    # Nothing stays attached after the call, and a plain forward records nothing.
    assert all(getattr(m, "capture", None) is None for m in model.modules())
    with pytest.raises(ValueError, match="unknown hook names"):
        model.run_with_cache(x, ["blocks.9.cmem.keys"])
    gpt_out, gpt_cache = token_model("gpt").run_with_cache(x, ["blocks.0.attn.weights"])
    assert gpt_cache["blocks.0.attn.weights"].shape == (2, 4, 9, 9)


def test_registry_and_config_validation():
    assert set(MODELS) >= {"mosaic", "gpt", "contextual_layer"}
    assert MosaicConfig(d=64).slots == 224 and MosaicConfig(d=64, persistent_slots=0).slots == 0
    bad = [
        (lambda: MosaicConfig(d=10, units=4), "divisible by units"),
        (lambda: MosaicConfig(units=0), "units must be in"),
        (lambda: MosaicConfig(dropout=1.0), r"dropout must be in \[0, 1\)"),
        (lambda: MosaicConfig(kernel="nope"), "unknown kernel"),
        (lambda: MosaicConfig(path="slow"), "path must be one of"),
        (lambda: MosaicConfig(beta=-1.0), "beta must be finite and > 0"),
        (lambda: MosaicConfig(d=12, units=4, complex_maps=True), "even unit width"),
        (lambda: GPTConfig(d=10, heads=4), "divisible by heads"),
        (lambda: GPTConfig().build(vocab_size=5), "needs max_len"),
        (lambda: MosaicConfig().build(), "needs vocab_size"),
        (lambda: ContextualLayerConfig().build(vocab_size=5), "continuous observations"),
        (lambda: ContextualLayerConfig(units=4).build(input_dim=6, output_dim=6), "must split into 4 units"),
        (lambda: ContextualLayerConfig().build(input_dim=6, output_dim=4), "must equal output_dim"),
    ]
    for make, match in bad:
        with pytest.raises((ValueError, TypeError), match=match):
            make()
    with pytest.raises(ValueError, match="exceeds the model's max_len"):
        token_model("gpt")(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="prompt must have shape"):
        token_model("mosaic").generate(torch.zeros(2, dtype=torch.long), 3)
