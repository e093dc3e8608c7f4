"""Hypothesis strategies for the property suite: memories, inputs and honest tolerances.

Inputs are drawn in float64 with batch shapes of rank 0-2, up to 8 stored pairs, β from 1e-6 to 1e6 and
key spreads from 1e-3 to 1e3. Keys come in three kinds: Gaussian, on an integer grid (exact ties) and
with duplicated rows. A kernel declared `unit_sphere` gets unit-norm keys and queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from sandbox.registry import get_kernel, list_kernels

EPS = torch.finfo(torch.float64).eps
KERNELS = list_kernels()
MEMORIES = KERNELS  # the earlier name


def memory(name_or_class):
    """An instance of a registered kernel (by name) or of a Kernel class."""
    return get_kernel(name_or_class)() if isinstance(name_or_class, str) else name_or_class()


@dataclass
class Draw:
    """One retrieval problem: queries (..., Tq, dk), keys (..., N, dk), values (..., N, dv), β."""

    queries: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    beta: float | torch.Tensor
    spread: float

    @property
    def max_sq_dist(self) -> float:
        return float((self.queries[..., :, None, :] - self.keys[..., None, :, :]).pow(2).sum(-1).max())

    @property
    def beta_max(self) -> float:
        return float(self.beta.max()) if isinstance(self.beta, torch.Tensor) else self.beta

    @property
    def value_scale(self) -> float:
        """max |v|: tolerances scale with the values themselves, so values of 1e-3 get a tolerance
        1e-3 times that of values of 1 (a `1 +` here would make small-valued draws vacuous)."""
        return float(self.values.abs().max())

    def output_tol(self, factor: float = 1.0) -> float:
        """Absolute tolerance on outputs when two computations of the same weights differ only by
        rounding: the logits -β‖q - k‖² carry an error of order eps·β·‖q - k‖², which moves each weight
        by about as much, relative; plus the rounding of the weighted sum itself."""
        logit_error = 64 * EPS * self.beta_max * (self.max_sq_dist + self.spread**2) * factor
        return self.value_scale * self.keys.shape[-2] * (1e-12 + min(1.0, logit_error))


def normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-300)


def log_uniform(low: float, high: float):
    return st.floats(low, high).map(lambda e: 10.0**e)


@st.composite
def keys_of(draw, gen: torch.Generator, shape: tuple, spread: float, unit_sphere: bool) -> torch.Tensor:
    kind = draw(st.sampled_from(["gaussian", "grid", "duplicates"]))
    if kind == "grid":  # small integers times a power of two: distances are exact, ties are exact
        keys = torch.randint(-3, 4, shape, generator=gen).double() * 2.0 ** round(torch.log2(torch.tensor(spread)).item())
    else:
        keys = torch.randn(shape, generator=gen, dtype=torch.float64) * spread
    if kind == "duplicates" and shape[-2] > 1:
        source = torch.randint(0, shape[-2], (shape[-2],), generator=gen)
        keep = torch.rand(shape[-2], generator=gen) < 0.5
        keys = torch.where(keep[:, None], keys, keys[..., source, :])
    if unit_sphere:
        keys = normalise(keys + (keys.norm(dim=-1, keepdim=True) == 0).double())  # no zero vectors
    return keys


@st.composite
def retrievals(draw, unit_sphere: bool = False, beta_range=(-6.0, 6.0), max_pairs: int = 8,
               tensor_beta: bool = True) -> Draw:
    """A retrieval problem; β is sometimes a tensor with one value per batch element."""
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    tq, n = draw(st.integers(1, 5)), draw(st.integers(1, max_pairs))
    dk, dv = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    spread = 1.0 if unit_sphere else draw(log_uniform(-3, 3))
    keys = draw(keys_of(gen, (*batch, n, dk), spread, unit_sphere))
    if draw(st.booleans()):  # queries at stored keys (exact hits) or anywhere
        queries = keys[..., torch.randint(0, n, (tq,), generator=gen), :]
    else:
        queries = torch.randn((*batch, tq, dk), generator=gen, dtype=torch.float64) * spread
        queries = normalise(queries) if unit_sphere else queries
    values = torch.randn((*batch, n, dv), generator=gen, dtype=torch.float64) * draw(log_uniform(-3, 3))
    beta = draw(log_uniform(*beta_range))
    if tensor_beta and batch and draw(st.booleans()):
        beta = beta * torch.exp(torch.rand(batch, generator=gen, dtype=torch.float64))  # one β per batch item
    return Draw(queries, keys, values, beta, spread)
