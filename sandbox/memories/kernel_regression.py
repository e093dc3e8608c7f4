"""The reference associative memory: Gaussian Nadaraya-Watson kernel regression (docs/kernel-regression.md).

    f(q) = Σ_i w_i(q) v_i,   w_i(q) = exp(-β‖q - k_i‖²) / Σ_j exp(-β‖q - k_j‖²)

Written for a reader and for float64 ground truth: squared distances are formed from explicit
differences (no ‖q‖² - 2q·k + ‖k‖² cancellation) and normalised with log-sum-exp, so the weights stay
finite for any β > 0 and any key spread. Every fast path in the package is held to this file.

`Kernel` is the base class of every registered kernel: a variant states its `log_kernel` and inherits
weights, retrieval, the causal sequence form and streaming; a fast path overrides `retrieve`/`causal`.
"""

from __future__ import annotations

import torch

from sandbox.registry import register_kernel
from sandbox.validation import check_bool, check_positive, check_tensor


def check_memory_args(queries, keys, values, beta, mask=None) -> torch.Size:
    """Validate a retrieval call; return the broadcast batch shape `...`."""
    check_tensor(queries, "queries", min_rank=2)
    check_tensor(keys, "keys", min_rank=2)
    if values is not None:
        check_tensor(values, "values", min_rank=2)
        if values.shape[-2] != keys.shape[-2]:
            raise ValueError(
                f"keys and values must hold the same number of pairs N, got keys {tuple(keys.shape)} "
                f"(N={keys.shape[-2]}) and values {tuple(values.shape)} (N={values.shape[-2]})"
            )
    if keys.shape[-2] == 0:
        raise ValueError(f"keys must hold at least one pair (N >= 1), got shape {tuple(keys.shape)}")
    if queries.shape[-1] != keys.shape[-1]:
        raise ValueError(
            f"queries and keys must share the key dimension dk, got queries {tuple(queries.shape)} "
            f"and keys {tuple(keys.shape)}"
        )
    tensors = [("queries", queries), ("keys", keys)] + ([("values", values)] if values is not None else [])
    for name, t in tensors[1:]:
        if t.dtype != queries.dtype:
            raise TypeError(f"{name} must have the dtype of queries ({queries.dtype}), got {t.dtype}")
        if t.device != queries.device:
            raise ValueError(f"{name} must be on the device of queries ({queries.device}), got {t.device}")
    try:
        batch = torch.broadcast_shapes(*(t.shape[:-2] for _, t in tensors))
    except RuntimeError:
        shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in tensors)
        raise ValueError(f"batch dimensions (all but the last two) must broadcast, got {shapes}") from None
    check_positive(beta, "beta", allow_tensor=True)
    if isinstance(beta, torch.Tensor):
        try:  # β may not add batch dimensions of its own: (7,) against batch () is an error
            if torch.broadcast_shapes(beta.shape, batch) != batch:
                raise RuntimeError
        except RuntimeError:
            raise ValueError(
                f"beta must be a float or a tensor broadcastable to the batch dimensions {tuple(batch)}, "
                f"got shape {tuple(beta.shape)}"
            ) from None
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = may attend), got {type(mask).__name__}"
                            + (f" of dtype {mask.dtype}" if isinstance(mask, torch.Tensor) else ""))
        want = (*batch, queries.shape[-2], keys.shape[-2])
        try:
            if torch.broadcast_shapes(mask.shape, want) != torch.Size(want):
                raise RuntimeError
        except RuntimeError:
            raise ValueError(f"mask must broadcast to (..., Tq, N) = {want}, got {tuple(mask.shape)}") from None
    return batch


def as_beta(beta, like: torch.Tensor):
    """β as a float or as a tensor shaped to broadcast against (..., Tq, N) scores."""
    if isinstance(beta, torch.Tensor):
        return beta.to(dtype=like.dtype, device=like.device)[..., None, None]
    return float(beta)


def strict_past_mask(length: int, *, exclude_current: bool = True, device=None) -> torch.Tensor:
    """(T, T) bool mask, True where query t may see key s: s < t (or s <= t)."""
    check_bool(exclude_current, "exclude_current")
    return torch.ones(length, length, dtype=torch.bool, device=device).tril(-1 if exclude_current else 0)


# The claims of the property suite (`tests/property/test_claims.py`), by number. A kernel that gives
# one up names it in `gives_up` with the reason; the suite then runs it as a strict expected failure.
CLAIMS = {
    1: "convex weights", 2: "permutation and duplication", 3: "constants and affine values",
    4: "translation and rotation invariance", 5: "bandwidth limits", 6: "softmax-attention identity",
    7: "gradcheck", 8: "streaming equals batch", 9: "causality", 10: "consistency",
}


class Kernel:
    """A kernel-smoothing associative memory. Subclasses state `log_kernel`; everything else follows.

    β is always the inverse squared bandwidth of the Gaussian kernel exp(-β‖q - k‖²), the β of
    `kernel_regression`; the memory modules convert their learned scale to it in one place. `unit_sphere = True` declares a kernel defined only for unit-norm keys and queries (a
    dot-product fast path): the memories then normalise what they give it, and the property suite draws
    its inputs on the sphere. `gives_up` maps claim numbers (see `CLAIMS`) to the reason the kernel
    does not satisfy them.

    Every path of every memory goes through the same kernel: `weights` is the definition (used by the
    reference paths and by the recorded attention maps), `retrieve` and `causal` may be fused fast
    paths held to it, and `stream` folds pairs in chunk by chunk.
    """

    unit_sphere: bool = False
    gives_up: dict[int, str] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        unknown = set(cls.gives_up) - set(CLAIMS)
        if unknown or not all(isinstance(r, str) and r for r in cls.gives_up.values()):
            raise ValueError(f"{cls.__qualname__}.gives_up must map claim numbers {sorted(CLAIMS)} to a "
                             f"non-empty reason, got {cls.gives_up!r}")

    def log_kernel(self, sq_dist: torch.Tensor, beta) -> torch.Tensor:
        """log K(q, k) up to a per-query constant, from ‖q - k‖² (..., Tq, N). Gaussian by default."""
        return -beta * sq_dist

    def scores(self, queries: torch.Tensor, keys: torch.Tensor, beta) -> torch.Tensor:
        """(..., Tq, N) log-kernel values, unmasked and unchecked (the one place a kernel is evaluated).

        `beta` is a float or a tensor already shaped to broadcast against (..., Tq, N). A kernel that
        is not a function of ‖q - k‖² overrides this instead of `log_kernel`.
        """
        diff = queries[..., :, None, :] - keys[..., None, :, :]  # (..., Tq, N, dk)
        return self.log_kernel(diff.pow(2).sum(-1), beta)

    def logits(self, queries, keys, beta, *, mask=None) -> torch.Tensor:
        """(..., Tq, N) log-kernel values; -inf where the mask forbids a pair."""
        check_memory_args(queries, keys, None, beta, mask)
        logits = self.scores(queries, keys, as_beta(beta, queries))  # (..., Tq, N)
        return logits if mask is None else logits.masked_fill(~mask, float("-inf"))

    def weights(self, queries, keys, beta, *, mask=None) -> torch.Tensor:
        """(..., Tq, N) retrieval weights; rows sum to 1, or are all 0 where no key is admissible
        (masked out, or outside a compactly supported kernel).

        Log-sum-exp in its softmax form: subtracting the row maximum makes every exponent <= 0 (no
        overflow for any β or key spread) and dividing by the sum keeps Σw = 1 to within N·eps.
        """
        logits = self.logits(queries, keys, beta, mask=mask)
        # A row with no admissible key is normalised against zeros instead, then zeroed: its weights
        # are exactly 0 and its gradient is 0, never NaN.
        admissible = torch.isfinite(logits).any(-1, keepdim=True)  # (..., Tq, 1)
        weights = torch.softmax(torch.where(admissible, logits, torch.zeros_like(logits)), -1)
        return torch.where(admissible, weights, torch.zeros_like(weights))

    def retrieve(self, queries, keys, values, beta, *, mask=None) -> torch.Tensor:
        """(..., Tq, dv) outputs f(q) for queries (..., Tq, dk), keys (..., N, dk), values (..., N, dv)."""
        check_memory_args(queries, keys, values, beta, mask)
        return self.weights(queries, keys, beta, mask=mask) @ values

    def causal(self, keys, values, beta, *, exclude_current: bool = True) -> torch.Tensor:
        """Sequence form: the query at t is the key at t and sees pairs s < t (s <= t if not excluded)."""
        check_tensor(keys, "keys", min_rank=2)
        mask = strict_past_mask(keys.shape[-2], exclude_current=exclude_current, device=keys.device)
        return self.retrieve(keys, keys, values, beta, mask=mask)

    def retrieve_varying(self, queries, keys, values, beta: torch.Tensor, *, mask=None) -> torch.Tensor:
        """(..., Tq, dv) outputs with one β per query: beta (..., Tq) broadcasting against the batch and
        time of queries (..., Tq, dk). Written as Tq one-query problems side by side."""
        mask = None if mask is None else mask[..., :, None, :]  # (..., Tq, 1, N)
        out = self.retrieve(queries[..., :, None, :], keys[..., None, :, :], values[..., None, :, :], beta, mask=mask)
        return out[..., 0, :]

    def causal_varying(self, keys, values, beta: torch.Tensor) -> torch.Tensor:
        """Strict-past sequence form with one β per query position: beta (..., T) broadcasting against
        the batch and time of keys (..., T, dk). Written as T one-query problems side by side."""
        check_tensor(keys, "keys", min_rank=2)
        mask = strict_past_mask(keys.shape[-2], device=keys.device)[:, None, :]  # (T, 1, T)
        out = self.retrieve(keys[..., :, None, :], keys[..., None, :, :], values[..., None, :, :], beta, mask=mask)
        return out[..., 0, :]  # (..., T, dv)

    def stream(self, queries, beta) -> "OnlineRetrieval":
        """An empty memory for fixed queries, filled pair by pair (or chunk by chunk) with `.store`."""
        return OnlineRetrieval(self, queries, beta)


KernelMemory = Kernel  # the earlier name, kept so that existing variants still import


class OnlineRetrieval:
    """Streaming retrieval: pairs arrive in chunks, the outputs are kept as running log-sum-exp sums.

    After storing chunks C_1..C_m, `.outputs()` equals `kernel.retrieve(queries, cat(C), ...)`
    (claim 8) while holding only O(Tq · dv) state, whatever the number of pairs. A chunk none of whose
    keys is in a compactly supported kernel's reach (log K = -inf) adds nothing, never NaN.
    """

    def __init__(self, kernel: Kernel, queries: torch.Tensor, beta):
        check_tensor(queries, "queries", min_rank=2)
        check_positive(beta, "beta", allow_tensor=True)
        self.kernel, self.queries, self.beta = kernel, queries, beta
        self.max_logit = None  # (..., Tq, 1) running maximum of the log kernel (-inf: nothing in reach)
        self.total = None  # (..., Tq, 1)  Σ exp(logit - max)
        self.weighted = None  # (..., Tq, dv) Σ exp(logit - max) v

    def store(self, keys: torch.Tensor, values: torch.Tensor) -> "OnlineRetrieval":
        check_memory_args(self.queries, keys, values, self.beta)
        logits = self.kernel.scores(self.queries, keys, as_beta(self.beta, self.queries))  # (..., Tq, n)
        chunk_max = logits.amax(-1, keepdim=True)  # (..., Tq, 1)
        new_max = chunk_max if self.max_logit is None else torch.maximum(self.max_logit, chunk_max)
        # Shift by a finite number: where nothing is in reach yet, -inf - (-inf) would be NaN.
        shift = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
        p = (logits - shift).exp()  # (..., Tq, n)
        total, weighted = p.sum(-1, keepdim=True), p @ values
        if self.max_logit is not None:
            old_scale = (self.max_logit - shift).exp()  # (..., Tq, 1); 0 where nothing was in reach
            total, weighted = total + old_scale * self.total, weighted + old_scale * self.weighted
        self.max_logit, self.total, self.weighted = new_max, total, weighted
        return self

    def outputs(self) -> torch.Tensor:
        """(..., Tq, dv); zeros for a query no stored key reaches, as in the batch form."""
        if self.total is None:
            raise ValueError("the memory is empty: store at least one (key, value) pair before querying")
        reached = self.total > 0
        return torch.where(reached, self.weighted / torch.where(reached, self.total, 1.0), 0.0)


@register_kernel("gaussian")
class GaussianKernel(Kernel):
    """The reference: Gaussian kernel on the whole space, exp(-β‖q - k‖²)."""


GaussianMemory = GaussianKernel  # the earlier name
_REFERENCE = GaussianKernel()


def kernel_weights(queries, keys, values, beta, *, mask=None) -> torch.Tensor:
    """Gaussian retrieval weights (..., Tq, N); `values` (or None) is checked, not used."""
    check_memory_args(queries, keys, values, beta, mask)
    return _REFERENCE.weights(queries, keys, beta, mask=mask)


def kernel_regression(queries, keys, values, beta, *, mask=None) -> torch.Tensor:
    """Gaussian Nadaraya-Watson outputs (..., Tq, dv); a query with no admissible key gives zeros."""
    return _REFERENCE.retrieve(queries, keys, values, beta, mask=mask)


def causal_kernel_regression(keys, values, beta, exclude_current: bool = True) -> torch.Tensor:
    """Sequence form over keys (..., T, dk), values (..., T, dv): query t sees s < t (or s <= t)."""
    check_bool(exclude_current, "exclude_current")
    return _REFERENCE.causal(keys, values, beta, exclude_current=exclude_current)
