"""Small building blocks shared by the models: structured linear maps and opt-in tensor capture."""

from __future__ import annotations

import math

import torch
from torch import nn


class ComplexLinear(nn.Module):
    """A linear map made of 2×2 blocks [[a, -b], [b, a]]: a complex matrix acting on (re, im) pairs.

    Used by the three-moons model (docs/three-moons.md): the modulus |a + ib| of each block says how much
    output pair i reads input pair j, which makes disentanglement visible.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        if in_features % 2 or out_features % 2:
            raise ValueError(f"complex maps need even sizes, got in={in_features}, out={out_features}")
        bound = 1 / math.sqrt(in_features)
        self.real = nn.Parameter(torch.empty(out_features // 2, in_features // 2).uniform_(-bound, bound))
        self.imag = nn.Parameter(torch.empty(out_features // 2, in_features // 2).uniform_(-bound, bound))

    @property
    def weight(self) -> torch.Tensor:
        a, b = self.real, self.imag  # (out/2, in/2)
        blocks = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)  # (o, i, 2, 2)
        return blocks.permute(0, 2, 1, 3).reshape(2 * a.shape[0], 2 * a.shape[1])  # (out, in)

    def block_moduli(self) -> torch.Tensor:
        """(out/2, in/2) moduli |a + ib| of the blocks."""
        return torch.sqrt(self.real**2 + self.imag**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T


def linear(in_features: int, out_features: int, *, complex_maps: bool = False) -> nn.Module:
    """A bias-free linear map, plain or 2×2-block complex."""
    if complex_maps:
        return ComplexLinear(in_features, out_features)
    return nn.Linear(in_features, out_features, bias=False)


class Capture:
    """Opt-in recording of named internal tensors (a forward without a request records nothing).

    A module calls `capture.wants(name)` before computing something expensive only for inspection, and
    `capture.put(name, tensor)` to record it; `Model.run_with_cache` opens a request for chosen names.
    """

    def __init__(self):
        self.requested: set[str] = set()
        self.store: dict[str, torch.Tensor] = {}

    def wants(self, name: str) -> bool:
        return name in self.requested

    def put(self, name: str, tensor: torch.Tensor) -> None:
        if name in self.requested:
            self.store[name] = tensor.detach()


class Inspectable(nn.Module):
    """Mixin for models: `hook_names()` and `run_with_cache(x, names)` over submodules' captures.

    Submodules with a `hook_points()` method (names relative to themselves) and a `capture` attribute
    take part; their full names are the dotted module path plus the point, e.g. `blocks.0.cmem.keys`.
    """

    def _capturing_modules(self):
        for path, module in self.named_modules():
            if hasattr(module, "hook_points") and module is not self:
                yield path, module

    def hook_names(self) -> list[str]:
        return [f"{path}.{point}" for path, module in self._capturing_modules() for point in module.hook_points()]

    def run_with_cache(self, x, names):
        """(outputs, {name: tensor}) for the requested names; unknown names raise ValueError."""
        if isinstance(names, str):
            raise TypeError("names must be a list of hook names, not a single string")
        known = set(self.hook_names())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown hook names {unknown}; model.hook_names() lists the {len(known)} available")
        modules = list(self._capturing_modules())
        results = {}
        try:
            for path, module in modules:
                module.capture = Capture()
                module.capture.requested = {p for p in module.hook_points() if f"{path}.{p}" in names}
            with torch.no_grad():
                outputs = self(x)
            for path, module in modules:
                results.update({f"{path}.{k}": v for k, v in module.capture.store.items()})
        finally:
            for _, module in modules:
                module.capture = None
        return outputs, results


class HookPoints:
    """Mixin for modules with inspectable tensors: list them in `hook_points()`, record with `put`."""

    capture: Capture | None = None

    def hook_points(self) -> list[str]:
        raise NotImplementedError

    def wants(self, name: str) -> bool:
        return self.capture is not None and self.capture.wants(name)

    def put(self, name: str, tensor: torch.Tensor) -> None:
        if self.capture is not None:
            self.capture.put(name, tensor)
