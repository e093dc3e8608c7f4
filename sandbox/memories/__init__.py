"""Associative memories: kernels (the retrieval rule, one file each), the contextual and persistent
memories that use them, and the options they share."""

from sandbox.memories.kernel_regression import (
    CLAIMS,
    GaussianKernel,
    GaussianMemory,
    Kernel,
    KernelMemory,
    OnlineRetrieval,
    causal_kernel_regression,
    kernel_regression,
    kernel_weights,
    strict_past_mask,
)
from sandbox.memories.nadaraya_watson import NadarayaWatson
from sandbox.memories.options import MemoryOptions

__all__ = [
    "CLAIMS",
    "GaussianKernel",
    "GaussianMemory",
    "Kernel",
    "KernelMemory",
    "MemoryOptions",
    "NadarayaWatson",
    "OnlineRetrieval",
    "causal_kernel_regression",
    "kernel_regression",
    "kernel_weights",
    "strict_past_mask",
]
