"""Memory Mosaic models (docs/contextual-and-persistent-memory.md).

`MemoryMosaic`: token embedding (no positions: the leaky average carries order) or a linear read-in →
blocks `x += CMem(LN(x)); x += PMem(LN(x))` → LN → tied head (or linear read-out).
`ContextualLayer`: a single contextual memory acting on the observations themselves, the model of the
three-moons figure (docs/three-moons.md).

Both generate with an incremental cache: each memory keeps its keys, its finished values and the
*unfinished* last value, which is completed with the true next input before it is ever retrieved.
A forward pass given a cache continues it, so `prefill` (a whole prompt in one parallel pass) and
`step` (one position) are the same code, the memories' own.
"""

from __future__ import annotations

import torch
from torch import nn

from sandbox.layers import Inspectable
from sandbox.memories.contextual import ContextualMemory
from sandbox.memories.options import MemoryOptions
from sandbox.memories.persistent import PersistentMemory, SwiGLUMemory
from sandbox.models.generation import Generating
from sandbox.models.init import reference_init


class MosaicBlock(nn.Module):
    """Pre-norm block: x += CMem(LN(x)); x += PMem(LN(x)) (no persistent memory when slots = 0).

    With the three-level memory (v2) CMem is a short-term memory over the last `window` steps plus a
    long-term one over s <= t - m (`cmem_long`), and PMem a SwiGLU layer.
    """

    def __init__(self, d: int, units: int, slots: int, dropout: float, options: MemoryOptions):
        super().__init__()
        self.norm_c = nn.LayerNorm(d)
        three_level = options.three_level
        self.cmem = ContextualMemory(d, units, options=options, window=options.window if three_level else None)
        self.cmem_long = ContextualMemory(d, units, options=options, lag=options.lag_range) if three_level else None
        self.norm_p = nn.LayerNorm(d) if slots else None
        persistent = (lambda: SwiGLUMemory(d, slots)) if three_level else (lambda: PersistentMemory(d, units, slots, options=options))
        self.pmem = persistent() if slots else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, *, path: str = "fast", cache: dict | None = None) -> torch.Tensor:
        """(B, T, d) -> (B, T, d); with a cache, x continues the positions it holds (see the memories)."""
        caches = (None, None, None) if cache is None else tuple(cache.setdefault(k, {}) for k in ("cmem", "pmem", "cmem_long"))
        h = self.norm_c(x)
        contextual = self.cmem(h, path=path, cache=caches[0])
        if self.cmem_long is not None:  # W_o [short; long] = W_short short + W_long long
            contextual = contextual + self.cmem_long(h, path=path, cache=caches[2])
        x = x + self.dropout(contextual)
        if self.pmem is not None:
            x = x + self.dropout(self.pmem(self.norm_p(x), path=path, cache=caches[1]))
        return x


class MemoryMosaic(Generating, Inspectable):
    """A stack of contextual + persistent memory blocks."""

    def __init__(self, *, d: int, layers: int, units: int, slots: int, vocab_size: int | None = None,
                 input_dim: int | None = None, output_dim: int | None = None, dropout: float = 0.0,
                 path: str = "fast", options: MemoryOptions | None = None):
        super().__init__()
        self.vocab_size, self.path = vocab_size, path
        if vocab_size is not None:
            self.read_in = nn.Embedding(vocab_size, d)
            self.read_out = None  # tied to the embedding
        else:
            self.read_in, self.read_out = nn.Linear(input_dim, d), nn.Linear(d, output_dim)
        self.blocks = nn.ModuleList(MosaicBlock(d, units, slots, dropout, MemoryOptions.resolve(options)) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)
        reference_init(self, layers=layers, residual=("cmem.out_map", "cmem_long.out_map", "pmem.out_map"),
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
        """Outputs (B, T, ...) of x (B, T) or (B, T, input_dim), continuing and updating `cache`."""
        h = self.read_in(x)  # (B, T, d)
        for i, block in enumerate(self.blocks):
            h = block(h, path=self.path, cache=cache.setdefault(i, {}))
        return self.head(h)

    def step(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        return self.prefill(x[:, None], cache)[:, 0]


class ContextualLayer(Generating, Inspectable):
    """One contextual memory on raw observations: ŷ_t = W_o Σ_{s<t} w_s v_s."""

    def __init__(self, *, input_dim: int, output_dim: int, units: int, path: str = "fast",
                 options: MemoryOptions | None = None):
        super().__init__()
        if input_dim != output_dim:
            raise ValueError(f"a contextual layer predicts its next input: input_dim ({input_dim}) must "
                             f"equal output_dim ({output_dim})")
        self.vocab_size, self.path = None, path
        self.memory = ContextualMemory(input_dim, units, options=options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.memory(x, path=self.path)

    def prefill(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        return self.memory(x, path=self.path, cache=cache)

    def step(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        return self.memory.step(x, cache)
