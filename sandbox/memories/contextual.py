"""Contextual memory: the memory unit of a Memory Mosaic, the analogue of an attention head (docs/contextual-and-persistent-memory.md).

    keys     k̄_t = W_φ x_t + λ k̄_{t-1},        k_t = k̄_t / ‖k̄_t‖           (leaky average of the past)
    values   v̄_t = γ W_ψ x_t + (1-γ) W_ψ x_{t+1}, v_t = α v̄_t / ‖v̄_t‖        (peek one step ahead)
    output   y_t = Σ_{s<t} softmax_s(β_u k_t·k_s) v_s,  y_1 = 0              (strict past)

Units run in parallel and W_o mixes their outputs. Two paths compute the same function: `reference`
(the T×T decay matrix for the leaky average and the float64-checked `kernel_regression` with an explicit
mask) and `fast` (a chunked O(T·C) scan and fused `scaled_dot_product_attention` with the shift-by-one
trick of docs/contextual-and-persistent-memory.md). Tests hold the fast path to the reference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sandbox.layers import HookPoints, linear
from sandbox.memories.kernel_regression import (
    KernelMemory,
    as_beta,
    check_memory_args,
    kernel_regression,
    strict_past_mask,
)
from sandbox.registry import get_memory, register_memory
from sandbox.validation import check_choice, check_int, trusted_inputs

BETA_CAP = 10.0  # θ_β is capped so that β_u = e^θ stays finite in half precision
NORM_EPS = 1e-12


def unit(x: torch.Tensor, scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """scale · x / ‖x‖ along the last axis (a zero vector stays zero); scale broadcasts to (..., 1)."""
    return x * (scale / x.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS))


# --- leaky average ---------------------------------------------------------------------------------

def decay_matrix(log_leak: torch.Tensor, length: int) -> torch.Tensor:
    """(U, T, T) lower-triangular matrix D[t, s] = λ^{t-s} for s <= t, from log λ (U,).

    Powers are formed as exp((t-s)·log λ) with t - s >= 0 only: they underflow to 0, never overflow.
    """
    steps = torch.arange(length, device=log_leak.device)
    lag = (steps[:, None] - steps[None, :]).to(log_leak.dtype)  # (T, T)
    powers = torch.exp(lag.clamp(min=0) * log_leak[:, None, None])  # (U, T, T)
    return powers * (lag >= 0)


def leaky_average_reference(x: torch.Tensor, leak: torch.Tensor) -> torch.Tensor:
    """k̄_t = Σ_{s<=t} λ^{t-s} x_s for x (..., U, T, h) and λ (U,), with the O(T²) decay matrix."""
    return decay_matrix(torch.log(leak), x.shape[-2]) @ x


def leaky_average(x: torch.Tensor, leak: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """The same as `leaky_average_reference` by a chunked scan: O(T·C) work and O(C²) extra memory."""
    check_int(chunk, "chunk", low=2)
    return _chunked_scan(x, torch.log(leak), chunk)


def _chunked_scan(x: torch.Tensor, log_leak: torch.Tensor, chunk: int) -> torch.Tensor:
    """Within a chunk of C steps a C×C decay matmul; across chunks the state carried out of each chunk
    is itself a leaky average (with leak λ^C, i.e. log leak C·log λ) of the chunks' last rows."""
    *batch, units, length, width = x.shape
    if length <= chunk:
        return _apply_per_unit(decay_matrix(log_leak, length), x, -3)
    n_chunks = math.ceil(length / chunk)
    padded = F.pad(x, (0, 0, 0, n_chunks * chunk - length))  # (..., U, nC·C, h)
    blocks = padded.reshape(*batch, units, n_chunks, chunk, width)  # (..., U, nC, C, h)
    local = _apply_per_unit(decay_matrix(log_leak, chunk), blocks, -4)  # (..., U, nC, C, h) sums in chunks
    carried = _chunked_scan(local[..., -1, :], chunk * log_leak, chunk)  # (..., U, nC, h) state after chunk c
    steps_in = torch.arange(1, chunk + 1, device=x.device, dtype=x.dtype)  # (C,)
    into = torch.exp(steps_in * log_leak[:, None])  # (U, C): λ^{i+1} carries the entering state to step i
    previous = F.pad(carried, (0, 0, 1, 0))[..., :-1, :]  # (..., U, nC, h) state entering chunk c
    out = local + into[:, None, :, None] * previous[..., None, :]  # (..., U, nC, C, h)
    return out.reshape(*batch, units, n_chunks * chunk, width)[..., :length, :]


def _apply_per_unit(matrix: torch.Tensor, x: torch.Tensor, unit_axis: int) -> torch.Tensor:
    """matrix[u] @ x[..., u, ..., :, :] for matrix (U, L, L) and x with its unit axis at `unit_axis`.

    The same as broadcasting `matrix @ x`, written as one (L×L)·(L×everything) product per unit, so
    that neither the product nor the gradient of the matrix is formed once per sequence.
    """
    moved = x.movedim(unit_axis, 0).movedim(-2, 1)  # (U, L, rest of x)
    out = matrix @ moved.reshape(matrix.shape[0], matrix.shape[-1], -1)  # (U, L, rest flattened)
    return out.reshape(moved.shape).movedim(1, -2).movedim(0, unit_axis)


# --- retrieval rule ----------------------------------------------------------------------------------

@register_memory("gaussian_sphere")
class SphereGaussianMemory(KernelMemory):
    """Gaussian kernel on the unit sphere as fused dot-product attention, softmax(2β q·k).

    On unit-norm keys and queries this is exactly the Gaussian kernel (‖q-k‖² = 2 - 2q·k); the toy
    models that switch normalisation off use the same dot-product form on raw keys.
    """

    unit_sphere = True

    def retrieve(self, queries, keys, values, beta, *, mask=None):
        check_memory_args(queries, keys, values, beta, mask)
        scaled = queries * (2 * as_beta(beta, queries))  # (..., Tq, dk): the scale 2β folded in
        if mask is None:
            return F.scaled_dot_product_attention(scaled, keys, values, scale=1.0)
        # A row with no admissible key would come back NaN: let it see every key, then zero it.
        admissible = mask.any(-1, keepdim=True)  # (..., Tq, 1)
        out = F.scaled_dot_product_attention(scaled, keys, values, attn_mask=mask | ~admissible, scale=1.0)
        return torch.where(admissible, out, torch.zeros_like(out))

    def causal(self, keys, values, beta, *, exclude_current=True):
        check_memory_args(keys, keys, values, beta)
        scaled = keys * (2 * as_beta(beta, keys))  # (..., T, dk)
        if not exclude_current:
            return F.scaled_dot_product_attention(scaled, keys, values, is_causal=True, scale=1.0)
        # Strict past without a mask: query t+1 against keys 0..t is ordinary causal attention; y_1 = 0.
        if keys.shape[-2] == 1:
            batch = torch.broadcast_shapes(keys.shape[:-1], values.shape[:-1])
            return values.new_zeros(*batch, values.shape[-1])  # (..., 1, dv)
        shifted = F.scaled_dot_product_attention(scaled[..., 1:, :], keys[..., :-1, :], values[..., :-1, :],
                                                 is_causal=True, scale=1.0)  # (..., T-1, dv)
        return F.pad(shifted, (0, 0, 1, 0))  # (..., T, dv)


# --- the memory unit -----------------------------------------------------------------------------------

class ContextualMemory(HookPoints, nn.Module):
    """`units` contextual memories of width `width` in parallel, reading and writing R^d."""

    def __init__(self, d: int, units: int, width: int | None = None, *, leak: bool = True,
                 normalise: bool = True, beta: float | None = None, gamma: float | None = None,
                 complex_maps: bool = False, memory: str = "gaussian_sphere"):
        super().__init__()
        check_int(d, "d", low=1)
        check_int(units, "units", low=1)
        width = d // units if width is None else check_int(width, "width", low=1)
        if width < 1:
            raise ValueError(f"units must be <= d so that each unit has width >= 1, got d={d}, units={units}")
        if complex_maps and width % 2:
            raise ValueError(f"complex maps need an even unit width (whole 2×2 blocks per unit), got {width}")
        self.units, self.width, self.normalise = units, width, normalise
        self.keys_map = linear(d, units * width, complex_maps=complex_maps)  # W_φ
        self.values_map = linear(d, units * width, complex_maps=complex_maps)  # W_ψ
        self.out_map = linear(units * width, d, complex_maps=complex_maps)  # W_o
        # λ = e^{-|θ_λ|}, θ_λ spread over [0.5, 5] across units: short and long memories side by side.
        self.leak_logit = nn.Parameter(torch.linspace(0.5, 5.0, units)) if leak else None
        # γ ∈ (0, 1) learned per unit (sigmoid), or fixed; α = e^{θ_α} scales normalised values.
        if gamma is None:
            self.gamma_logit = nn.Parameter(torch.logit(torch.empty(units).uniform_(0.05, 0.95)))
        else:
            self.register_buffer("gamma_fixed", torch.full((units,), float(gamma)))
            self.gamma_logit = None
        self.alpha_log = nn.Parameter(torch.full((units,), -0.5)) if normalise else None
        if beta is None:
            self.beta_log = nn.Parameter(torch.full((units,), 2.0))  # β_u = e^{min(θ_β, 10)} ≈ 7.4
        else:
            self.register_buffer("beta_fixed", torch.full((units,), float(beta)))
            self.beta_log = None
        self.memory_name = memory
        self.memory = get_memory(memory)()

    # parameters in the words of the maths
    def leak(self) -> torch.Tensor | None:
        return None if self.leak_logit is None else torch.exp(-self.leak_logit.abs())  # (U,)

    def gamma(self) -> torch.Tensor:
        return self.gamma_fixed if self.gamma_logit is None else torch.sigmoid(self.gamma_logit)  # (U,)

    def beta(self) -> torch.Tensor:
        """β_u, the attention-form scale: on unit keys the Gaussian kernel with β = β_u / 2."""
        return self.beta_fixed if self.beta_log is None else torch.exp(self.beta_log.clamp(max=BETA_CAP))  # (U,)

    def hook_points(self) -> list[str]:
        return ["keys", "values", "weights", "outputs"]

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, U·h) -> (B, U, T, h)."""
        return x.unflatten(-1, (self.units, self.width)).transpose(-3, -2)

    def features(self, x: torch.Tensor, *, path: str = "fast", state: dict | None = None):
        """keys (B, U, T, h), values (B, U, T, h) of inputs x (B, T, d).

        `state`, if given, receives what generation carries on from the last step: the leaky key sum
        k̄_T before normalisation ("key_state", with a leak) and ṽ_T, whose value v_T is unfinished
        until x_{T+1} arrives ("pending"); the last value returned here assumes ṽ_{T+1} = 0.
        """
        keys = self.split(self.keys_map(x))  # (B, U, T, h): W_φ x_t
        if self.leak_logit is not None:
            average = leaky_average if path == "fast" else leaky_average_reference
            keys = average(keys, self.leak().to(keys.dtype))
            if state is not None:
                state["key_state"] = keys[..., -1, :]
        raw = self.split(self.values_map(x))  # (B, U, T, h): ṽ_t = W_ψ x_t
        if state is not None:
            state["pending"] = raw[..., -1, :]
        gamma = self.gamma().to(raw.dtype)[:, None, None]  # (U, 1, 1)
        following = F.pad(raw[..., 1:, :], (0, 0, 0, 1))  # (B, U, T, h): ṽ_{t+1}, ṽ_{T+1} = 0
        values = torch.lerp(following, raw, gamma)  # (B, U, T, h): γ ṽ_t + (1-γ) ṽ_{t+1}
        if self.normalise:
            keys = unit(keys)
            values = unit(values, torch.exp(self.alpha_log).to(raw.dtype)[:, None, None])  # α v̄ / ‖v̄‖
        return keys, values

    def retrieve(self, keys, values, *, path: str = "fast") -> torch.Tensor:
        """(B, U, T, h) outputs over the strict past."""
        beta = self.beta().to(keys.dtype)  # (U,)
        if path == "fast":
            with trusted_inputs():
                return self.memory.causal(keys, values, beta / 2)
        mask = strict_past_mask(keys.shape[-2], device=keys.device)
        if self.normalise:  # unit keys: the Gaussian reference with β = β_u / 2
            return kernel_regression(keys, keys, values, beta / 2, mask=mask)
        return attention_reference(keys, values, beta, mask)

    def forward(self, x: torch.Tensor, *, path: str = "fast", cache: dict | None = None) -> torch.Tensor:
        """Outputs (B, T, d). `cache`, if given, is filled as if x had been fed one step at a time to
        the generation step (keys, finished values, the carried state): a parallel prefill."""
        check_choice(path, "path", {"fast", "reference"})
        keys, values = self.features(x, path=path, state=cache)
        if cache is not None:
            cache["keys"] = keys
            if keys.shape[-2] > 1:
                cache["values"] = values[..., :-1, :]  # v_T waits for x_{T+1}
        outputs = self.retrieve(keys, values, path=path)  # (B, U, T, h)
        if self.wants("weights"):
            self.put("weights", self.attention_weights(keys))
        self.put("keys", keys)
        self.put("values", values)
        self.put("outputs", outputs)
        return self.out_map(outputs.transpose(-3, -2).flatten(-2))  # (B, T, d)

    def attention_weights(self, keys: torch.Tensor) -> torch.Tensor:
        """(B, U, T, T) retrieval weights over the strict past (computed only when asked for)."""
        scores = self.beta().to(keys.dtype)[:, None, None] * keys @ keys.transpose(-1, -2)  # (B, U, T, T)
        mask = strict_past_mask(keys.shape[-2], device=keys.device)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)
        return torch.nan_to_num(weights, nan=0.0)  # the first step sees nothing


def attention_reference(keys, values, beta, mask) -> torch.Tensor:
    """softmax(β_u k_t·k_s) over admissible s, written out: the dot-product form on raw keys."""
    scores = beta[:, None, None] * keys @ keys.transpose(-1, -2)  # (B, U, T, T)
    scores = scores.masked_fill(~mask, float("-inf"))
    admissible = mask.any(-1, keepdim=True)  # (T, 1)
    weights = torch.softmax(torch.where(admissible, scores, torch.zeros_like(scores)), -1) * admissible
    return weights @ values
