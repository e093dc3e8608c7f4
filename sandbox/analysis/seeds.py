"""Numbers over seeds: mean, sample standard deviation and a Student-t confidence interval of the mean.

Used by `sandbox sweep` (its table) and by the figure families that run several seeds (their error
bars and the gallery's mean ± spread).
"""

from __future__ import annotations

import math

from sandbox.validation import check_fraction


def t_interval(values: list[float], confidence: float = 0.95) -> dict:
    """Mean, sample standard deviation and the Student-t confidence interval of the mean.

    With n values, mean ± t_{(1+c)/2, n-1} · s / √n. With one value the spread is unknown: std and the
    interval are None.
    """
    from scipy import stats

    check_fraction(confidence, "confidence", open_low=True, open_high=True)
    n = len(values)
    if n == 0:
        raise ValueError("values: need at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci_low": None, "ci_high": None, "confidence": confidence}
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "confidence": confidence}


def mean_spread(values: list[float], digits: int = 3, count: bool = True) -> str:
    """'0.931' for one value; '0.931 ± 0.012 (3 seeds)' (sample standard deviation) for several
    (without the count of seeds when `count` is False)."""
    stat = t_interval([float(v) for v in values])
    if stat["std"] is None:
        return f"{stat['mean']:.{digits}f}"
    seeds = f" ({stat['n']} seeds)" if count else ""
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}{seeds}"
