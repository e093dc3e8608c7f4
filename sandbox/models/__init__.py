"""Models by name: each has a typed config (validated on creation) whose `build` makes the module.

    model = MODELS["mosaic"](d=128, layers=2).build(vocab_size=65)

`build` takes the data's shape: `vocab_size` for token tasks (inputs (B, T) ids -> logits (B, T, V)),
or `input_dim`/`output_dim` for continuous ones ((B, T, input_dim) -> (B, T, output_dim)); `max_len`
bounds the sequence length where a model needs it (GPT's learned positions).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sandbox.memories.options import MemoryOptions
from sandbox.models.gpt import GPT
from sandbox.models.induction import InductionConfig, InductionTransformer
from sandbox.models.mosaic import ContextualLayer, MemoryMosaic
from sandbox.registry import Registry
from sandbox.validation import check_choice, check_fraction, check_int

MODELS = Registry("model")


def register_model(name: str):
    return MODELS.register(name)


def _data_shape(name, vocab_size, input_dim, output_dim, *, tokens_ok=True):
    if vocab_size is not None:
        if not tokens_ok:
            raise ValueError(f"model {name!r} reads continuous observations, not tokens (got vocab_size)")
        check_int(vocab_size, "vocab_size", low=1)
        return dict(vocab_size=vocab_size)
    if input_dim is None or output_dim is None:
        raise ValueError(f"model {name!r} needs vocab_size (tokens) or input_dim and output_dim (continuous)")
    return dict(input_dim=check_int(input_dim, "input_dim", low=1), output_dim=check_int(output_dim, "output_dim", low=1))


def _check_widths(d: int, layers: int, parts: int, name: str) -> None:
    """d and layers >= 1, and d split evenly into `parts` units or heads."""
    check_int(d, "d", low=1)
    check_int(layers, "layers", low=1)
    check_int(parts, name, low=1, high=d)
    if d % parts:
        raise ValueError(f"d ({d}) must be divisible by {name} ({parts})")


@register_model("mosaic")
@dataclass
class MosaicConfig(MemoryOptions):
    """A Memory Mosaic. persistent_slots None means N = 3.5·d (parameter parity with GPT); 0 means none.
    The memory options (leak, normalise, beta, gamma, complex_maps, kernel, adaptive_beta, gated_keys,
    three_level, window, lag_range) are `MemoryOptions`' fields; version 2 turns on the Memory Mosaics
    v2 switches (adaptive_beta, gated_keys, three_level); path "reference" runs the slow definition."""

    d: int = 128
    layers: int = 2
    units: int = 8
    persistent_slots: int | None = None
    dropout: float = 0.0
    path: str = "fast"
    version: int = 1

    def __post_init__(self):
        check_int(self.version, "version", low=1, high=2)
        if self.version == 2:
            self.adaptive_beta = self.gated_keys = self.three_level = True
        super().__post_init__()
        _check_widths(self.d, self.layers, self.units, "units")
        if self.complex_maps and (self.d // self.units) % 2:
            raise ValueError(f"complex_maps needs an even unit width d/units, got {self.d // self.units}")
        if self.persistent_slots is not None:
            check_int(self.persistent_slots, "persistent_slots", low=0)
        check_fraction(self.dropout, "dropout", open_high=True)
        check_choice(self.path, "path", {"fast", "reference"})

    @property
    def slots(self) -> int:
        return round(3.5 * self.d) if self.persistent_slots is None else self.persistent_slots

    def build(self, *, vocab_size=None, input_dim=None, output_dim=None, max_len=None) -> nn.Module:
        return MemoryMosaic(d=self.d, layers=self.layers, units=self.units, slots=self.slots,
                            dropout=self.dropout, path=self.path, options=MemoryOptions.of(self),
                            **_data_shape("mosaic", vocab_size, input_dim, output_dim))


@register_model("gpt")
@dataclass
class GPTConfig:
    """A pre-norm GPT-2. max_len None takes the task's sequence length at build time."""

    d: int = 128
    layers: int = 2
    heads: int = 8
    max_len: int | None = None
    dropout: float = 0.0

    def __post_init__(self):
        _check_widths(self.d, self.layers, self.heads, "heads")
        if self.max_len is not None:
            check_int(self.max_len, "max_len", low=1)
        check_fraction(self.dropout, "dropout", open_high=True)

    def build(self, *, vocab_size=None, input_dim=None, output_dim=None, max_len=None) -> nn.Module:
        length = self.max_len or max_len
        if length is None:
            raise ValueError("GPT needs max_len (from the config or the task's sequence length)")
        return GPT(d=self.d, layers=self.layers, heads=self.heads, max_len=length, dropout=self.dropout,
                   **_data_shape("gpt", vocab_size, input_dim, output_dim))


@register_model("contextual_layer")
@dataclass
class ContextualLayerConfig(MemoryOptions):
    """One contextual memory on raw observations (the three-moons model, docs/three-moons.md): by default keys W_φ x_t (no
    leaky average), values W_ψ x_{t+1}, no normalisation, dot-product attention with fixed β = 25 (the
    papers' attention scale 2β = 50), complex maps."""

    leak: bool = False
    normalise: bool = False
    beta: float | None = 25.0
    gamma: float | None = 0.0
    complex_maps: bool = True
    units: int = 3
    path: str = "fast"

    def __post_init__(self):
        super().__post_init__()
        check_int(self.units, "units", low=1)
        check_choice(self.path, "path", {"fast", "reference"})

    def build(self, *, vocab_size=None, input_dim=None, output_dim=None, max_len=None) -> nn.Module:
        shape = _data_shape("contextual_layer", vocab_size, input_dim, output_dim, tokens_ok=False)
        if shape["input_dim"] % self.units or (self.complex_maps and (shape["input_dim"] // self.units) % 2):
            raise ValueError(f"input_dim ({shape['input_dim']}) must split into {self.units} units"
                             + (" of even width (complex_maps)" if self.complex_maps else ""))
        return ContextualLayer(units=self.units, path=self.path, options=MemoryOptions.of(self), **shape)


register_model("induction_transformer")(InductionConfig)


def build_model(config, *, vocab_size=None, input_dim=None, output_dim=None, max_len=None) -> nn.Module:
    return config.build(vocab_size=vocab_size, input_dim=input_dim, output_dim=output_dim, max_len=max_len)


def num_parameters(model: nn.Module, *, embeddings: bool = True) -> int:
    """Trainable parameter count; embeddings=False leaves out token and position embeddings/read-in/out."""
    skip = set() if embeddings else {"read_in", "read_out", "positions"}
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and n.split(".")[0] not in skip)


__all__ = ["GPT", "GPTConfig", "MODELS", "ContextualLayer", "ContextualLayerConfig", "InductionConfig",
           "InductionTransformer", "MemoryMosaic", "MemoryOptions",
           "MosaicConfig", "build_model", "num_parameters", "register_model"]
