"""Epanechnikov kernel: K(q, k) = max(0, 1 - β‖q - k‖²), compact support of radius 1/√β.

The kernel that minimises the asymptotic mean integrated squared error of kernel regression among
second-order kernels. Keys farther than 1/√β from the query get exactly zero weight, so a query far
from every key has no answer (its output is 0, as for a query that may see no key).
"""

from __future__ import annotations

import torch

from sandbox.memories.kernel_regression import Kernel
from sandbox.registry import register_kernel

FAR = "compact support: a query farther than 1/√β from every key has no answer (weights all 0)"


@register_kernel("epanechnikov")
class EpanechnikovKernel(Kernel):
    """max(0, 1 - β‖q - k‖²): compact support, finite reach."""

    gives_up = {
        1: FAR,
        3: FAR,
        5: "compact support: for large β no key is within reach, so the limit is 0, not the nearest value",
        6: "not the Gaussian kernel, so not softmax attention on the sphere",
    }

    def log_kernel(self, sq_dist, beta):
        inside = beta * sq_dist < 1
        # log of the kernel where it is positive; the inner where keeps the gradient finite outside.
        return torch.where(inside, torch.log1p(-torch.where(inside, beta * sq_dist, 0.0)), -torch.inf)
