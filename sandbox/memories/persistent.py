"""Persistent memory: learned key/value slots that replace the feed-forward layer
(docs/contextual-and-persistent-memory.md).

    k_t = leaky average of W_φ x_t (own W_φ, as in the contextual memory)
    y_t = Σ_n w_n(k_t) M_v[n]        per unit, w the configured kernel over the slot keys M_k; no mask

M_k, M_v ∈ R^{units × N × h}, initialised N(0, 1/h). With W_φ and W_o this is 2d² + 2Nd parameters,
so a mosaic block (3d² contextual + this) matches a GPT block's 12d² at N = 3.5d (Memory Mosaics,
ICLR 2025, §4). With the default dot-product kernel the weights are softmax(2β k_t·M_k[n]) on raw slot
keys; a kernel defined on the unit sphere gets unit slot keys. The fast path is the kernel's own
retrieval (fused attention for the dot-product kernels), the reference its weights written out.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sandbox.layers import HookPoints, linear
from sandbox.memories.contextual import learned_beta, leaky_average, leaky_average_reference, scaled, stored, unit
from sandbox.memories.options import MemoryOptions
from sandbox.validation import check_choice, check_int, trusted_inputs


class PersistentMemory(HookPoints, nn.Module):
    """`units` persistent memories of `slots` learned pairs each, reading and writing R^d.

    Of the options it uses leak, normalise, complex_maps and kernel; its β is always learned per unit.
    """

    def __init__(self, d: int, units: int, slots: int, options: MemoryOptions | None = None, **changes):
        super().__init__()
        check_int(units, "units", low=1)
        check_int(slots, "slots", low=1)
        options = MemoryOptions.resolve(options, **changes)
        self.units, self.width, self.options = units, d // units, options
        self.keys_map = linear(d, units * self.width, complex_maps=options.complex_maps)  # W_φ
        self.out_map = linear(units * self.width, d, complex_maps=options.complex_maps)  # W_o
        self.leak_logit = stored(torch.linspace(0.5, 5.0, units)) if options.leak else None
        self.slot_keys = nn.Parameter(torch.randn(units, slots, self.width) / math.sqrt(self.width))  # M_k
        self.slot_values = nn.Parameter(torch.randn(units, slots, self.width) / math.sqrt(self.width))  # M_v
        self.beta_log = stored(torch.full((units,), 2.0))  # θ_β = log 2β
        self.kernel = options.make_kernel()

    def leak(self) -> torch.Tensor | None:
        return None if self.leak_logit is None else torch.exp(-scaled(self.leak_logit).abs())  # (U,)

    def beta(self) -> torch.Tensor:
        """The kernel β per unit (U,)."""
        return learned_beta(scaled(self.beta_log))

    def hook_points(self) -> list[str]:
        return ["keys", "weights", "outputs"]

    def keys(self, x: torch.Tensor, *, path: str = "fast", state: dict | None = None) -> torch.Tensor:
        """Leaky-averaged query keys (B, U, T, h) of inputs x (B, T, d), before normalisation;
        `state` (a generation cache) carries the leaky sum from an earlier call and is updated."""
        keys = self.keys_map(x).unflatten(-1, (self.units, self.width)).transpose(-3, -2)  # (B, U, T, h)
        if self.leak_logit is not None:
            average = leaky_average if path == "fast" else leaky_average_reference
            keys = average(keys, self.leak().to(keys.dtype), initial=None if state is None else state.get("key_state"))
            if state is not None:
                state["key_state"] = keys[..., -1, :]
        return keys

    def slots(self, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The slot keys as the kernel sees them (unit norm on the sphere) and the slot values (U, N, h)."""
        slot_keys = self.slot_keys.to(dtype)
        return (unit(slot_keys) if self.kernel.unit_sphere else slot_keys), self.slot_values.to(dtype)

    def forward(self, x: torch.Tensor, *, path: str = "fast", cache: dict | None = None) -> torch.Tensor:
        """Outputs (B, T, d); `cache`, if given, carries the leaky key sum on (prefill and generation)."""
        check_choice(path, "path", {"fast", "reference"})
        keys = self.keys(x, path=path, state=cache)
        keys = unit(keys) if self.options.normalise else keys
        beta = self.beta().to(keys.dtype)  # (U,)
        slot_keys, slot_values = self.slots(keys.dtype)  # (U, N, h)
        with trusted_inputs():
            if path == "fast":
                # The slots are shared by every sequence: all B·T queries of a unit go against its N slots
                # in one call, so neither the slots nor their gradients are copied per sequence.
                by_unit = keys.movedim(-3, 0)  # (U, B, T, h)
                queries = by_unit.reshape(1, self.units, -1, self.width)  # (1, U, B·T, h)
                outputs = self.kernel.retrieve(queries, slot_keys[None], slot_values[None], beta)
                outputs = outputs[0].reshape(by_unit.shape).movedim(0, -3)  # (B, U, T, h)
            else:  # the definition: the kernel's weights over the slots, written out
                outputs = self.kernel.weights(keys, slot_keys, beta) @ slot_values
            if self.wants("weights"):
                self.put("weights", self.kernel.weights(keys, slot_keys, beta))  # (B, U, T, N)
        self.put("keys", keys)
        self.put("outputs", outputs)
        return self.out_map(outputs.transpose(-3, -2).flatten(-2))

    def step(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        """One generation step: x_t (B, d) -> y_t (B, d), carrying the leaky key sum in `cache`."""
        return self(x[:, None], cache=cache)[:, 0]


class SwiGLUMemory(HookPoints, nn.Module):
    """The persistent memory of Memory Mosaics v2: a SwiGLU feed-forward layer, W_o (silu(W_1 x) ⊙ W_3 x).

    Its hidden width matches the slot memory's parameters: 3·d·hidden = 2d² + 2Nd.
    """

    def __init__(self, d: int, slots: int):
        super().__init__()
        check_int(d, "d", low=1)
        check_int(slots, "slots", low=1)
        hidden = max(1, round((2 * d * d + 2 * slots * d) / (3 * d)))
        self.gate_map, self.up_map = nn.Linear(d, hidden, bias=False), nn.Linear(d, hidden, bias=False)  # W_1, W_3
        self.out_map = nn.Linear(hidden, d, bias=False)  # W_o

    def hook_points(self) -> list[str]:
        return ["outputs"]

    def forward(self, x: torch.Tensor, *, path: str = "fast", cache: dict | None = None) -> torch.Tensor:
        """(B, T, d) -> (B, T, d), position by position (nothing to carry in `cache`)."""
        check_choice(path, "path", {"fast", "reference"})
        hidden = torch.nn.functional.silu(self.gate_map(x)) * self.up_map(x)  # (B, T, hidden)
        self.put("outputs", hidden)
        return self.out_map(hidden)
