"""Generation options: top-k sampling and generating past a model's context limit (GPT's max_len)."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sandbox.models import GPTConfig, MosaicConfig


def model(name, max_len=64):
    torch.manual_seed(0)
    config = MosaicConfig(d=16, layers=2, units=4) if name == "mosaic" else GPTConfig(d=16, layers=2, heads=4)
    return config.build(vocab_size=11, max_len=max_len).double().eval()


MODELS = {name: model(name) for name in ("mosaic", "gpt")}


@pytest.mark.parametrize("name", MODELS)
def test_top_k_one_is_greedy(name):
    prompt = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(1))
    sampled = MODELS[name].generate(prompt, 15, sample=True, temperature=3.0, top_k=1,
                                    generator=torch.Generator().manual_seed(4))
    assert torch.equal(sampled, MODELS[name].generate(prompt, 15))


@given(k=st.integers(1, 10), seed=st.integers(0, 2**31 - 1))
def test_top_k_draws_only_among_the_k_most_likely(k, seed):
    gpt = MODELS["gpt"]
    prompt = torch.randint(0, 11, (4, 3), generator=torch.Generator().manual_seed(seed))
    out = gpt.generate(prompt, 6, sample=True, temperature=50.0, top_k=k, generator=torch.Generator().manual_seed(seed))
    for t in range(3, 9):
        logits = gpt(out[:, :t])[:, -1]  # (B, V)
        rank = (logits > logits.gather(1, out[:, t:t + 1])).sum(1)  # tokens strictly more likely than the draw
        assert bool((rank < k).all())


def test_top_k_out_of_range_is_an_error():
    with pytest.raises(ValueError, match=r"top_k must be in \[1, 11\]"):
        MODELS["gpt"].generate(torch.zeros(1, 2, dtype=torch.long), 3, sample=True, top_k=12)


def test_gpt_generates_past_max_len_from_the_recent_half():
    """When the cache is full, generation continues from the last max_len // 2 positions: each token is
    the argmax of a full forward over exactly that window (a reference computed here step by step)."""
    limit, T0, steps = 12, 5, 30
    gpt = model("gpt", max_len=limit)
    prompt = torch.randint(0, 11, (2, T0), generator=torch.Generator().manual_seed(3))
    out = gpt.generate(prompt, steps)
    assert out.shape == (2, T0 + steps)
    filled = T0 - 1  # positions in the cache before each step, by the rule of the docstring
    for t in range(T0, T0 + steps):
        if filled >= limit:
            filled = limit // 2 - 1
        window = out[:, t - filled - 1:t]  # (B, filled + 1): the cached positions and the current token
        assert torch.equal(out[:, t], gpt(window)[:, -1].argmax(-1)), t
        filled += 1


def test_a_prompt_longer_than_max_len_keeps_its_last_max_len_tokens():
    gpt = model("gpt", max_len=8)
    prompt = torch.randint(0, 11, (1, 20), generator=torch.Generator().manual_seed(5))
    out = gpt.generate(prompt, 1)
    assert torch.equal(out[:, :20], prompt) and torch.equal(out[:, 20], gpt(prompt[:, -8:])[:, -1].argmax(-1))


def test_the_mosaic_has_no_context_limit():
    mosaic = MODELS["mosaic"]
    prompt = torch.randint(0, 11, (1, 4), generator=torch.Generator().manual_seed(6))
    out = mosaic.generate(prompt, 80)  # far past the 64 positions the GPT of the same config could hold
    assert torch.equal(out[:, -1], mosaic(out[:, :-1])[:, -1].argmax(-1))
