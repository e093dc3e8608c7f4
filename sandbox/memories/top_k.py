"""Top-k retrieval: the Gaussian kernel restricted to the k nearest keys of each query.

    w_i(q) ∝ exp(-β‖q - k_i‖²) if k_i is among the k nearest admissible keys (ties at the k-th distance,
    to a relative 1e-8, all kept), else 0

Sparse retrieval in the spirit of k-nearest-neighbour regression; with k >= n it is the Gaussian
memory. The k nearest keys are known only once every key is, so it cannot stream in O(1) state.
"""

from __future__ import annotations

import torch

from sandbox.memories.kernel_regression import Kernel
from sandbox.registry import register_kernel

TIE = 1e-8  # relative: log-kernels this close to the k-th largest count as tied with it


@register_kernel("top_k")
class TopKKernel(Kernel):
    """The Gaussian kernel over the k = 4 nearest keys only (a subclass sets another k)."""

    k: int = 4
    gives_up = {
        2: "storing each pair twice fills the k places with fewer distinct keys",
        5: "as β → 0 it gives the mean of the k nearest values, not of all values",
        6: "it drops all but k keys, so it is not softmax attention over all of them",
        8: "the k nearest keys are known only when all keys are, so pairs cannot be folded in one by one",
        10: "with k fixed the noise of k values is never averaged away, so the error stops shrinking",
    }

    def logits(self, queries, keys, beta, *, mask=None):
        logits = super().logits(queries, keys, beta, mask=mask)  # (..., Tq, N)
        if logits.shape[-1] <= self.k:
            return logits
        kth = logits.topk(self.k, dim=-1).values[..., -1:]  # (..., Tq, 1) the k-th largest log-kernel
        # Keys tied with the k-th to rounding are all kept: which of them a rounding error would pick
        # changes when keys and query move together.
        return logits.masked_fill(logits < kth - TIE * kth.abs(), -torch.inf)

    def stream(self, queries, beta):
        raise NotImplementedError("top-k retrieval cannot stream: the k nearest keys are known only once "
                                  "every key has arrived; call retrieve with all of them")
