"""Three moons: the period sets and dt recomputed from the definition; observations; streams."""

import math
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tasks.three_moons import ThreeMoonsConfig, combined_period, parse_period_sets, select_period_sets

PUBLISHED_TRAIN = [(0.5, 1, 2), (0.5, 1, 1.5), (0.5, 1, 3), (0.5, 1.5, 3), (1, 1.5, 3), (0.5, 1, 2.5), (1, 1.5, 2), (0.5, 1.5, 2)]


def test_period_sets_follow_the_specification():
    train, val = select_period_sets(3)
    assert sorted(train) == sorted(tuple(float(p) for p in t) for t in PUBLISHED_TRAIN)
    assert val == (1.0, 2.0, 3.0)
    # Recomputed from the definition: 35 triples, the 9 smallest combined periods, ties at 6.
    import itertools
    triples = list(itertools.combinations([p / 2 for p in range(1, 8)], 3))
    assert len(triples) == 35
    periods = sorted(combined_period(t) for t in triples)
    assert periods[5] < 6 == periods[6] == periods[10] < periods[11]
    assert max(combined_period(t) for t in [*train, val]) == 6.0


def test_dt_and_periods_in_steps():
    task = ThreeMoonsConfig().build(0)
    info = task.describe()
    assert task.dt == pytest.approx(0.0225)
    assert info["val_periods_in_steps"] == pytest.approx([44.444, 88.889, 133.333], abs=1e-3)
    assert info["val_combined_period_in_steps"] == pytest.approx(266.667, abs=1e-3)
    assert combined_period((0.5, 1.5, 2.5)) == 7.5


@given(seed=st.integers(0, 2**31), index=st.integers(0, 10**6))
def test_observations_are_unit_circles_and_targets_are_the_next_step(seed, index):
    task = ThreeMoonsConfig(length=50).build(seed)
    batch = task.batch("train", index, 3)
    assert batch.inputs.shape == batch.targets.shape == (3, 50, 6)
    norms = batch.inputs.unflatten(-1, (3, 2)).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-5)
    torch.testing.assert_close(batch.inputs[:, 1:], batch.targets[:, :-1])
    # Each moon is periodic with its own period: the angle advances by 2π·dt/p per step.
    angle = torch.atan2(batch.inputs[..., 0::2], batch.inputs[..., 1::2]).double()  # (B, T, 3)
    step = torch.remainder(angle[:, 1] - angle[:, 0], 2 * math.pi)
    expected = torch.remainder(2 * math.pi * task.dt / batch.extras["periods"].double(), 2 * math.pi)
    torch.testing.assert_close(step, expected, rtol=0, atol=1e-4)


def test_splits_use_their_period_sets_and_streams_are_pure():
    task = ThreeMoonsConfig(length=10).build(0)
    val = task.batch("val", 0, 8)
    assert (val.extras["periods"] == torch.tensor([1.0, 2.0, 3.0])).all()
    train = task.batch("train", 0, 256)
    seen = {tuple(p.tolist()) for p in train.extras["periods"]}
    assert (1.0, 2.0, 3.0) not in seen and len(seen) == 8
    assert torch.equal(task.batch("train", 3, 4).inputs, task.batch("train", 3, 4).inputs)
    assert not torch.equal(task.batch("train", 3, 4).inputs, task.batch("train", 4, 4).inputs)
    assert not torch.equal(task.batch("val", 3, 4).inputs, task.batch("test", 3, 4).inputs)
    assert not torch.equal(task.batch("train", 3, 4).inputs, ThreeMoonsConfig(length=10).build(1).batch("train", 3, 4).inputs)


def test_options_noise_mixing_planet_and_custom_periods():
    clean = ThreeMoonsConfig(length=20).build(0).batch("train", 0, 2)
    noisy = ThreeMoonsConfig(length=20, noise=0.1).build(0).batch("train", 0, 2)
    assert 0.05 < (noisy.inputs - clean.inputs).std() < 0.15
    mixed_task = ThreeMoonsConfig(length=20, mixing=True).build(0)
    mixed = mixed_task.batch("train", 0, 2)
    mixing = torch.tensor(mixed_task.describe()["mixing"])
    torch.testing.assert_close(mixing @ mixing.T, torch.eye(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed.inputs.norm(dim=-1), clean.inputs.norm(dim=-1), atol=1e-5, rtol=0)
    planet = ThreeMoonsConfig(length=20, frame="planet").build(0).batch("train", 0, 2)
    assert not torch.allclose(planet.inputs, clean.inputs)
    custom = ThreeMoonsConfig(length=20, periods="0.5,1;1,2;2,4").build(0)
    assert custom.input_dim == 4 and custom.describe()["val_periods"] == (2.0, 4.0)
    four = ThreeMoonsConfig(length=20, moons=4).build(0)
    assert four.input_dim == 8 and len(four.train_sets) == 8


@pytest.mark.parametrize("kwargs, match", [
    (dict(length=1), "length must be in"), (dict(noise=-1.0), "noise must be"), (dict(moons=8), "moons must be in"),
    (dict(frame="moon"), "frame must be one of"), (dict(periods="1,2"), "at least two groups"),
    (dict(periods="a,b;c,d"), "periods must look like"), (dict(periods="1,2;0,1"), "periods must be finite and > 0"),
    (dict(moons=6), "gives only 7 period sets"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ThreeMoonsConfig(**kwargs)


def test_bad_batch_arguments():
    task = ThreeMoonsConfig(length=5).build(0)
    with pytest.raises(ValueError, match="split must be one of"):
        task.batch("dev", 0, 2)
    with pytest.raises(ValueError, match="batch_size must be in"):
        task.batch("train", 0, 0)
    with pytest.raises(ValueError, match="seed must be in"):
        ThreeMoonsConfig().build(-1)


@pytest.mark.parametrize("frame", ["inertial", "planet"])
def test_positions_follow_the_orbit_formula(frame):
    # Moon k at step t: (sin θ, cos θ) with θ = 2π·dt·(t + offset)/P_k + 0.3, minus the planet's own
    # position (period planet_period) in the planet frame; written out here independently.
    task = ThreeMoonsConfig(length=10, frame=frame, planet_period=3.0).build(0)
    periods = torch.tensor([[0.5, 1.0, 2.5], [1.5, 2.0, 3.5]], dtype=torch.float64)
    offsets = torch.tensor([0.0, 17.0], dtype=torch.float64)
    obs = task.positions(periods, offsets, 6)  # (2, 6, 6)
    assert obs.shape == (2, 6, 6)
    for b in range(2):
        for t in range(6):
            tau = task.dt * (t + offsets[b].item())
            planet = 2 * math.pi * tau / 3.0 + 0.3
            for k in range(3):
                theta = 2 * math.pi * tau / periods[b, k].item() + 0.3
                x, y = math.sin(theta), math.cos(theta)
                if frame == "planet":
                    x, y = x - math.sin(planet), y - math.cos(planet)
                assert obs[b, t, 2 * k].item() == pytest.approx(x, abs=1e-9)
                assert obs[b, t, 2 * k + 1].item() == pytest.approx(y, abs=1e-9)


def test_noise_is_drawn_from_the_batch_stream_and_centred():
    task = ThreeMoonsConfig(length=200, noise=0.1).build(0)
    clean = ThreeMoonsConfig(length=200).build(0)
    a, b = task.batch("train", 0, 8), task.batch("train", 0, 8)
    assert torch.equal(a.inputs, b.inputs)  # the noise is part of the pure stream
    noise = (a.inputs - clean.batch("train", 0, 8).inputs).double()
    assert abs(float(noise.mean())) < 0.01 and float(noise.std()) == pytest.approx(0.1, rel=0.05)
    torch.testing.assert_close(a.inputs[:, 1:], a.targets[:, :-1])  # noise added once, then shifted


def test_offsets_are_the_published_start_points_and_set_the_phase():
    """Offsets are uniform integers 0..8398 (the published code's 8,399 start points), and the first
    observation of a sequence is the orbit at τ = dt·offset."""
    task = ThreeMoonsConfig(length=4).build(0)
    batch = task.batch("val", 0, 2048)
    offsets = batch.extras["offsets"]
    assert 0 <= int(offsets.min()) < 100 and 8300 < int(offsets.max()) <= 8398
    expected = task.positions(batch.extras["periods"][:4].double(), offsets[:4].double(), 1)[:, 0]
    assert torch.allclose(batch.inputs[:4, 0].double(), expected, atol=1e-6)


def test_periods_off_the_tenth_grid_are_refused_by_name():
    assert combined_period((0.5, 1.5)) == 1.5 and combined_period((0.4, 0.6)) == 1.2
    for periods in [(0.5, 1.05), (0.55,), (1.0, 2.0 + 1e-6), (1e-10, 1.0), (0.04,)]:
        with pytest.raises(ValueError, match=rf"^periods must be multiples of 0.1 and at least 0.1, got {re.escape(str(periods))}$"):
            combined_period(periods)
    # A custom set is checked when the configuration is made, not when the task is built.
    with pytest.raises(ValueError, match=r"^periods must be multiples of 0.1 and at least 0.1, got \(1e-10, 1.0\)$"):
        ThreeMoonsConfig(periods="1,2;1e-10,1")
    assert combined_period((0.1,)) == 0.1


def test_custom_period_sets_hold_out_the_last_group():
    train, val = parse_period_sets("0.5,1;1,2;2,3;3,4")
    assert train == [(0.5, 1.0), (1.0, 2.0), (2.0, 3.0)] and val == (3.0, 4.0)
    train, val = parse_period_sets("0.5,1;2,4")
    assert train == [(0.5, 1.0)] and val == (2.0, 4.0)


@pytest.mark.parametrize("moons", [2, 4, 5])
def test_other_numbers_of_moons_keep_the_nine_smallest_combined_periods(moons):
    import itertools

    train, val = select_period_sets(moons)
    kept = [*train, val]
    assert len(kept) == 9 and len(set(kept)) == 9
    ranked = sorted(combined_period(c) for c in itertools.combinations([p / 2 for p in range(1, 8)], moons))
    assert sorted(combined_period(c) for c in kept) == ranked[:9]
    # Ties at the ninth place are kept in sorted (lexicographic) order of the sets.
    cut = ranked[8]
    tied = sorted(c for c in itertools.combinations([p / 2 for p in range(1, 8)], moons) if combined_period(c) == cut)
    assert [c for c in kept if combined_period(c) == cut] == tied[:sum(combined_period(c) == cut for c in kept)]


def test_moons_length_and_planet_period_are_checked_at_their_bounds():
    ThreeMoonsConfig(moons=1, periods="0.5;1;2")  # one moon, with custom periods
    with pytest.raises(ValueError, match=r"^moons must be in \[1, 7\], got 0$"):
        ThreeMoonsConfig(moons=0, periods="0.5;1;2")
    with pytest.raises(ValueError, match=r"^moons must be in \[1, 7\], got 8$"):
        ThreeMoonsConfig(moons=8)
    assert ThreeMoonsConfig(length=2).build(0).batch("train", 0, 1).inputs.shape == (1, 2, 6)
    with pytest.raises(ValueError, match=r"^length must be in \[2, inf\], got 1$"):
        ThreeMoonsConfig(length=1)
    with pytest.raises(ValueError, match=r"^planet_period must be finite and > 0, got 0.0$"):
        ThreeMoonsConfig(planet_period=0.0)


def test_mixing_is_fixed_by_the_task_seed():
    first, again = ThreeMoonsConfig(length=4, mixing=True).build(5), ThreeMoonsConfig(length=4, mixing=True).build(5)
    assert torch.equal(first.mixing, again.mixing)
    assert not torch.equal(first.mixing, ThreeMoonsConfig(length=4, mixing=True).build(6).mixing)


@pytest.mark.parametrize("split", ["train", "val"])
def test_periods_off_the_half_grid_are_used_at_full_precision(split):
    # 1.3 and 0.7 are not exact in float32: rounded there, the phase after ~8000 steps is off by ~1e-5.
    task = ThreeMoonsConfig(length=6, periods="1.3,0.7;0.9,1.1;1.7,0.3").build(0)
    batch = task.batch(split, 0, 64)
    sets = task.train_sets if split == "train" else [task.val_set] * 64
    if split == "train":
        rows = [sets.index(tuple(round(float(p), 6) for p in row)) for row in batch.extras["periods"]]
        sets = [sets[r] for r in rows]
    periods = torch.tensor(sets, dtype=torch.float64)
    expected = task.positions(periods, batch.extras["offsets"].double(), 7).float()
    torch.testing.assert_close(batch.inputs, expected[:, :-1], rtol=0, atol=1e-6)


def test_the_default_selection_is_the_papers_three_moons():
    train, val = select_period_sets()
    assert val == (1.0, 2.0, 3.0) and len(train) == 8 and all(len(s) == 3 for s in train)
