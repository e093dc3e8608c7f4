"""Initialisation as in GPT-2 and the official mosaic code: the first loss is the uniform prediction's."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sandbox.models import GPTConfig, MosaicConfig
from sandbox.models.init import reference_init

VOCAB = 20


def initial_loss(config, seed: int) -> float:
    torch.manual_seed(seed)
    model = config.build(vocab_size=VOCAB, max_len=64)
    tokens = torch.randint(0, VOCAB, (8, 65), generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        logits = model(tokens[:, :-1])  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).item()


@pytest.mark.parametrize("d", [32, 128, 256])
@pytest.mark.parametrize("family", ["mosaic", "gpt"])
def test_initial_loss_is_within_ten_percent_of_log_vocabulary(family, d):
    config = MosaicConfig(d=d, layers=2, units=8) if family == "mosaic" else GPTConfig(d=d, layers=2, heads=8)
    for seed in range(2):
        loss = initial_loss(config, seed)
        assert abs(loss / math.log(VOCAB) - 1) < 0.10, (family, d, seed, loss)


@pytest.mark.parametrize("layers", [1, 4])
def test_residual_projections_are_scaled_down_by_depth(layers):
    torch.manual_seed(0)
    gpt = GPTConfig(d=128, layers=layers, heads=4).build(vocab_size=VOCAB, max_len=32)
    mosaic = MosaicConfig(d=128, layers=layers, units=4).build(vocab_size=VOCAB)
    residual = 0.02 / math.sqrt(2 * layers)
    for name, p in [*gpt.named_parameters(), *mosaic.named_parameters()]:
        if name.endswith(("proj.weight", "mlp.2.weight", "out_map.weight")):
            assert p.std().item() == pytest.approx(residual, rel=0.1), name
        elif name.endswith(("qkv.weight", "mlp.0.weight", "keys_map.weight", "values_map.weight",
                            "positions.weight")):
            assert p.std().item() == pytest.approx(0.02, rel=0.1), name
        elif name == "read_in.weight":  # tied to the read-out: min(0.02, 1/d)
            assert p.std().item() == pytest.approx(1 / 128, rel=0.1), name
        elif name.endswith(".bias") and "norm" not in name:
            assert torch.all(p == 0), name


def test_reference_init_rejects_bad_arguments():
    with pytest.raises(ValueError, match="layers"):
        reference_init(nn.Linear(2, 2), layers=0, residual=())
    with pytest.raises(ValueError, match="std"):
        reference_init(nn.Linear(2, 2), layers=1, residual=(), std=-1.0)
