"""Memory Mosaic models (docs/contextual-and-persistent-memory.md).

`MemoryMosaic`: token embedding (no positions: the leaky average carries order) or a linear read-in →
blocks `x += CMem(LN(x)); x += PMem(LN(x))` → LN → tied head (or linear read-out).
`ContextualLayer`: a single contextual memory acting on the observations themselves, the model of the
three-moons figure (docs/three-moons.md).

Both generate with an incremental cache: each memory keeps its keys, its finished values and the
*unfinished* last value, which is completed with the true next input before it is ever retrieved.
`prefill` fills that cache from a whole prompt in one parallel pass.
"""

from __future__ import annotations

import torch
from torch import nn

from sandbox.layers import Inspectable
from sandbox.memories.contextual import ContextualMemory, unit
from sandbox.memories.persistent import PersistentMemory
from sandbox.models.generation import Generating
from sandbox.models.init import reference_init


def _split_step(memory, x: torch.Tensor, mapping) -> torch.Tensor:
    """(B, d) -> (B, U, h) through one of a memory's maps."""
    return mapping(x).unflatten(-1, (memory.units, memory.width))


def contextual_step(memory: ContextualMemory, x: torch.Tensor, cache: dict) -> torch.Tensor:
    """One step of a contextual memory: x_t (B, d) -> y_t (B, d), updating `cache` in place."""
    key = _split_step(memory, x, memory.keys_map)  # (B, U, h): W_φ x_t
    if memory.leak_logit is not None:
        if "key_state" in cache:
            key = key + memory.leak().to(key.dtype)[:, None] * cache["key_state"]
        cache["key_state"] = key
    key = unit(key) if memory.normalise else key
    raw = _split_step(memory, x, memory.values_map)  # (B, U, h): ṽ_t
    if "pending" in cache:  # finish v_{t-1} now that ṽ_t is known
        gamma = memory.gamma().to(raw.dtype)[:, None]  # (U, 1)
        value = torch.lerp(raw, cache["pending"], gamma)  # (B, U, h): γ ṽ_{t-1} + (1-γ) ṽ_t
        if memory.normalise:
            value = unit(value, torch.exp(memory.alpha_log).to(raw.dtype)[:, None])  # α v̄ / ‖v̄‖
        cache["values"] = torch.cat([cache["values"], value[:, :, None]], -2) if "values" in cache else value[:, :, None]
    if "keys" in cache:
        beta = memory.beta().to(key.dtype)  # (U,)
        out = memory.memory.retrieve(key[:, :, None], cache["keys"], cache["values"], beta / 2)[:, :, 0]  # (B, U, h)
        cache["keys"] = torch.cat([cache["keys"], key[:, :, None]], -2)
    else:
        out = torch.zeros_like(key)
        cache["keys"] = key[:, :, None]
    cache["pending"] = raw
    return memory.out_map(out.flatten(-2))


def persistent_step(memory: PersistentMemory, x: torch.Tensor, cache: dict) -> torch.Tensor:
    """One step of a persistent memory: only the leaky key state is carried."""
    key = _split_step(memory, x, memory.keys_map)  # (B, U, h)
    if memory.leak_logit is not None:
        if "key_state" in cache:
            key = key + memory.leak().to(key.dtype)[:, None] * cache["key_state"]
        cache["key_state"] = key
    return memory.read(key[:, :, None])[:, 0]  # (B, d)


class MosaicBlock(nn.Module):
    """Pre-norm block: x += CMem(LN(x)); x += PMem(LN(x)) (no persistent memory when slots = 0)."""

    def __init__(self, d: int, units: int, slots: int, dropout: float, *, leak: bool, normalise: bool,
                 beta: float | None, gamma: float | None, complex_maps: bool, memory: str):
        super().__init__()
        shared = dict(leak=leak, normalise=normalise, complex_maps=complex_maps, memory=memory)
        self.norm_c = nn.LayerNorm(d)
        self.cmem = ContextualMemory(d, units, beta=beta, gamma=gamma, **shared)
        self.norm_p = nn.LayerNorm(d) if slots else None
        self.pmem = PersistentMemory(d, units, slots, **shared) if slots else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, *, path: str = "fast") -> torch.Tensor:
        x = x + self.dropout(self.cmem(self.norm_c(x), path=path))
        if self.pmem is not None:
            x = x + self.dropout(self.pmem(self.norm_p(x), path=path))
        return x

    def prefill(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        """forward over a prompt (B, T, d), leaving `cache` as `step` would after T steps."""
        x = x + self.cmem(self.norm_c(x), cache=cache.setdefault("cmem", {}))
        if self.pmem is not None:
            x = x + self.pmem(self.norm_p(x), cache=cache.setdefault("pmem", {}))
        return x

    def step(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        x = x + contextual_step(self.cmem, self.norm_c(x), cache.setdefault("cmem", {}))
        if self.pmem is not None:
            x = x + persistent_step(self.pmem, self.norm_p(x), cache.setdefault("pmem", {}))
        return x


class MemoryMosaic(Generating, Inspectable):
    """A stack of contextual + persistent memory blocks (docs/contextual-and-persistent-memory.md)."""

    def __init__(self, *, d: int, layers: int, units: int, slots: int, vocab_size: int | None = None,
                 input_dim: int | None = None, output_dim: int | None = None, dropout: float = 0.0,
                 path: str = "fast", **memory_options):
        super().__init__()
        self.vocab_size, self.path = vocab_size, path
        if vocab_size is not None:
            self.read_in = nn.Embedding(vocab_size, d)
            self.read_out = None  # tied to the embedding
        else:
            self.read_in, self.read_out = nn.Linear(input_dim, d), nn.Linear(d, output_dim)
        self.blocks = nn.ModuleList(MosaicBlock(d, units, slots, dropout, **memory_options) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)
        reference_init(self, layers=layers, residual=("cmem.out_map", "pmem.out_map"),
                       tied="read_in" if vocab_size is not None else None)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        h = self.norm(h)
        return h @ self.read_in.weight.T if self.read_out is None else self.read_out(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.read_in(x))  # (B, T, d)
        for block in self.blocks:
            h = block(h, path=self.path)
        return self.head(h)  # (B, T, V) or (B, T, output_dim)

    def prefill(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        h = self.read_in(x)  # (B, T, d)
        for i, block in enumerate(self.blocks):
            h = block.prefill(h, cache.setdefault(i, {}))
        return self.head(h)

    def step(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        h = self.read_in(x)  # (B, d)
        for i, block in enumerate(self.blocks):
            h = block.step(h, cache.setdefault(i, {}))
        return self.head(h)


class ContextualLayer(Generating, Inspectable):
    """One contextual memory on raw observations: ŷ_t = W_o Σ_{s<t} w_s v_s (docs/three-moons.md)."""

    def __init__(self, *, input_dim: int, output_dim: int, units: int, path: str = "fast", **memory_options):
        super().__init__()
        if input_dim != output_dim:
            raise ValueError(f"a contextual layer predicts its next input: input_dim ({input_dim}) must "
                             f"equal output_dim ({output_dim})")
        self.vocab_size, self.path = None, path
        self.memory = ContextualMemory(input_dim, units, **memory_options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.memory(x, path=self.path)

    def prefill(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        return self.memory(x, cache=cache)

    def step(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        return contextual_step(self.memory, x, cache)
