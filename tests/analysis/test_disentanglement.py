"""Unit → moon assignment and disentanglement score, checked on hand-built ideal units."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sandbox.analysis.disentanglement import disentanglement_score, energy_shares, moon_assignment
from sandbox.models import ContextualLayerConfig
from tasks.three_moons import ThreeMoonsConfig


def ideal_layer(moon_of_unit: list[int], seed: int = 0):
    """A three-moons layer of 3 units in which unit u's keys read only moon moon_of_unit[u] (at a
    random positive scale), its values carry that moon's next position and W_o writes it back where
    that moon is observed: the ideal disentangled solution, built by hand."""
    gen = torch.Generator().manual_seed(seed)
    model = ContextualLayerConfig(units=3).build(input_dim=6, output_dim=6)
    memory = model.memory
    with torch.no_grad():
        for m in (memory.keys_map, memory.values_map, memory.out_map):
            m.real.zero_()
            m.imag.zero_()
        for u, moon in enumerate(moon_of_unit):
            memory.keys_map.real[u, moon] = 1 + torch.rand((), generator=gen)
            memory.values_map.real[u, moon] = 1.0
            memory.out_map.real[moon, u] = 1.0
    return model


def moduli(model):
    return model.memory.keys_map.block_moduli().detach()


@pytest.mark.parametrize("permutation", [[0, 1, 2], [2, 0, 1], [1, 2, 0]])
def test_one_ideal_unit_per_moon_is_assigned_its_moon_and_scores_one(permutation):
    model = ideal_layer(permutation)
    assert moon_assignment(moduli(model), 3) == [[m] for m in permutation]
    score, per_unit = disentanglement_score(moduli(model), 3)
    assert score == pytest.approx(1.0) and per_unit == pytest.approx([1.0] * 3)


def test_the_ideal_units_do_predict_their_moons():
    # Hand-built units are the task's solution, not just a weight pattern: they predict the held-out
    # triple far better than predicting nothing.
    task = ThreeMoonsConfig(length=400).build(0)
    batch = task.batch("val", 0, 8)
    model = ideal_layer([0, 1, 2])
    with torch.no_grad():
        loss = float(task.loss(model(batch.inputs), batch))
    zero = float(task.loss(torch.zeros_like(batch.targets), batch))
    assert loss < 0.05 * zero, (loss, zero)


def test_a_unit_reading_all_three_moons_evenly_is_assigned_all_and_scores_zero():
    blocks = torch.ones(3, 3)  # one unit of three key pairs, each reading every moon equally
    assert moon_assignment(blocks, 1) == [[0, 1, 2]]
    assert disentanglement_score(blocks, 1)[0] == pytest.approx(0.0, abs=1e-12)
    diagonal = torch.eye(3) * 2.0  # each key pair reads its own moon: together all three, evenly
    assert moon_assignment(diagonal, 1) == [[0, 1, 2]]
    assert disentanglement_score(diagonal, 1)[0] == pytest.approx(0.0, abs=1e-12)


def test_uneven_single_unit_scores_in_between_and_reads_what_carries_its_energy():
    blocks = torch.tensor([[0.8 ** 0.5, 0.15 ** 0.5, 0.05 ** 0.5]] * 3)  # shares .80 / .15 / .05
    assert moon_assignment(blocks, 1) == [[0, 1]]  # .80 + .15 >= .9
    assert disentanglement_score(blocks, 1)[0] == pytest.approx((0.8 - 1 / 3) / (2 / 3))


@given(seed=st.integers(0, 2**31), units=st.sampled_from([1, 3]))
def test_score_range_and_scale_invariance(seed, units):
    blocks = torch.rand(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    score, per_unit = disentanglement_score(blocks, units)
    assert -1e-12 <= score <= 1 + 1e-12
    assert disentanglement_score(7.0 * blocks, units)[0] == pytest.approx(score)
    torch.testing.assert_close(energy_shares(blocks, units).sum(-1), torch.ones(units, dtype=torch.float64))
    for moons in moon_assignment(blocks, units):
        assert 1 <= len(moons) <= 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="units"):
        disentanglement_score(torch.ones(3, 3), 2)
    with pytest.raises(ValueError, match="coverage"):
        moon_assignment(torch.ones(3, 3), 3, coverage=0.0)
    with pytest.raises(ValueError, match="moduli"):
        moon_assignment(torch.ones(9), 3)
