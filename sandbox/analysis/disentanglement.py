"""What each memory unit reads (docs/metrics.md): block energies, disentanglement score, attention lags.

With complex 2×2-block maps, block (i, j) of W_φ says how much key pair i reads observation pair j
(moon j). A unit owns some key pairs; its energy on moon j is the sum of its blocks' squared moduli
in column j. The disentanglement score is, per unit, the largest share of its energy on one moon,
averaged over units: 1 when each unit reads a single moon, 1/K when energy is spread evenly.
"""

from __future__ import annotations

import torch


def unit_energy(moduli: torch.Tensor, units: int) -> torch.Tensor:
    """(units, moons) energy of each unit on each moon, from block moduli (key pairs, moons)."""
    pairs, moons = moduli.shape
    if pairs % units:
        raise ValueError(f"{pairs} key pairs do not split evenly into {units} units")
    return moduli.pow(2).reshape(units, pairs // units, moons).sum(1)


def disentanglement_score(moduli: torch.Tensor, units: int) -> tuple[float, list[float]]:
    """(mean score, per-unit scores): each unit's largest share of its energy on a single moon."""
    energy = unit_energy(moduli, units)  # (U, K)
    shares = energy.max(-1).values / energy.sum(-1).clamp_min(1e-30)  # (U,)
    return float(shares.mean()), shares.tolist()


def dominant_lags(weights: torch.Tensor, burn_in: int) -> list[int]:
    """Per unit, the most frequent lag t - s of the largest attention weight over queries t >= burn_in.

    weights: (U, T, T) retrieval weights of one sequence (query t, key s < t).
    """
    units, length, _ = weights.shape
    queries = torch.arange(burn_in, length)
    lags = queries - weights[:, burn_in:].argmax(-1)  # (U, T - burn_in)
    return [int(torch.bincount(lag, minlength=length).argmax()) for lag in lags]
