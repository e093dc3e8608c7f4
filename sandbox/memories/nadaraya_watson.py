"""A scikit-learn style Nadaraya-Watson estimator on top of the reference memory (docs/kernel-regression.md).

    model = NadarayaWatson().fit(x_train, y_train)    # β by leave-one-out cross-validation
    y_hat = model.predict(x_test)                       # numpy in, numpy out; torch in, torch out

β is the inverse squared bandwidth, β = 1 / (2 h²): give one of `beta` or `bandwidth`, or neither.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sandbox.memories.kernel_regression import kernel_regression
from sandbox.validation import check_positive, check_tensor

_QUERY_CHUNK = 1024  # rows of the n × n leave-one-out weights formed at once


def _as_2d(x, name: str) -> tuple[torch.Tensor, bool]:
    """(n, d) float64 tensor from numpy or torch input of shape (n,) or (n, d); and whether it was 1-D."""
    if isinstance(x, np.ndarray) or isinstance(x, (list, tuple)):
        x = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")
    if x.dim() not in (1, 2):
        raise ValueError(f"{name} must have shape (n,) or (n, d), got {tuple(x.shape)}")
    was_1d = x.dim() == 1
    x = x.detach().to(torch.float64)
    x = x[:, None] if was_1d else x
    check_tensor(x, name, min_rank=2)
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one row, got shape {tuple(x.shape)}")
    return x, was_1d


def _bandwidth_to_beta(bandwidth: float) -> float:
    """β = 1 / (2 h²); inf where h² underflows to 0 (the caller refuses it)."""
    squared = bandwidth * bandwidth  # inf, not OverflowError, for a huge bandwidth
    return 1.0 / (2.0 * squared) if squared > 0 else math.inf


class NadarayaWatson:
    """Gaussian kernel regression estimator with a fixed or cross-validated bandwidth."""

    def __init__(self, beta: float | None = None, bandwidth: float | None = None):
        if beta is not None and bandwidth is not None:
            raise ValueError("give at most one of beta and bandwidth (beta = 1 / (2 bandwidth²))")
        self.beta = None if beta is None else check_positive(beta, "beta")
        self.bandwidth = None if bandwidth is None else check_positive(bandwidth, "bandwidth")
        if self.bandwidth is not None and not 0 < _bandwidth_to_beta(self.bandwidth) < math.inf:
            raise ValueError(f"bandwidth must be between about 1e-154 and 1e153 (so that β = 1 / (2 bandwidth²) "
                             f"is finite and > 0), got {bandwidth}")

    def fit(self, keys, values) -> "NadarayaWatson":
        self.keys_, _ = _as_2d(keys, "keys")  # (n, dk)
        self.values_, self._values_1d = _as_2d(values, "values")  # (n, dv)
        if self.keys_.shape[0] != self.values_.shape[0]:
            raise ValueError(
                f"keys and values must have the same number of rows, got {self.keys_.shape[0]} "
                f"and {self.values_.shape[0]}"
            )
        if self.beta is not None:
            self.beta_ = self.beta
        elif self.bandwidth is not None:
            self.beta_ = _bandwidth_to_beta(self.bandwidth)
        else:
            self.beta_, self.cv_scores_ = self._cross_validate()
        return self

    def predict(self, queries):
        if not hasattr(self, "beta_"):
            raise ValueError("this NadarayaWatson is not fitted yet: call .fit(keys, values) first")
        is_numpy = not isinstance(queries, torch.Tensor)
        q, _ = _as_2d(queries, "queries")
        if q.shape[1] != self.keys_.shape[1]:
            raise ValueError(f"queries must have {self.keys_.shape[1]} columns like the keys, got {q.shape[1]}")
        out = torch.cat([kernel_regression(chunk, self.keys_, self.values_, self.beta_)
                         for chunk in q.split(_QUERY_CHUNK)])  # (m, dv)
        out = out[:, 0] if self._values_1d else out
        if is_numpy:
            return out.numpy()
        return out.to(dtype=queries.dtype if queries.is_floating_point() else torch.float64,
                      device=queries.device)

    def beta_grid(self, size: int = 40) -> np.ndarray:
        """Candidate β from very smooth (1 / spread²) to very sharp (1 / nearest-neighbour distance²)."""
        keys = self.keys_[torch.randperm(len(self.keys_), generator=torch.Generator().manual_seed(0))[:2048]]
        sq = torch.cdist(keys, keys).pow(2)  # (m, m)
        spread = float(sq.median())
        sq.fill_diagonal_(float("inf"))
        nearest = sq.min(1).values
        nearest = float(nearest[torch.isfinite(nearest) & (nearest > 0)].median()) if len(keys) > 1 else 0.0
        if not spread > 0:  # all keys equal: every β gives the same fit
            return np.array([1.0])
        nearest = nearest if nearest > 0 else spread
        return np.logspace(math.log10(0.01 / spread), math.log10(10.0 / nearest), size)

    def _cross_validate(self) -> tuple[float, dict[float, float]]:
        """β minimising the leave-one-out squared error; the scores per candidate."""
        n = len(self.keys_)
        if n < 2:
            raise ValueError("leave-one-out cross-validation needs at least 2 pairs; give beta or bandwidth")
        scores = {}
        for beta in self.beta_grid():
            error = 0.0
            for rows in torch.arange(n).split(_QUERY_CHUNK):
                mask = torch.ones(len(rows), n, dtype=torch.bool)
                mask[torch.arange(len(rows)), rows] = False  # leave the query's own pair out
                pred = kernel_regression(self.keys_[rows], self.keys_, self.values_, float(beta), mask=mask)
                error += float((pred - self.values_[rows]).pow(2).sum())
            scores[float(beta)] = error / n
        return min(scores, key=scores.get), scores
