"""Laplace kernel: K(q, k) = exp(-β‖q - k‖), exponential in the distance rather than its square.

Heavier tails than the Gaussian: far keys keep more weight, and the estimate is less smooth (the
kernel has a corner at q = k).
"""

from __future__ import annotations

import torch

from sandbox.memories.kernel_regression import Kernel
from sandbox.registry import register_kernel


@register_kernel("laplace")
class LaplaceKernel(Kernel):
    """exp(-β‖q - k‖): heavier tails than the Gaussian."""

    gives_up = {6: "not the Gaussian kernel, so not softmax attention on the sphere"}

    def log_kernel(self, sq_dist, beta):
        # ‖q - k‖ has a corner at q = k: take the subgradient 0 there, not sqrt's infinite slope
        # (a repeated key would otherwise give NaN gradients).
        positive = sq_dist > 0
        return -beta * torch.where(positive, torch.where(positive, sq_dist, 1.0).sqrt(), 0.0)
