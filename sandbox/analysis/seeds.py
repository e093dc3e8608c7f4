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


def mean_spread(values: list[float], digits: int = 3, count: bool = True, sign: bool = False) -> str:
    """'0.931' for one value; '0.931 ± 0.012 (3 seeds)' (sample standard deviation) for several
    (without the count of seeds when `count` is False; the mean with its sign, '+0.931', when `sign`)."""
    stat = t_interval([float(v) for v in values])
    mean = f"{stat['mean']:{'+' if sign else ''}.{digits}f}"
    if stat["std"] is None:
        return mean
    seeds = f" ({stat['n']} seeds)" if count else ""
    return f"{mean} ± {stat['std']:.{digits}f}{seeds}"


def by_seed(rows: list[dict], x: str, metric: str) -> tuple[list, list[list[float]]]:
    """The distinct values of `x` among `rows` (sorted) and `metric` as seeds × x, ready for
    `sandbox.plotting.mean_band`. A row without a `seed` (saved before seeds existed) is seed 0; every
    seed must have a row at every x."""
    xs = sorted({row[x] for row in rows})
    seeds = sorted({row.get("seed", 0) for row in rows})
    value = {(row[x], row.get("seed", 0)): row[metric] for row in rows}
    missing = [(s, v) for s in seeds for v in xs if (v, s) not in value]
    if missing:
        raise ValueError(f"rows: no {metric} for (seed, {x}) in {missing}")
    return xs, [[value[v, s] for v in xs] for s in seeds]
