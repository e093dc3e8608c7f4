"""Numbers over seeds: the Student-t interval and the mean ± spread text."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from sandbox.analysis.seeds import by_seed, mean_spread, t_interval


@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=30), st.floats(0.5, 0.99))
def test_t_interval_matches_the_definition(values, confidence):
    s = t_interval(values, confidence)
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    assert s["n"] == n and s["mean"] == pytest.approx(mean, abs=1e-9)
    assert s["std"] == pytest.approx(std, abs=1e-9)
    assert s["ci_low"] == pytest.approx(mean - half, abs=1e-7) and s["ci_high"] == pytest.approx(mean + half, abs=1e-7)
    assert s["ci_low"] <= s["mean"] <= s["ci_high"]


@given(st.lists(st.floats(-10, 10), min_size=3, max_size=10), st.floats(0.6, 0.9))
def test_a_higher_confidence_gives_a_wider_interval(values, confidence):
    narrow, wide = t_interval(values, confidence), t_interval(values, min(confidence + 0.09, 0.99))
    assert wide["ci_high"] - wide["ci_low"] >= narrow["ci_high"] - narrow["ci_low"] - 1e-12


def test_one_seed_has_no_spread():
    assert t_interval([0.5]) == {"n": 1, "mean": 0.5, "std": None, "ci_low": None, "ci_high": None, "confidence": 0.95}


def test_mean_spread_text():
    assert mean_spread([0.5]) == "0.500"
    assert mean_spread([0.4, 0.6], digits=2) == "0.50 ± 0.14 (2 seeds)"
    assert mean_spread([0.4, 0.6], digits=2, count=False) == "0.50 ± 0.14"
    with pytest.raises(ValueError, match="at least one value"):
        mean_spread([])


def test_mean_band_draws_the_mean_and_the_spread():
    from sandbox.plotting import mean_band, plt

    fig, ax = plt.subplots()
    mean, std = mean_band(ax, [1, 2, 3], [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], label="m")
    assert mean.tolist() == [2.0, 2.0, 2.0] and std.tolist() == pytest.approx([math.sqrt(2), 0.0, math.sqrt(2)])
    assert ax.get_legend_handles_labels()[1] == ["m (mean ± sd, 2 seeds)"]
    assert len(ax.collections) == 1  # the band
    _, none = mean_band(ax, [1, 2, 3], [[1.0, 2.0, 3.0]], label="one")
    assert none is None
    with pytest.raises(ValueError, match=r"per_seed must have shape \(seeds, 3\)"):
        mean_band(ax, [1, 2, 3], [[1.0, 2.0]], label="bad")
    plt.close(fig)


def test_mean_spread_with_its_sign():
    assert mean_spread([0.25], sign=True) == "+0.250" and mean_spread([-0.25], sign=True) == "-0.250"
    assert mean_spread([0.4, 0.6], digits=2, sign=True) == "+0.50 ± 0.14 (2 seeds)"


def test_by_seed_gives_seeds_by_x():
    rows = [{"depth": 2, "seed": 1, "loss": 4.0}, {"depth": 1, "seed": 1, "loss": 3.0},
            {"depth": 1, "loss": 1.0}, {"depth": 2, "seed": 0, "loss": 2.0}]  # no seed: seed 0
    assert by_seed(rows, "depth", "loss") == ([1, 2], [[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match=r"no loss for \(seed, depth\) in \[\(1, 2\)\]"):
        by_seed(rows[1:], "depth", "loss")  # seed 1 has no depth 2
