"""Persistent memory: learned key/value slots that replace the feed-forward layer (docs/contextual-and-persistent-memory.md).

    k_t = leaky average of W_φ x_t (own W_φ, as in the contextual memory)
    y_t = Σ_n softmax_n(β_u k_t·M_k[n]) M_v[n]        per unit; no mask, the slots are not in time

M_k, M_v ∈ R^{units × N × h}, initialised N(0, 1/h). With W_φ and W_o this is 2d² + 2Nd parameters,
so a mosaic block (3d² contextual + this) matches a GPT block's 12d² at N = 3.5d. Retrieval goes
through the registered retrieval rule (dot-product attention on unit keys = the Gaussian kernel), so
the fast path is the same fused kernel the property suite checks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sandbox.layers import HookPoints, linear
from sandbox.memories.contextual import BETA_CAP, leaky_average, leaky_average_reference, unit
from sandbox.registry import get_memory
from sandbox.validation import check_choice, check_int, trusted_inputs


class PersistentMemory(HookPoints, nn.Module):
    """`units` persistent memories of `slots` learned pairs each, reading and writing R^d."""

    def __init__(self, d: int, units: int, slots: int, *, leak: bool = True, normalise: bool = True,
                 complex_maps: bool = False, memory: str = "gaussian_sphere"):
        super().__init__()
        check_int(units, "units", low=1)
        check_int(slots, "slots", low=1)
        self.units, self.width, self.normalise = units, d // units, normalise
        self.keys_map = linear(d, units * self.width, complex_maps=complex_maps)  # W_φ
        self.out_map = linear(units * self.width, d, complex_maps=complex_maps)  # W_o
        self.leak_logit = nn.Parameter(torch.linspace(0.5, 5.0, units)) if leak else None
        self.slot_keys = nn.Parameter(torch.randn(units, slots, self.width) / math.sqrt(self.width))  # M_k
        self.slot_values = nn.Parameter(torch.randn(units, slots, self.width) / math.sqrt(self.width))  # M_v
        self.beta_log = nn.Parameter(torch.full((units,), 2.0))
        self.memory = get_memory(memory)()

    def leak(self) -> torch.Tensor | None:
        return None if self.leak_logit is None else torch.exp(-self.leak_logit.abs())  # (U,)

    def beta(self) -> torch.Tensor:
        return torch.exp(self.beta_log.clamp(max=BETA_CAP))  # (U,)

    def hook_points(self) -> list[str]:
        return ["keys", "weights", "outputs"]

    def keys(self, x: torch.Tensor, *, path: str = "fast") -> torch.Tensor:
        """Leaky-averaged query keys (B, U, T, h) of inputs x (B, T, d), before normalisation."""
        keys = self.keys_map(x).unflatten(-1, (self.units, self.width)).transpose(-3, -2)  # (B, U, T, h)
        if self.leak_logit is not None:
            average = leaky_average if path == "fast" else leaky_average_reference
            keys = average(keys, self.leak().to(keys.dtype))
        return keys

    def forward(self, x: torch.Tensor, *, path: str = "fast", cache: dict | None = None) -> torch.Tensor:
        """Outputs (B, T, d); `cache`, if given, receives the leaky key sum of the last step (prefill)."""
        check_choice(path, "path", {"fast", "reference"})
        keys = self.keys(x, path=path)
        if cache is not None and self.leak_logit is not None:
            cache["key_state"] = keys[..., -1, :]
        return self.read(keys, path=path)

    def read(self, keys: torch.Tensor, *, path: str = "fast") -> torch.Tensor:
        """Outputs (B, T, d) for leaky-averaged keys (B, U, T, h) (normalised here if configured)."""
        keys = unit(keys) if self.normalise else keys
        beta = self.beta().to(keys.dtype)  # (U,)
        slot_keys, slot_values = self.slot_keys.to(keys.dtype), self.slot_values.to(keys.dtype)  # (U, N, h)
        if path == "fast":
            # The slots are shared by every sequence: all B·T queries of a unit go against its N slots
            # in one call, so neither the slots nor their gradients are copied per sequence.
            by_unit = keys.movedim(-3, 0)  # (U, B, T, h)
            queries = by_unit.reshape(1, self.units, -1, self.width)  # (1, U, B·T, h)
            with trusted_inputs():
                outputs = self.memory.retrieve(queries, slot_keys[None], slot_values[None], beta / 2)
            outputs = outputs[0].reshape(by_unit.shape).movedim(0, -3)  # (B, U, T, h)
        else:  # the definition: softmax(β_u k·M_k) M_v, written out
            outputs = self.slot_weights(keys, slot_keys, beta) @ slot_values
        if self.wants("weights"):
            self.put("weights", self.slot_weights(keys, slot_keys, beta))
        self.put("keys", keys)
        self.put("outputs", outputs)
        return self.out_map(outputs.transpose(-3, -2).flatten(-2))

    @staticmethod
    def slot_weights(keys, slot_keys, beta) -> torch.Tensor:
        """(B, U, T, N) softmax(β_u k_t·M_k[n]) over the slots."""
        return torch.softmax(beta[:, None, None] * keys @ slot_keys.transpose(-1, -2), -1)
