"""The baseline: a standard pre-norm GPT-2 (docs/contextual-and-persistent-memory.md) of the same width and depth as a mosaic.

Learned positional embeddings, multi-head causal self-attention (fused `scaled_dot_product_attention`),
a 4d GELU MLP, LN before each sublayer and at the end, and an output head tied to the embedding (or
linear read-in/read-out for continuous inputs), initialised as GPT-2 (`sandbox.models.init`).
Generation keeps a key/value cache per layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sandbox.layers import HookPoints, Inspectable
from sandbox.models.generation import Generating
from sandbox.models.init import reference_init


class SelfAttention(HookPoints, nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def hook_points(self) -> list[str]:
        return ["weights", "outputs"]

    def split(self, x: torch.Tensor):
        q, k, v = self.qkv(x).chunk(3, -1)  # (B, T, d) each
        return [t.unflatten(-1, (self.heads, -1)).transpose(-3, -2) for t in (q, k, v)]  # (B, H, T, d/H)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split(x)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                             dropout_p=self.dropout if self.training else 0.0)  # (B, H, T, d/H)
        if self.wants("weights"):
            scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # (B, H, T, T)
            causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=x.device).tril()
            self.put("weights", torch.softmax(scores.masked_fill(~causal, float("-inf")), -1))
        self.put("outputs", out)
        return self.proj(out.transpose(-3, -2).flatten(-2))

    def step(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        q, k, v = self.split(x[:, None])  # (B, H, 1, d/H)
        if "k" in cache:
            k, v = torch.cat([cache["k"], k], -2), torch.cat([cache["v"], v], -2)
        cache["k"], cache["v"] = k, v
        out = F.scaled_dot_product_attention(q, k, v)  # the query is last: it may see every cached key
        return self.proj(out.transpose(-3, -2).flatten(-2))[:, 0]


class GPTBlock(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.norm_a, self.attn = nn.LayerNorm(d), SelfAttention(d, heads, dropout)
        self.norm_m = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm_a(x)))
        return x + self.mlp(self.norm_m(x))

    def step(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        x = x + self.attn.step(self.norm_a(x), cache)
        return x + self.mlp(self.norm_m(x))


class GPT(Generating, Inspectable):
    def __init__(self, *, d: int, layers: int, heads: int, max_len: int, vocab_size: int | None = None,
                 input_dim: int | None = None, output_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.vocab_size, self.max_len = vocab_size, max_len
        if vocab_size is not None:
            self.read_in, self.read_out = nn.Embedding(vocab_size, d), None
        else:
            self.read_in, self.read_out = nn.Linear(input_dim, d), nn.Linear(d, output_dim)
        self.positions = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(GPTBlock(d, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)
        reference_init(self, layers=layers, residual=("attn.proj", "mlp.2"),
                       tied="read_in" if vocab_size is not None else None)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        h = self.norm(h)
        return h @ self.read_in.weight.T if self.read_out is None else self.read_out(h)

    def check_length(self, length: int) -> None:
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds the model's max_len {self.max_len}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_length(x.shape[1])
        h = self.dropout(self.read_in(x) + self.positions.weight[: x.shape[1]])  # (B, T, d)
        for block in self.blocks:
            h = block(h)
        return self.head(h)

    def step(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        t = cache.get("length", 0)
        self.check_length(t + 1)
        cache["length"] = t + 1
        h = self.read_in(x) + self.positions.weight[t]  # (B, d)
        for i, block in enumerate(self.blocks):
            h = block.step(h, cache.setdefault(i, {}))
        return self.head(h)
