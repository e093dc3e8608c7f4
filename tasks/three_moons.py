"""Three moons: predictive disentanglement (docs/three-moons.md).

Each moon j circles with period p_j; the observation at step t stacks, for every moon,
(sin(2πτ/p_j + 0.3), cos(2πτ/p_j + 0.3)) with τ = dt·(t + offset). Period triples come from
{0.5, 1, ..., 3.5}; their combined period is the LCM (computed in exact tenths). The 9 triples with the
smallest combined period are kept, using the published tie resolution at period 6, and (1, 2, 3) is
held out: training sequences use the other 8, validation and test sequences the held-out triple.
dt = 3·P/800 with P = 6 the largest kept combined period. The target is the next observation.

Options beyond the paper: another number of moons (the same selection rule, ties kept in sorted order),
custom period sets, observation noise, a random orthogonal mixing of the observation (fixed by the
task seed), and a "planet" frame where moons are seen from a planet that itself circles the origin.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import reduce

import torch

from sandbox.validation import check_choice, check_int, check_positive
from tasks.base import Batch, Task
from tasks.registry import register_task

PERIOD_CHOICES = tuple(p / 10 for p in range(5, 36, 5))  # 0.5, 1, ..., 3.5
KEPT = 9
# The published code's (unstable) sort kept these three of the five triples tied at combined period 6.
PUBLISHED_TIES = ((1.0, 1.5, 2.0), (0.5, 1.5, 2.0), (1.0, 2.0, 3.0))
OFFSET_GRID = 8_399  # offsets are the integers 0..8398, the start points the published code draws from
PHASE = 0.3
OBSERVATION_CLIP = 0.5


def combined_period(periods) -> float:
    """LCM of periods given in tenths exactly (0.5 -> 5 tenths), returned in time units."""
    tenths = [round(p * 10) for p in periods]
    if any(t < 1 or abs(t - p * 10) > 1e-9 for t, p in zip(tenths, periods)):
        raise ValueError(f"periods must be multiples of 0.1 and at least 0.1, got {periods}")
    return reduce(lambda a, b: a * b // math.gcd(a, b), tenths) / 10


def select_period_sets(moons: int = 3) -> tuple[list[tuple[float, ...]], tuple[float, ...]]:
    """(training sets, validation set) by the paper's rule: the 9 smallest combined periods, last held out."""
    candidates = sorted(itertools.combinations(PERIOD_CHOICES, moons), key=combined_period)  # stable
    if len(candidates) < KEPT:
        raise ValueError(f"moons={moons} gives only {len(candidates)} period sets; need {KEPT}")
    if moons == 3:
        clear = [c for c in candidates if combined_period(c) < 6]
        kept = clear + list(PUBLISHED_TIES)
    else:
        kept = candidates[:KEPT]
    return kept[:-1], kept[-1]


def parse_period_sets(text: str) -> tuple[list[tuple[float, ...]], tuple[float, ...]]:
    """'0.5,1,2;1,2,3' -> ([(0.5, 1, 2)], (1, 2, 3)): the last group is held out for validation."""
    try:
        groups = [tuple(float(p) for p in g.split(",")) for g in text.split(";") if g.strip()]
    except ValueError:
        raise ValueError(f"periods must look like '0.5,1,2;1,2,3' (groups separated by ';'), got {text!r}") from None
    if len(groups) < 2 or len({len(g) for g in groups}) != 1:
        raise ValueError(f"periods needs at least two groups of equal size (the last is held out), got {text!r}")
    for g in groups:
        for p in g:
            check_positive(p, "periods")
        combined_period(g)  # on the tenth grid, so that a combined period exists
    return groups[:-1], groups[-1]


@register_task("three_moons")
@dataclass
class ThreeMoonsConfig:
    """length: steps per sequence; moons: moons per sequence (periods chosen by the paper's rule);
    periods: custom sets as 'a,b,c;d,e,f;...' (last held out), empty = the paper's; noise: std of added
    Gaussian noise; mixing: apply a random orthogonal map to observations; frame: 'inertial' or 'planet';
    planet_period: period of the planet's own orbit in the planet frame."""

    length: int = 800
    moons: int = 3
    periods: str = ""
    noise: float = 0.0
    mixing: bool = False
    frame: str = "inertial"
    planet_period: float = 4.0

    def __post_init__(self):
        check_int(self.length, "length", low=2)
        check_int(self.moons, "moons", low=1, high=len(PERIOD_CHOICES))
        if self.periods:
            parse_period_sets(self.periods)
        else:
            select_period_sets(self.moons)
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise must be a finite number >= 0, got {self.noise}")
        check_choice(self.frame, "frame", {"inertial", "planet"})
        check_positive(self.planet_period, "planet_period")

    def build(self, seed: int) -> "ThreeMoons":
        return ThreeMoons(self, seed)


class ThreeMoons(Task):
    kind = "continuous"

    def __init__(self, config: ThreeMoonsConfig, seed: int):
        super().__init__(seed)
        self.config, self.name = config, "three_moons"
        self.train_sets, self.val_set = (parse_period_sets(config.periods) if config.periods
                                         else select_period_sets(config.moons))
        self.moons = len(self.val_set)
        self.input_dim = self.output_dim = 2 * self.moons
        self.seq_len = config.length
        self.combined = max(combined_period(s) for s in [*self.train_sets, self.val_set])
        self.dt = 3 * self.combined / 800
        gen = torch.Generator().manual_seed(seed)
        self.mixing = torch.linalg.qr(torch.randn(self.input_dim, self.input_dim, generator=gen))[0] if config.mixing else None

    def positions(self, periods: torch.Tensor, offsets: torch.Tensor, steps: int) -> torch.Tensor:
        """(B, steps, 2K) observations for periods (B, K) and offsets (B,) in steps."""
        tau = self.dt * (torch.arange(steps, dtype=torch.float64) + offsets[:, None])  # (B, steps)
        angle = 2 * math.pi * tau[..., None] / periods[:, None, :] + PHASE  # (B, steps, K)
        obs = torch.stack([torch.sin(angle), torch.cos(angle)], -1)  # (B, steps, K, 2)
        if self.config.frame == "planet":
            planet = 2 * math.pi * tau / self.config.planet_period + PHASE  # (B, steps)
            obs = obs - torch.stack([torch.sin(planet), torch.cos(planet)], -1)[:, :, None, :]
        return obs.flatten(-2)

    def sample(self, gen, split, index, batch_size) -> Batch:
        if split == "train":
            choice = torch.randint(len(self.train_sets), (batch_size,), generator=gen)
            periods = torch.tensor(self.train_sets, dtype=torch.float64)[choice]  # (B, K)
        else:
            periods = torch.tensor([self.val_set], dtype=torch.float64).expand(batch_size, -1)
        offsets = torch.randint(OFFSET_GRID, (batch_size,), generator=gen).double()  # (B,)
        obs = self.positions(periods, offsets, self.seq_len + 1)  # (B, T+1, 2K)
        if self.config.noise:
            obs = obs + self.config.noise * torch.randn(obs.shape, generator=gen, dtype=torch.float64)
        if self.mixing is not None:
            obs = obs @ self.mixing.double().T
        obs = obs.float()
        return Batch(obs[:, :-1], obs[:, 1:], extras={"periods": periods.float(), "offsets": offsets.long()})

    def loss(self, outputs, batch) -> torch.Tensor:
        """mean(clip(ŷ - y, ±0.5)²): large early errors do not dominate (docs/three-moons.md)."""
        return (outputs - batch.targets).clamp(-OBSERVATION_CLIP, OBSERVATION_CLIP).pow(2).mean()

    def metrics(self, outputs, batch) -> dict[str, float]:
        return {"loss": float(self.loss(outputs, batch)), "mse": float((outputs - batch.targets).pow(2).mean())}

    def describe(self) -> dict:
        return {
            "name": self.name, "kind": self.kind, "train_periods": self.train_sets, "val_periods": self.val_set,
            "combined_periods": {str(s): combined_period(s) for s in [*self.train_sets, self.val_set]},
            "largest_combined_period": self.combined, "dt": self.dt,
            "val_periods_in_steps": [p / self.dt for p in self.val_set],
            "val_combined_period_in_steps": combined_period(self.val_set) / self.dt,
            # Ground-truth factorisation: moon j owns observation coordinates (2j, 2j+1) (before mixing).
            "factors": [[2 * j, 2 * j + 1] for j in range(self.moons)],
            "mixing": None if self.mixing is None else self.mixing.tolist(),
            "frame": self.config.frame,
        }
