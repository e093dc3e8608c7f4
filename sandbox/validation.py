"""Checks at the door: every public function validates its arguments here, before any arithmetic,
and names the offending argument and the allowed range in the error (DEVELOPERS.md, rule 5)."""

from __future__ import annotations

import contextlib
import contextvars
import math
from numbers import Real

import torch

# Inside a model, tensors handed from one memory to the next were made by the model itself: scanning
# them for NaN on every call would cost a pass over each tensor. `trusted_inputs()` skips those scans
# (shapes are still checked); a NaN there surfaces as the trainer's non-finite-loss error instead.
_TRUSTED = contextvars.ContextVar("trusted_inputs", default=False)


@contextlib.contextmanager
def trusted_inputs():
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def check_tensor(x, name: str, *, min_rank: int = 1, floating: bool = True) -> torch.Tensor:
    """Return `x` if it is a tensor of rank >= `min_rank` (floating point, finite, if asked)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < min_rank:
        raise ValueError(f"{name} must have at least {min_rank} dimensions, got shape {tuple(x.shape)}")
    if floating:
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        if not _TRUSTED.get() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or infinite entries")
    return x


def check_positive(value, name: str, *, allow_tensor: bool = False):
    """A finite number > 0 (or, if allowed, a tensor whose entries all are)."""
    if isinstance(value, torch.Tensor) and allow_tensor:
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        if not _TRUSTED.get() and not bool((torch.isfinite(value) & (value > 0)).all()):
            raise ValueError(f"{name} must be finite and > 0 everywhere, got {value}")
        return value
    if isinstance(value, bool) or not isinstance(value, Real):
        kind = "a positive float or tensor" if allow_tensor else "a positive number"
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return float(value)


def check_int(value, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """An integer in [low, high] (either bound optional)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def check_bool(value, name: str) -> bool:
    """True or False, nothing else (a string such as "no" would otherwise read as True)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_fraction(value, name: str, *, open_low: bool = False, open_high: bool = False) -> float:
    """A real number in [0, 1], with either end excluded on request."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    ok = (value > 0 if open_low else value >= 0) and (value < 1 if open_high else value <= 1)
    if not ok:
        interval = ("(" if open_low else "[") + "0, 1" + (")" if open_high else "]")
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return float(value)


def check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_unit_norm(x: torch.Tensor, name: str, *, tol: float = 1e-4) -> torch.Tensor:
    """`x` if every vector along its last axis has norm 1 (within tol; zero vectors allowed, the
    normalisation of a zero key); skipped inside `trusted_inputs()`."""
    if not _TRUSTED.get():
        norms = x.norm(dim=-1)
        if not bool(((norms - 1).abs() <= tol).logical_or(norms == 0).all()):
            raise ValueError(f"{name} must have unit norm along the last axis for a kernel defined on the "
                             f"unit sphere (norms from {float(norms.min()):.3g} to {float(norms.max()):.3g}); "
                             "normalise them or choose a whole-space kernel such as 'gaussian' or 'dot_product'")
    return x
