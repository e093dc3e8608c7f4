"""The options of a memory, as one object: a new option is added here and nowhere else.

`MemoryOptions` is a dataclass; the model configs (`MosaicConfig`, `ContextualLayerConfig`) inherit
its fields, so every option is a dotted override (`model.kernel=laplace`, `model.leak=false`), and the
models hand `MemoryOptions.of(config)` down to their memories unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sandbox.validation import check_fraction, check_int, check_positive


@dataclass
class MemoryOptions:
    """leak: leaky-average keys; normalise: unit keys and α-scaled unit values; beta: a fixed kernel β
    for every contextual unit (None: learned per unit); gamma: a fixed peek mix γ (None: learned);
    complex_maps: 2×2-block complex W_φ, W_ψ, W_o; kernel: the retrieval kernel by registry name or
    dotted path (`sandbox memories` lists them). Memory Mosaics v2 (Zhang & Bottou, 2025, §3):
    adaptive_beta: β = β₁ n^α + β₀ grows with the number n of pairs a query sees (contextual memory);
    gated_keys: k̄_t = g_t W_φ x_t + λ_t k̄_{t-1} with g_t = e^{w_g·x_t}, λ_t = e^{-|w_λ·x_t + θ_λ|};
    three_level: a short-term contextual memory over the last `window` steps, a long-term one over
    s <= t - m (m uniform in `lag_range` in training, its low end in evaluation) with their own
    parameters, outputs summed (= concatenated then projected), and a SwiGLU persistent memory."""

    leak: bool = True
    normalise: bool = True
    beta: float | None = None
    gamma: float | None = None
    complex_maps: bool = False
    kernel: str = "dot_product"
    adaptive_beta: bool = False
    gated_keys: bool = False
    three_level: bool = False
    window: int = 64
    lag_range: tuple[int, int] = (64, 256)

    def __post_init__(self):
        if self.beta is not None:
            check_positive(self.beta, "beta")
            if self.adaptive_beta:
                raise ValueError("beta (a fixed β) and adaptive_beta (β grows with the pairs stored) exclude "
                                 "each other: set beta=none or adaptive_beta=false")
        if self.gamma is not None:
            check_fraction(self.gamma, "gamma")
        check_int(self.window, "window", low=2)
        if len(self.lag_range) != 2:
            raise ValueError(f"lag_range must be two integers (low, high), got {self.lag_range}")
        check_int(self.lag_range[0], "lag_range", low=1)
        check_int(self.lag_range[1], "lag_range", low=self.lag_range[0])
        if self.gated_keys and not self.leak:
            raise ValueError("gated_keys gates a leaky average: it needs leak=true")
        kernel = self.kernel_class()  # fail now, not at build time
        if kernel.unit_sphere and not self.normalise:
            raise ValueError(f"kernel {self.kernel!r} is defined on the unit sphere and needs normalise=true; "
                             "for raw keys choose a whole-space kernel such as 'dot_product' or 'gaussian'")

    def kernel_class(self) -> type:
        from sandbox.registry import get_kernel

        return get_kernel(self.kernel)

    def make_kernel(self):
        return self.kernel_class()()

    @classmethod
    def resolve(cls, options: "MemoryOptions | None" = None, **changes) -> "MemoryOptions":
        """`options` (default: the defaults) with some fields changed, validated again."""
        if options is None:
            return cls(**changes)
        if not isinstance(options, cls):
            raise TypeError(f"options must be a {cls.__name__}, got {type(options).__name__}")
        return dataclasses.replace(options, **changes) if changes else options

    @classmethod
    def of(cls, config, **changes) -> "MemoryOptions":
        """The options held by `config` (any object with these fields, e.g. a model config)."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**({n: getattr(config, n) for n in names} | changes))

    @staticmethod
    def upgrade(saved: dict) -> dict:
        """A model section of a config saved before kernels were named `kernel`, in today's terms.

        Then the option was `memory`, and β was the attention scale β_u = 2β; "gaussian_sphere" ran
        dot-product attention on whatever keys it got (raw keys when not normalised, raw persistent
        slots), which is today's "dot_product".
        """
        if "memory" not in saved:
            return saved
        saved = dict(saved)
        old = saved.pop("memory")
        saved["kernel"] = "dot_product" if old == "gaussian_sphere" else old
        if saved.get("beta") is not None:
            saved["beta"] = saved["beta"] / 2
        return saved
