"""memory-mosaics-sandbox: networks of kernel-smoothing associative memories that predict sequences.

Start with `sandbox.memories.kernel_regression` (the reference memory) and `sandbox demo`.
"""

__version__ = "0.1.0"
