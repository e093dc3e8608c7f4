"""Dot-product kernels: softmax attention as a kernel memory, with a fused fast path.

    dot_product       K(q, k) = exp(2β q·k)           any keys; the attention of the papers' models
    gaussian_sphere   K(q, k) = exp(-β‖q - k‖²)        unit-norm keys and queries only

On the unit sphere ‖q - k‖² = 2 - 2 q·k, so the two are the same function there and both run as
`scaled_dot_product_attention` with scale 2β. Off the sphere the dot-product kernel is a different
smoother (it favours long keys, not near ones), which is why it gives up three claims; the
three-moons model uses it on raw keys, as the paper does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sandbox.memories.kernel_regression import Kernel, as_beta, check_memory_args
from sandbox.registry import register_kernel
from sandbox.validation import check_positive, check_unit_norm


@register_kernel("dot_product")
class DotProductKernel(Kernel):
    """exp(2β q·k), softmax attention with scale 2β, fused; the Gaussian kernel on unit-norm keys."""

    gives_up = {
        4: "q·k changes when keys and query move together (rotations leave it unchanged)",
        5: "as β grows the weight goes to the largest q·k, the nearest key only on the sphere",
        10: "off the sphere it favours long keys over near ones, so it does not converge to E[V | K = q]",
    }

    def scores(self, queries, keys, beta):
        return 2 * beta * (queries @ keys.transpose(-1, -2))  # (..., Tq, N)

    def check(self, queries, keys) -> None:
        """Refuse inputs outside the kernel's domain (nothing to refuse off the sphere)."""

    def retrieve(self, queries, keys, values, beta, *, mask=None):
        check_memory_args(queries, keys, values, beta, mask)
        self.check(queries, keys)
        return masked_attention(queries * (2 * as_beta(beta, queries)), keys, values, mask)  # the scale 2β folded in

    def retrieve_varying(self, queries, keys, values, beta, *, mask=None):
        check_memory_args(queries, keys, values, check_positive(beta, "beta", allow_tensor=True)[..., 0], mask)
        self.check(queries, keys)
        return masked_attention(queries * (2 * beta[..., None]), keys, values, mask)  # β of query t folded into it

    def causal(self, keys, values, beta, *, exclude_current=True):
        check_memory_args(keys, keys, values, beta)
        self.check(keys, keys)
        scaled = keys * (2 * as_beta(beta, keys))  # (..., T, dk)
        if not exclude_current:
            return F.scaled_dot_product_attention(scaled, keys, values, is_causal=True, scale=1.0)
        return strict_past_attention(scaled, keys, values)

    def causal_varying(self, keys, values, beta):
        check_memory_args(keys, keys, values, check_positive(beta, "beta", allow_tensor=True)[..., 0])
        self.check(keys, keys)
        return strict_past_attention(keys * (2 * beta[..., None]), keys, values)  # β_t folded into query t


def masked_attention(scaled, keys, values, mask) -> torch.Tensor:
    """(..., Tq, dv) softmax(scaled·kᵀ) v over the admissible keys; zero where a query has none."""
    if mask is None:
        return F.scaled_dot_product_attention(scaled, keys, values, scale=1.0)
    # A row with no admissible key would come back NaN: let it see every key, then zero it.
    admissible = mask.any(-1, keepdim=True)  # (..., Tq, 1)
    out = F.scaled_dot_product_attention(scaled, keys, values, attn_mask=mask | ~admissible, scale=1.0)
    return torch.where(admissible, out, torch.zeros_like(out))


def strict_past_attention(queries, keys, values) -> torch.Tensor:
    """(..., T, dv) Σ_{s<t} softmax_s(q_t·k_s) v_s, y_1 = 0, fused and without a materialised mask:
    query t+1 against keys 0..t is ordinary causal attention."""
    if keys.shape[-2] == 1:
        batch = torch.broadcast_shapes(queries.shape[:-1], values.shape[:-1])
        return values.new_zeros(*batch, values.shape[-1])  # (..., 1, dv)
    shifted = F.scaled_dot_product_attention(queries[..., 1:, :], keys[..., :-1, :], values[..., :-1, :],
                                             is_causal=True, scale=1.0)  # (..., T-1, dv)
    return F.pad(shifted, (0, 0, 1, 0))  # (..., T, dv)


@register_kernel("gaussian_sphere")
class SphereGaussianKernel(DotProductKernel):
    """exp(-β‖q - k‖²) on the unit sphere, as fused attention softmax(2β q·k); refuses other keys.

    A memory with this kernel normalises its keys (`normalise=True` is required) and, in the
    persistent memory, its slot keys.
    """

    unit_sphere = True
    gives_up = {}

    def scores(self, queries, keys, beta):
        return Kernel.scores(self, queries, keys, beta)  # the definition: from ‖q - k‖²

    def check(self, queries, keys) -> None:
        check_unit_norm(queries, "queries")
        check_unit_norm(keys, "keys")
