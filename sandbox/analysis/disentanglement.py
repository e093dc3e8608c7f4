"""What each memory unit reads (docs/metrics.md): unit → moon assignment, disentanglement score.

With complex 2×2-block maps, block (i, j) of W_φ says how much key pair i reads observation pair j
(moon j). A unit owns some key pairs; its energy on moon j is the sum of its blocks' squared moduli in
column j, and its shares are these energies divided by their sum.

- `moon_assignment`: the moons a unit reads, the fewest whose shares add up to 90% of its energy. A
  unit whose keys read one moon only is assigned that moon, one reading all moons evenly all of them.
  (The attention lags cannot tell this: the periods 44.4, 88.9 and 133.3 steps are in ratio 1 : 2 : 3,
  so a unit matching the 88.9-step moon also finds the 44.4-step moon in phase at every lag it uses.)
- `disentanglement_score`: per unit, its largest share rescaled from [1/K, 1] to [0, 1], averaged over
  units: 1 when every unit reads a single moon, 0 when every unit reads all K moons evenly.
"""

from __future__ import annotations

import torch

COVERAGE = 0.9


def unit_energy(moduli: torch.Tensor, units: int) -> torch.Tensor:
    """(units, moons) energy of each unit on each moon, from block moduli (key pairs, moons)."""
    if moduli.dim() != 2:
        raise ValueError(f"moduli must be a (key pairs, moons) matrix, got shape {tuple(moduli.shape)}")
    pairs, moons = moduli.shape
    if units < 1 or pairs % units:
        raise ValueError(f"{pairs} key pairs do not split evenly into units={units}")
    return moduli.pow(2).reshape(units, pairs // units, moons).sum(1)


def energy_shares(moduli: torch.Tensor, units: int) -> torch.Tensor:
    """(units, moons) share of each unit's energy on each moon (rows sum to 1; a silent unit is even)."""
    energy = unit_energy(moduli, units)  # (U, K)
    total = energy.sum(-1, keepdim=True)
    even = torch.full_like(energy, 1 / energy.shape[-1])
    return torch.where(total > 0, energy / total.clamp_min(1e-30), even)


def moon_assignment(moduli: torch.Tensor, units: int, coverage: float = COVERAGE) -> list[list[int]]:
    """Per unit, the moons it reads (sorted): the fewest moons holding `coverage` of its energy."""
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    shares = energy_shares(moduli, units)  # (U, K)
    assignment = []
    for row in shares:
        order = torch.argsort(row, descending=True, stable=True)
        needed = int((torch.cumsum(row[order], 0) < coverage - 1e-9).sum()) + 1
        assignment.append(sorted(order[:needed].tolist()))
    return assignment


def disentanglement_score(moduli: torch.Tensor, units: int) -> tuple[float, list[float]]:
    """(mean score, per-unit scores): each unit's largest share, rescaled so that 1/K -> 0 and 1 -> 1."""
    shares = energy_shares(moduli, units)  # (U, K)
    moons = shares.shape[-1]
    if moons < 2:
        raise ValueError("a disentanglement score needs at least 2 moons")
    scores = (shares.max(-1).values - 1 / moons) / (1 - 1 / moons)  # (U,)
    return float(scores.mean()), scores.tolist()
