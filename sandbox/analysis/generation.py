"""Free-running prediction error as a function of the context a model has seen (docs/metrics.md)."""

from __future__ import annotations

import torch


@torch.no_grad()
def free_running_error(model, observations: torch.Tensor, contexts, horizon: int = 25) -> list[float]:
    """Mean |generated - truth| over `horizon` free-running steps after each context length.

    observations: (B, T, dim) true sequences with T >= max(contexts) + horizon. For each context c the
    model reads the first c observations, then feeds its own predictions back for `horizon` steps.
    """
    errors = []
    for c in contexts:
        if c < 1 or c + horizon > observations.shape[1]:
            raise ValueError(f"context {c} + horizon {horizon} must fit in the {observations.shape[1]} steps given")
        generated = model.generate(observations[:, :c], horizon)[:, c:]  # (B, horizon, dim)
        errors.append(float((generated - observations[:, c:c + horizon]).abs().mean()))
    return errors
