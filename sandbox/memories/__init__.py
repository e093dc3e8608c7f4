"""Associative memories: the reference kernel regression, contextual and persistent memories."""

from sandbox.memories.kernel_regression import (
    GaussianMemory,
    KernelMemory,
    OnlineRetrieval,
    causal_kernel_regression,
    kernel_regression,
    kernel_weights,
    strict_past_mask,
)
from sandbox.memories.nadaraya_watson import NadarayaWatson

__all__ = [
    "GaussianMemory",
    "KernelMemory",
    "NadarayaWatson",
    "OnlineRetrieval",
    "causal_kernel_regression",
    "kernel_regression",
    "kernel_weights",
    "strict_past_mask",
]
