"""Contextual memory: the memory unit of a Memory Mosaic, the analogue of an attention head
(docs/contextual-and-persistent-memory.md).

    keys     k̄_t = W_φ x_t + λ k̄_{t-1},        k_t = k̄_t / ‖k̄_t‖           (leaky average of the past)
    values   v̄_t = γ W_ψ x_t + (1-γ) W_ψ x_{t+1}, v_t = α v̄_t / ‖v̄_t‖        (peek one step ahead)
    output   y_t = Σ_{s<t} w_s(k_t) v_s,  y_1 = 0                          (strict past)

with w the weights of the configured kernel (by default softmax(2β k_t·k_s), dot-product attention;
Memory Mosaics, ICLR 2025, §3). Units run in parallel and W_o mixes their outputs. Two paths compute
the same function: `reference` (the T×T decay matrix for the leaky average, and the kernel's weights
written out with an explicit mask) and `fast` (a chunked O(T·C) scan and the kernel's own fast causal
form, fused attention for the dot-product kernels). Tests hold the fast path to the reference for
every registered kernel.

Generation continues a forward pass: `forward(x, cache=...)` reads and updates a cache (the leaky key
sum, the keys, the finished values and the raw value of the last position, which is finished with the
true next input before it is ever retrieved), so the parallel prefill of a prompt and the one-step
`step` are the same code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sandbox.layers import HookPoints, linear
from sandbox.memories.kernel_regression import strict_past_mask
from sandbox.memories.options import MemoryOptions
from sandbox.validation import check_choice, check_int, trusted_inputs

BETA_CAP = 10.0  # θ_β is capped so that β = e^θ / 2 stays finite in half precision
NORM_EPS = 1e-12


def unit(x: torch.Tensor, scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """scale · x / ‖x‖ along the last axis (a zero vector stays zero); scale broadcasts to (..., 1)."""
    return x * (scale / x.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS))


# The per-unit scalars θ_λ, θ_β and θ_α are stored divided by SCALAR_SCALE and multiplied back where they
# are used, as in the official code: Adam moves a parameter by about lr per step whatever its scale, so
# θ then moves 10× faster, at the pace of the weights. Measured against plain storage (one-layer mosaic
# on trigger bigrams, 150 steps: in-context accuracy 0.94 against 0.84 at step 25; two-layer mosaic on
# 100 regular languages, 300 steps: test accuracy .825 against .801, TVD .401 against .439).
SCALAR_SCALE = 10.0


def stored(value: torch.Tensor) -> nn.Parameter:
    """A per-unit scalar parameter holding θ / SCALAR_SCALE; `scaled` gives θ back."""
    return nn.Parameter(value / SCALAR_SCALE)


def scaled(parameter: torch.Tensor) -> torch.Tensor:
    return parameter * SCALAR_SCALE


def learned_beta(log_scale: torch.Tensor) -> torch.Tensor:
    """The kernel β from its parameter θ_β, the log of the attention scale 2β (capped).

    The memories learn θ_β = log(2β) so that softmax(e^θ k·k') reads as attention with scale e^θ, the
    papers' parametrisation; this is the one place where that scale becomes the kernel's β.
    """
    return torch.exp(log_scale.clamp(max=BETA_CAP)) / 2


# --- leaky average ---------------------------------------------------------------------------------

def decay_matrix(log_leak: torch.Tensor, length: int) -> torch.Tensor:
    """(U, T, T) lower-triangular matrix D[t, s] = λ^{t-s} for s <= t, from log λ (U,).

    Powers are formed as exp((t-s)·log λ) with t - s >= 0 only: they underflow to 0, never overflow.
    """
    steps = torch.arange(length, device=log_leak.device)
    lag = (steps[:, None] - steps[None, :]).to(log_leak.dtype)  # (T, T)
    powers = torch.exp(lag.clamp(min=0) * log_leak[:, None, None])  # (U, T, T)
    return powers * (lag >= 0)


def powers(log_leak: torch.Tensor, length: int) -> torch.Tensor:
    """(U, T) λ^{i+1} for i = 0..T-1: how much of a state entering a stretch is left at step i."""
    steps = torch.arange(1, length + 1, device=log_leak.device, dtype=log_leak.dtype)  # (T,)
    return torch.exp(steps * log_leak[:, None])


def _carry_in(out: torch.Tensor, log_leak: torch.Tensor, initial: torch.Tensor | None) -> torch.Tensor:
    """out + λ^{t+1} k̄_0 for a state k̄_0 (..., U, h) carried in from before the first step."""
    if initial is None:
        return out
    return out + powers(log_leak, out.shape[-2])[..., None] * initial[..., None, :]


def leaky_average_reference(x: torch.Tensor, leak: torch.Tensor, initial: torch.Tensor | None = None) -> torch.Tensor:
    """k̄_t = Σ_{s<=t} λ^{t-s} x_s (+ λ^{t+1} k̄_0) for x (..., U, T, h), λ (U,), with the O(T²) decay matrix."""
    log_leak = torch.log(leak)
    return _carry_in(decay_matrix(log_leak, x.shape[-2]) @ x, log_leak, initial)


def leaky_average(x: torch.Tensor, leak: torch.Tensor, chunk: int = 64,
                  initial: torch.Tensor | None = None) -> torch.Tensor:
    """The same as `leaky_average_reference` by a chunked scan: O(T·C) work and O(C²) extra memory."""
    check_int(chunk, "chunk", low=2)
    log_leak = torch.log(leak)
    return _carry_in(_chunked_scan(x, log_leak, chunk), log_leak, initial)


def gated_average_reference(x: torch.Tensor, log_leak: torch.Tensor,
                            initial: torch.Tensor | None = None) -> torch.Tensor:
    """k̄_t = x_t + λ_t k̄_{t-1} with a leak per step: x (..., U, T, h), log λ_t (..., U, T), through the
    T×T matrix D[t, s] = Π_{s<r<=t} λ_r = exp(c_t - c_s), c the running sum of log λ."""
    c = log_leak.cumsum(-1)  # (..., U, T)
    lag = c[..., :, None] - c[..., None, :]  # (..., U, T, T), <= 0 on and below the diagonal
    causal = torch.ones(x.shape[-2], x.shape[-2], dtype=torch.bool, device=x.device).tril()
    out = torch.where(causal, torch.exp(lag.clamp(max=0)), 0.0) @ x
    if initial is None:
        return out
    # The carried state may be float32 where the matmul ran in an autocast dtype: keep the matmul's.
    return (out + torch.exp(c)[..., None] * initial[..., None, :]).to(out.dtype)


def gated_average(x: torch.Tensor, log_leak: torch.Tensor, chunk: int = 64,
                  initial: torch.Tensor | None = None) -> torch.Tensor:
    """The same as `gated_average_reference`, chunk by chunk with the state carried between chunks:
    O(T·C) work and memory instead of O(T²)."""
    check_int(chunk, "chunk", low=2)
    pieces = []
    for start in range(0, x.shape[-2], chunk):
        piece = gated_average_reference(x[..., start:start + chunk, :], log_leak[..., start:start + chunk], initial)
        pieces.append(piece)
        initial = piece[..., -1, :]
    return torch.cat(pieces, -2)


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
    into = powers(log_leak, chunk)  # (U, C): λ^{i+1} carries the entering state to step i
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


# --- the memory unit -----------------------------------------------------------------------------------

class ContextualMemory(HookPoints, nn.Module):
    """`units` contextual memories of width `width` in parallel, reading and writing R^d.

    Options come as one `MemoryOptions` (or as its fields by keyword: `ContextualMemory(8, 2, leak=False)`).
    """

    def __init__(self, d: int, units: int, width: int | None = None, options: MemoryOptions | None = None,
                 *, window: int | None = None, lag: tuple[int, int] | None = None, **changes):
        super().__init__()
        check_int(d, "d", low=1)
        check_int(units, "units", low=1)
        options = MemoryOptions.resolve(options, **changes)
        # Which part of the past a query sees (Memory Mosaics v2's three-level memory): all of it by
        # default; with `window` h only s > t - h (short term); with `lag` (m_low, m_high) only s <= t - m,
        # m drawn uniformly from [m_low, m_high] at each training forward and m = m_low in evaluation.
        self.window = None if window is None else check_int(window, "window", low=2)
        if lag is not None:
            check_int(lag[0], "lag", low=1)
            check_int(lag[1], "lag", low=lag[0])
        self.lag = lag
        width = d // units if width is None else check_int(width, "width", low=1)
        if width < 1:
            raise ValueError(f"units must be <= d so that each unit has width >= 1, got d={d}, units={units}")
        if options.complex_maps and width % 2:
            raise ValueError(f"complex maps need an even unit width (whole 2×2 blocks per unit), got {width}")
        self.units, self.width, self.options = units, width, options
        self.keys_map = linear(d, units * width, complex_maps=options.complex_maps)  # W_φ
        self.values_map = linear(d, units * width, complex_maps=options.complex_maps)  # W_ψ
        self.out_map = linear(units * width, d, complex_maps=options.complex_maps)  # W_o
        # λ = e^{-|θ_λ|}, θ_λ spread over [0.5, 5] across units: short and long memories side by side.
        self.leak_logit = stored(torch.linspace(0.5, 5.0, units)) if options.leak else None
        # γ ∈ (0, 1) learned per unit (sigmoid), or fixed; α = e^{θ_α} scales normalised values.
        if options.gamma is None:
            self.gamma_logit = nn.Parameter(torch.logit(torch.empty(units).uniform_(0.05, 0.95)))
        else:
            self.register_buffer("gamma_fixed", torch.full((units,), float(options.gamma)))
            self.gamma_logit = None
        self.alpha_log = stored(torch.full((units,), -0.5)) if options.normalise else None
        if options.gated_keys:  # g_t = e^{w_g·x_t}, λ_t = e^{-|w_λ·x_t + θ_λ|}: at initialisation those of v1
            self.gate_map = nn.Linear(d, units, bias=False)  # w_g
            self.leak_map = nn.Linear(d, units, bias=False)  # w_λ
            nn.init.zeros_(self.gate_map.weight)
            nn.init.zeros_(self.leak_map.weight)
        if options.adaptive_beta:  # β = β₁ n^α + β₀: β₁ as the fixed-size β, α = σ(θ_α) ≈ 0.12, β₀ = softplus(θ₀)
            self.beta_power_logit = nn.Parameter(torch.full((units,), -2.0))
            self.beta_floor_logit = nn.Parameter(torch.full((units,), 0.0))
        if options.beta is None:
            self.beta_log = stored(torch.full((units,), 2.0))  # θ_β = log 2β: β ≈ 3.7
        else:
            self.register_buffer("beta_kernel", torch.full((units,), float(options.beta)))
            self.beta_log = None
        self.kernel = options.make_kernel()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints from before the one β convention kept a fixed attention scale 2β as "beta_fixed".
        if prefix + "beta_fixed" in state_dict:
            state_dict[prefix + "beta_kernel"] = state_dict.pop(prefix + "beta_fixed") / 2
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # parameters in the words of the maths
    def leak(self) -> torch.Tensor | None:
        return None if self.leak_logit is None else torch.exp(-scaled(self.leak_logit).abs())  # (U,)

    def gamma(self) -> torch.Tensor:
        return self.gamma_fixed if self.gamma_logit is None else torch.sigmoid(self.gamma_logit)  # (U,)

    def beta(self, pairs: torch.Tensor | None = None) -> torch.Tensor:
        """The kernel β per unit (U,); with adaptive_beta, per unit and query (U, Tq) for queries that
        see `pairs` (Tq,) stored pairs each: β = β₁ n^α + β₀."""
        base = self.beta_kernel if self.beta_log is None else learned_beta(scaled(self.beta_log))  # (U,)
        if not self.options.adaptive_beta:
            return base
        if pairs is None:
            raise ValueError("an adaptive β depends on the number of pairs stored: give pairs (Tq,)")
        power = torch.sigmoid(self.beta_power_logit)[:, None]  # (U, 1): α ∈ (0, 1)
        n = pairs.to(base.dtype).clamp_min(1)[None, :]  # (1, Tq); a query that sees nothing has no output
        return base[:, None] * n**power + F.softplus(self.beta_floor_logit)[:, None]  # (U, Tq)

    def hook_points(self) -> list[str]:
        return ["keys", "values", "weights", "outputs"]

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, U·h) -> (B, U, T, h)."""
        return x.unflatten(-1, (self.units, self.width)).transpose(-3, -2)

    def features(self, x: torch.Tensor, *, path: str = "fast", state: dict | None = None):
        """keys k_t (B, U, T, h), values v_t (B, U, T, h) of inputs x (B, T, d), and the value finished
        by this call's first input (B, U, 1, h), or None.

        `state`, a generation cache, continues an earlier call: it holds the leaky key sum k̄ of the last
        position ("key_state") and its raw value ṽ ("pending"), whose value is unfinished until the
        next input arrives; both are updated here. The last value returned assumes ṽ_{T+1} = 0.
        """
        state = {} if state is None else state
        keys = self.split(self.keys_map(x))  # (B, U, T, h): W_φ x_t
        if self.options.gated_keys:
            gates = torch.exp(self.gate_map(x).clamp(max=10)).transpose(-1, -2)  # (B, U, T): g_t
            log_leak = -(self.leak_map(x) + scaled(self.leak_logit)).abs().transpose(-1, -2)  # (B, U, T): log λ_t
            average = gated_average if path == "fast" else gated_average_reference
            keys = average(keys * gates[..., None], log_leak, initial=state.get("key_state"))
            state["key_state"] = keys[..., -1, :]
        elif self.leak_logit is not None:
            average = leaky_average if path == "fast" else leaky_average_reference
            keys = average(keys, self.leak().to(keys.dtype), initial=state.get("key_state"))
            state["key_state"] = keys[..., -1, :]
        raw = self.split(self.values_map(x))  # (B, U, T, h): ṽ_t = W_ψ x_t
        pending = state.get("pending")
        state["pending"] = raw[..., -1, :]
        if pending is not None:
            raw = torch.cat([pending[..., None, :], raw], -2)  # (B, U, 1+T, h)
        gamma = self.gamma().to(raw.dtype)[:, None, None]  # (U, 1, 1)
        following = F.pad(raw[..., 1:, :], (0, 0, 0, 1))  # ṽ_{t+1}, ṽ_{T+1} = 0
        values = torch.lerp(following, raw, gamma)  # γ ṽ_t + (1-γ) ṽ_{t+1}
        if self.options.normalise:
            keys = unit(keys)
            values = unit(values, torch.exp(scaled(self.alpha_log)).to(raw.dtype)[:, None, None])  # α v̄ / ‖v̄‖
        if pending is None:
            return keys, values, None
        return keys, values[..., 1:, :], values[..., :1, :]

    def retrieve(self, queries, keys, values, *, mask=None, path: str = "fast", pairs=None) -> torch.Tensor:
        """(B, U, Tq, h) outputs of the kernel for queries (B, U, Tq, h) over pairs (B, U, N, h);
        `pairs` (Tq,): how many pairs each query sees (for an adaptive β)."""
        beta = self.beta(pairs).to(queries.dtype)  # (U,) or (U, Tq)
        if beta.dim() == 2 and path == "fast":  # one β per query: the kernel's own form (β folded into q)
            with trusted_inputs():
                return self.kernel.retrieve_varying(queries, keys, values, beta, mask=mask)
        if beta.dim() == 2:  # the definition: Tq one-query problems side by side
            queries, keys, values = queries[..., :, None, :], keys[..., None, :, :], values[..., None, :, :]
            mask = None if mask is None else mask[..., :, None, :]
            return self.retrieve_with(queries, keys, values, beta, mask, path)[..., 0, :]
        return self.retrieve_with(queries, keys, values, beta, mask, path)

    def retrieve_with(self, queries, keys, values, beta, mask, path: str) -> torch.Tensor:
        with trusted_inputs():  # made by this module: shapes are checked, values are not rescanned
            if path == "fast":
                return self.kernel.retrieve(queries, keys, values, beta, mask=mask)
            return self.kernel.weights(queries, keys, beta, mask=mask) @ values  # the definition

    def visible(self, queries: torch.Tensor, keys: torch.Tensor, lag: int | None = None) -> torch.Tensor:
        """(Tq, N) bool: may the query at position `queries` (Tq,) see the key at `keys` (N,)? The strict
        past, cut to the window and the lag if the memory has them."""
        seen = keys[None, :] < queries[:, None]
        if self.window is not None:
            seen &= keys[None, :] > queries[:, None] - self.window
        if lag is not None:
            seen &= keys[None, :] <= queries[:, None] - lag
        return seen

    def current_lag(self) -> int | None:
        if self.lag is None:
            return None
        low, high = self.lag
        return int(torch.randint(low, high + 1, ())) if self.training else low

    def causal(self, keys, values, *, path: str = "fast") -> torch.Tensor:
        """(B, U, T, h) outputs over the strict past of one sequence of keys and values."""
        length = keys.shape[-2]
        pairs = torch.arange(length, device=keys.device)  # query t sees t pairs
        if path == "fast":
            with trusted_inputs():
                if self.options.adaptive_beta:
                    return self.kernel.causal_varying(keys, values, self.beta(pairs).to(keys.dtype))
                return self.kernel.causal(keys, values, self.beta().to(keys.dtype))
        return self.retrieve(keys, keys, values, mask=strict_past_mask(length, device=keys.device), path=path,
                             pairs=pairs)

    def forward(self, x: torch.Tensor, *, path: str = "fast", cache: dict | None = None) -> torch.Tensor:
        """Outputs (B, T, d) of inputs x (B, T, d).

        `cache`, if given, is a generation cache: x continues the positions it holds (none for a fresh
        dict), and it is left holding these too. A prompt fills it in one parallel pass (prefill); a
        single position is one generation step.
        """
        check_choice(path, "path", {"fast", "reference"})
        past = cache["keys"].shape[-2] if cache is not None and "keys" in cache else 0
        keys, values, finished = self.features(x, path=path, state=cache)
        length, lag = keys.shape[-2], self.current_lag()
        plain = self.window is None and lag is None
        if past == 0:
            all_keys, all_values = keys, values
        else:
            all_keys = torch.cat([cache["keys"], keys], -2)  # (B, U, P+T, h)
            all_values = torch.cat([cache["values"], finished, values], -2)  # the last one unfinished
        positions = torch.arange(past, past + length, device=keys.device)  # (T,) of the queries
        if past == 0 and plain:
            outputs = self.causal(keys, values, path=path)  # (B, U, T, h): the fused strict past
        elif past + length == 1:  # the first position of all: nothing stored yet
            outputs = torch.zeros_like(values)
        else:
            mask = self.visible(positions, torch.arange(past + length - 1, device=keys.device), lag)  # (T, P+T-1)
            outputs = self.retrieve(keys, all_keys[..., :-1, :], all_values[..., :-1, :], path=path,
                                    mask=None if plain and length == 1 else mask, pairs=mask.sum(-1))
        if cache is not None:
            cache["keys"], cache["values"] = all_keys, all_values[..., :-1, :]  # v_T waits for x_{T+1}
        if self.wants("weights"):
            self.put("weights", self.attention_weights(keys, lag))
        self.put("keys", keys)
        self.put("values", values)
        self.put("outputs", outputs)
        return self.out_map(outputs.transpose(-3, -2).flatten(-2))  # (B, T, d)

    def step(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        """One generation step: x_t (B, d) -> y_t (B, d), continuing `cache`."""
        return self(x[:, None], cache=cache)[:, 0]

    def attention_weights(self, keys: torch.Tensor, lag: int | None = None) -> torch.Tensor:
        """(B, U, T, T) the kernel's retrieval weights over the visible past (computed only when asked for)."""
        positions = torch.arange(keys.shape[-2], device=keys.device)
        mask = self.visible(positions, positions, lag)  # (T, T)
        beta = self.beta(mask.sum(-1)).to(keys.dtype)  # (U,) or (U, T)
        with trusted_inputs():
            if beta.dim() == 2:  # one β per query
                return self.kernel.weights(keys[..., :, None, :], keys[..., None, :, :], beta, mask=mask[:, None, :])[..., 0, :]
            return self.kernel.weights(keys, keys, beta, mask=mask)

