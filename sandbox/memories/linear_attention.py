"""Linear attention: a positive feature map instead of an exponential, K(q, k) = φ(q)·φ(k).

    φ(x) = elu(√β x) + 1 > 0,   w_i(q) = φ(q)·φ(k_i) / Σ_j φ(q)·φ(k_j)

(Katharopoulos et al., ICML 2020.) The causal form needs no T×T matrix: running sums
S_t = Σ_{s<t} φ(k_s) v_sᵀ and z_t = Σ_{s<t} φ(k_s) give y_t = φ(k_t)ᵀ S_t / φ(k_t)·z_t, which is its fast
path here. A contrast to the kernel memories rather than one of them: φ(q)·φ(k) is not a function of
‖q - k‖ and does not concentrate on near keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sandbox.memories.kernel_regression import Kernel, as_beta, check_memory_args
from sandbox.registry import register_kernel

NOT_LOCAL = "φ(q)·φ(k) is not a function of ‖q - k‖"
UNDERFLOW = "φ(x) = eˣ for x < 0 underflows to 0 far out, so a query can be left with no weight at all"


@register_kernel("linear_attention")
class LinearAttentionKernel(Kernel):
    """φ(q)·φ(k) with φ = elu(√β ·) + 1: linear attention, O(T) causal form, no softmax."""

    gives_up = {
        1: UNDERFLOW,
        3: UNDERFLOW,
        4: f"{NOT_LOCAL}: neither translations nor rotations leave it unchanged",
        5: f"{NOT_LOCAL}: large β does not pick the nearest key",
        6: "not the Gaussian kernel, so not softmax attention on the sphere",
        10: f"{NOT_LOCAL}, so the weights do not concentrate near the query and the error does not shrink",
    }

    @staticmethod
    def features(x: torch.Tensor, beta) -> torch.Tensor:
        """φ(x) = elu(√β x) + 1, elementwise (> 0)."""
        return F.elu(x * beta**0.5) + 1

    def scores(self, queries, keys, beta):
        return torch.log(self.features(queries, beta) @ self.features(keys, beta).transpose(-1, -2))

    def causal(self, keys, values, beta, *, exclude_current=True):
        check_memory_args(keys, keys, values, beta)
        phi = self.features(keys, as_beta(beta, keys))  # (..., T, dk)
        sums = (phi[..., :, None] * values[..., None, :]).cumsum(-3)  # (..., T, dk, dv): Σ_{s<=t} φ(k_s) v_sᵀ
        norms = phi.cumsum(-2)  # (..., T, dk): Σ_{s<=t} φ(k_s)
        if exclude_current:  # shift by one: step t sees s < t, and the first step sees nothing
            sums, norms = F.pad(sums, (0, 0, 0, 0, 1, 0))[..., :-1, :, :], F.pad(norms, (0, 0, 1, 0))[..., :-1, :]
        query = phi  # (..., T, dk): the query at t is the key at t
        numerator = (query[..., None] * sums).sum(-2)  # (..., T, dv)
        denominator = (query * norms).sum(-1, keepdim=True)  # (..., T, 1)
        return torch.where(denominator > 0, numerator / torch.where(denominator > 0, denominator, 1.0), 0.0)
