"""The simplified two-layer transformer of the induction-head study (docs/trigger-bigrams.md; Bietti et al. 2023).

    x_t  = w_E(z_t) + p_t                                    frozen random token and position vectors
    x¹_t = x_t  + Σ_{s<=t} softmax_s(x_tᵀ W_K¹ x_s)   W_O¹ W_V¹ x_s      (W_Q = I; W_O¹, W_V¹ frozen)
    x²_t = x¹_t + Σ_{s<=t} softmax_s(x¹_tᵀ W_K² x¹_s) W_O² W_V² x¹_s     (W_V² frozen)
    logits_t = W_U x²_t                                                  (W_U frozen)

Only W_K¹, W_K² and W_O² are trained (from zero), plus an optional linear feed-forward W_F after the
second layer. Every frozen matrix has N(0, 1/d) entries: token, position and unembedding vectors have
norm about 1 and are nearly orthogonal in high dimension, and the frozen square maps roughly preserve
norms. Each trained matrix then acts as an associative memory between random vectors. `freeze_wo2_until` keeps W_O² fixed at
zero for the first training steps (the step count is a buffer, so a resumed run continues it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from sandbox.layers import HookPoints, Inspectable
from sandbox.models.generation import Generating
from sandbox.validation import check_int


def _random(generator: torch.Generator, *shape, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=generator) * scale


class InductionAttention(HookPoints, nn.Module):
    """Single-head causal attention with the identity query map and a given value map."""

    def hook_points(self) -> list[str]:
        return ["weights"]

    def forward(self, x: torch.Tensor, key_map: torch.Tensor, value_map: torch.Tensor) -> torch.Tensor:
        scores = x @ key_map @ x.transpose(-1, -2)  # (B, T, T): x_tᵀ W_K x_s
        causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=x.device).tril()
        weights = torch.softmax(scores.masked_fill(~causal, float("-inf")), -1)  # (B, T, T)
        self.put("weights", weights)
        return weights @ (x @ value_map.T)  # (B, T, d)


class InductionTransformer(Generating, Inspectable):
    def __init__(self, *, vocab_size: int, d: int, max_len: int, freeze_wo2_until: int = 0,
                 feed_forward: bool = False, init_seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(init_seed)
        self.vocab_size, self.max_len, self.freeze_wo2_until = vocab_size, max_len, freeze_wo2_until
        scale = 1 / math.sqrt(d)
        self.register_buffer("token_embedding", _random(gen, vocab_size, d, scale=scale))  # w_E (V, d)
        self.register_buffer("positions", _random(gen, max_len, d, scale=scale))  # p_t (T, d)
        self.register_buffer("unembedding", _random(gen, vocab_size, d, scale=scale))  # w_U (V, d)
        self.register_buffer("W_V1", _random(gen, d, d, scale=scale))
        self.register_buffer("W_O1", _random(gen, d, d, scale=scale))
        self.register_buffer("W_V2", _random(gen, d, d, scale=scale))
        self.W_K1 = nn.Parameter(torch.zeros(d, d))
        self.W_K2 = nn.Parameter(torch.zeros(d, d))
        self.W_O2 = nn.Parameter(torch.zeros(d, d))
        self.W_F = nn.Parameter(torch.zeros(d, d)) if feed_forward else None
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))
        self.layer1, self.layer2 = InductionAttention(), InductionAttention()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds max_len {self.max_len}")
        W_O2 = self.W_O2
        if self.training and torch.is_grad_enabled():
            if self.steps_seen < self.freeze_wo2_until:
                W_O2 = W_O2.detach()
            self.steps_seen += 1
        x = self.token_embedding[tokens] + self.positions[: tokens.shape[1]]  # (B, T, d)
        x = x + self.layer1(x, self.W_K1, self.W_O1 @ self.W_V1)
        x = x + self.layer2(x, self.W_K2, W_O2 @ self.W_V2)
        if self.W_F is not None:
            x = x + x @ self.W_F.T
        return x @ self.unembedding.T  # (B, T, V)

    def step(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        """Generation recomputes the prefix: this model is for study, not for long generation."""
        cache["tokens"] = torch.cat([cache["tokens"], x[:, None]], 1) if "tokens" in cache else x[:, None]
        return self(cache["tokens"])[:, -1]


@dataclass
class InductionConfig:
    """d: width; freeze_wo2_until: W_O² stays frozen for this many training steps; feed_forward: add a
    trained linear W_F; init_seed: draws the frozen random matrices."""

    d: int = 128
    freeze_wo2_until: int = 0
    feed_forward: bool = False
    init_seed: int = 0

    def __post_init__(self):
        check_int(self.d, "d", low=2)
        check_int(self.freeze_wo2_until, "freeze_wo2_until", low=0)
        check_int(self.init_seed, "init_seed", low=0)

    def build(self, *, vocab_size=None, input_dim=None, output_dim=None, max_len=None) -> nn.Module:
        if vocab_size is None:
            raise ValueError("the induction transformer reads tokens: it needs vocab_size")
        if max_len is None:
            raise ValueError("the induction transformer needs max_len (its positional vectors)")
        return InductionTransformer(vocab_size=vocab_size, d=self.d, max_len=max_len,
                                    freeze_wo2_until=self.freeze_wo2_until, feed_forward=self.feed_forward,
                                    init_seed=self.init_seed)
