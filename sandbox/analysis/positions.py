"""Loss per token position: how fast a model learns in context (docs/language-modelling.md).

Position t (1-based) is the prediction of token t + 1 from the t tokens before it; a model that learns
in context faster has lower loss at small t. The mean over positions is the ordinary loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sandbox.validation import check_int


@torch.no_grad()
def position_losses(model, task, split: str, batches: int, batch_size: int, device="cpu") -> torch.Tensor:
    """Cross-entropy (T,) at each position, averaged over the `batches` fixed batches of `split`."""
    check_int(batches, "batches", low=1)
    check_int(batch_size, "batch_size", low=1)
    was_training = model.training
    model.eval()
    total = torch.zeros(task.seq_len, dtype=torch.float64)
    count = torch.zeros(task.seq_len, dtype=torch.float64)
    for index in range(batches):
        batch = task.batch(split, index, batch_size, device)
        logits = model(batch.inputs).float()  # (B, T, V)
        losses = F.cross_entropy(logits.transpose(1, 2), batch.targets, ignore_index=-100, reduction="none")  # (B, T)
        kept = batch.targets != -100  # (B, T)
        total += losses.double().mul(kept).sum(0).cpu()
        count += kept.sum(0).double().cpu()
    model.train(was_training)
    return total / count.clamp_min(1)


def band_means(losses, edges) -> dict[str, float]:
    """Mean loss over position bands: edges (e1 < e2 < ...) give bands 1..e1, e1+1..e2, ... (1-based)."""
    losses = torch.as_tensor(losses, dtype=torch.float64)
    bands, start = {}, 1
    for end in edges:
        check_int(end, "band edge", low=start, high=len(losses))
        bands[f"{start}-{end}"] = float(losses[start - 1:end].mean())
        start = end + 1
    return bands
