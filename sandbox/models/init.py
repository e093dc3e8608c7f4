"""Initialisation of the language models, as in GPT-2 and the official Memory Mosaics code.

Every embedding and linear map is drawn from N(0, σ²) with σ = 0.02 and biases start at zero; the
projections that write into the residual stream (the last map of each sublayer) get σ / √(2·layers), so
that the stream's variance does not grow with depth. With the read-out tied to a small embedding, the
initial logits are nearly zero and the first cross-entropy is close to ln V: training starts from the
uniform prediction instead of first unlearning a large random one.
"""

from __future__ import annotations

import math

from torch import nn

from sandbox.layers import ComplexLinear
from sandbox.validation import check_int, check_positive

STD = 0.02


def reference_init(model: nn.Module, *, layers: int, residual: tuple[str, ...], tied: str | None = None,
                   std: float = STD) -> None:
    """Re-draw `model`'s embeddings and linear maps in place: N(0, std²), residual maps N(0, std²/(2·layers)).

    `residual` lists name suffixes of the modules that write into the residual stream (e.g. "proj");
    `tied` names the embedding that is also the read-out (std min(std, 1/d), see above). Other
    parameters (layer norms, memory scalars, persistent slots) keep their own initialisation.
    """
    check_int(layers, "layers", low=1)
    check_positive(std, "std")
    residual_std = std / math.sqrt(2 * layers)
    for name, module in model.named_modules():
        sigma = residual_std if name.endswith(residual) else std
        if tied is not None and name == tied:
            sigma = min(std, 1 / module.weight.shape[-1])
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, sigma)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, ComplexLinear):  # every entry of the real matrix is ±a or ±b
            nn.init.normal_(module.real, 0.0, sigma)
            nn.init.normal_(module.imag, 0.0, sigma)
