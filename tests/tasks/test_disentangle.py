"""Disentanglement toys: oscillators and Markov sources match their stated factorisation."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tasks.disentangle import MarkovSourcesConfig, OscillatorsConfig


@settings(max_examples=20)
@given(seed=st.integers(0, 2**31), periods=st.lists(st.floats(0.2, 5.0), min_size=1, max_size=4))
def test_each_oscillator_turns_at_its_own_period(seed, periods):
    task = OscillatorsConfig(periods=",".join(f"{p:.3f}" for p in periods), length=20).build(seed)
    batch = task.batch("train", 0, 3)
    obs = batch.inputs.double().unflatten(-1, (len(periods), 2))  # (B, T, K, 2)
    torch.testing.assert_close(obs.norm(dim=-1), torch.ones(obs.shape[:-1], dtype=torch.float64), atol=1e-5, rtol=0)
    angle = torch.atan2(obs[..., 0], obs[..., 1])
    step = torch.remainder(angle[:, 1] - angle[:, 0], 2 * math.pi)
    expected = torch.remainder(2 * math.pi * task.config.dt / task.periods, 2 * math.pi).expand_as(step)
    torch.testing.assert_close(step, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(batch.inputs[:, 1:], batch.targets[:, :-1])


def test_mixing_is_orthogonal_and_recoverable():
    plain = OscillatorsConfig(length=10).build(3).batch("train", 0, 2)
    task = OscillatorsConfig(length=10, mixing=True).build(3)
    mixed = task.batch("train", 0, 2)
    mixing = torch.tensor(task.describe()["mixing"], dtype=torch.float32)
    torch.testing.assert_close(mixed.inputs @ mixing, plain.inputs, atol=1e-5, rtol=0)
    noisy = OscillatorsConfig(length=10, noise=0.2).build(3).batch("train", 0, 64)
    assert 0.15 < float((noisy.inputs - OscillatorsConfig(length=10).build(3).batch("train", 0, 64).inputs).std()) < 0.25


def test_interleaved_sources_speak_in_turn_with_their_own_ids_and_transitions():
    config = MarkovSourcesConfig(sources=2, states=3, length=4001)
    task = config.build(0)
    tokens = task.batch("train", 0, 8).inputs
    owner = tokens // 3
    assert torch.equal(owner, (torch.arange(tokens.shape[1]) % 2).expand_as(owner))
    # Source 0's own chain: consecutive source-0 tokens follow its transition matrix.
    chain = tokens[:, 0::2]
    for state in range(3):
        nexts = chain[:, 1:][chain[:, :-1] == state]
        observed = np.bincount(nexts.numpy(), minlength=3)
        expected = task.transitions[0, state].numpy() * observed.sum()
        keep = expected > 5
        assert stats.chisquare(observed[keep], expected[keep] * observed[keep].sum() / expected[keep].sum()).pvalue > 1e-4


def test_summed_sources_are_the_sum_of_their_maps():
    task = MarkovSourcesConfig(sources=3, states=4, mode="summed", length=20).build(0)
    batch = task.batch("train", 0, 2)
    states = batch.extras["states"]  # (B, K, T+1)
    rebuilt = sum(task.maps[k][states[:, k]] for k in range(3)).float()
    torch.testing.assert_close(batch.inputs, rebuilt[:, :-1])
    assert task.input_dim == 12 and "maps" in task.describe()["factors"]


def test_streams_are_pure_and_splits_differ():
    for task in (OscillatorsConfig(length=8).build(0), MarkovSourcesConfig(length=8).build(0)):
        assert torch.equal(task.batch("val", 2, 3).inputs, task.batch("val", 2, 3).inputs)
        assert not torch.equal(task.batch("val", 2, 3).inputs, task.batch("train", 2, 3).inputs)


@pytest.mark.parametrize("make, match", [
    (lambda: OscillatorsConfig(periods=""), "at least one period"),
    (lambda: OscillatorsConfig(periods="a"), "comma-separated"),
    (lambda: OscillatorsConfig(periods="1,-2"), "periods must be finite and > 0"),
    (lambda: OscillatorsConfig(noise=-1), "noise must be"),
    (lambda: MarkovSourcesConfig(mode="mixed"), "mode must be one of"),
    (lambda: MarkovSourcesConfig(states=1), "states must be in"),
    (lambda: MarkovSourcesConfig(noise=0.1), "noise applies to mode='summed'"),
])
def test_bad_parameters(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize("make, field, low, high", [
    (MarkovSourcesConfig, "sources", 1, 16), (MarkovSourcesConfig, "states", 2, 64),
    (MarkovSourcesConfig, "source_seed", 0, None), (MarkovSourcesConfig, "length", 2, None),
    (OscillatorsConfig, "length", 2, None),
])
def test_integer_parameters_are_accepted_exactly_within_their_range(make, field, low, high):
    make(**{field: low})
    shown = "inf" if high is None else high
    with pytest.raises(ValueError, match=rf"^{field} must be in \[{low}, {shown}\], got {low - 1}$"):
        make(**{field: low - 1})
    if high is not None:
        make(**{field: high})
        with pytest.raises(ValueError, match=rf"^{field} must be in \[{low}, {high}\], got {high + 1}$"):
            make(**{field: high + 1})


@pytest.mark.parametrize("make, field", [(MarkovSourcesConfig, "concentration"), (OscillatorsConfig, "dt")])
def test_positive_parameters_name_themselves(make, field):
    with pytest.raises(ValueError, match=rf"^{field} must be"):
        make(**{field: 0.0})


def test_oscillator_phases_are_uniform_and_start_each_sequence():
    task = OscillatorsConfig(periods="0.5,1.3", noise=0.0, length=5).build(0)
    batch = task.batch("train", 0, 2000)
    phases = batch.extras["phases"].double()  # (B, K)
    assert phases.min() >= 0 and phases.max() < 2 * math.pi
    assert stats.kstest(phases.flatten().numpy() / (2 * math.pi), "uniform").pvalue > 1e-4
    start = torch.stack([torch.sin(phases), torch.cos(phases)], -1).flatten(-2)  # (B, 2K) at t = 0
    torch.testing.assert_close(batch.inputs[:, 0].double(), start, atol=1e-6, rtol=0)
    assert batch.inputs.shape == batch.targets.shape == (2000, 5, 4)
    torch.testing.assert_close(batch.inputs[:, 1:], batch.targets[:, :-1])
    noisy = OscillatorsConfig(periods="0.5,1.3", noise=0.2, length=50).build(0)
    clean = OscillatorsConfig(periods="0.5,1.3", length=50).build(0)
    a = noisy.batch("train", 0, 64)
    assert torch.equal(a.inputs, noisy.batch("train", 0, 64).inputs)  # the noise is part of the pure stream
    noise = (a.inputs - clean.batch("train", 0, 64).inputs).double()  # same phases, then the noise
    assert abs(float(noise.mean())) < 0.01 and float(noise.std()) == pytest.approx(0.2, rel=0.05)


def test_markov_sources_batches_have_targets_one_step_ahead():
    for mode in ("interleaved", "summed"):
        task = MarkovSourcesConfig(sources=2, states=3, length=12, mode=mode).build(0)
        batch = task.batch("train", 0, 4)
        assert batch.inputs.shape[:2] == batch.targets.shape[:2] == (4, 12)
        torch.testing.assert_close(batch.inputs[:, 1:], batch.targets[:, :-1])


def test_error_messages_are_whole():
    with pytest.raises(ValueError, match=r"^periods must name at least one period$"):
        OscillatorsConfig(periods=" , ")
    with pytest.raises(ValueError, match=r"^noise applies to mode='summed' \(continuous observations\) only$"):
        MarkovSourcesConfig(noise=0.1)


def test_mixing_is_a_pure_function_of_the_task_seed():
    from tasks.disentangle import orthogonal

    assert torch.equal(orthogonal(5, 3), orthogonal(5, 3)) and not torch.equal(orthogonal(5, 3), orthogonal(5, 4))
    first = OscillatorsConfig(length=4, mixing=True).build(3)
    assert torch.equal(first.mixing, OscillatorsConfig(length=4, mixing=True).build(3).mixing)


def test_markov_chains_are_fixed_by_the_source_seed_and_maps_have_unit_scale():
    a, b = MarkovSourcesConfig(source_seed=7).build(0), MarkovSourcesConfig(source_seed=7).build(1)
    torch.testing.assert_close(a.transitions, b.transitions, rtol=0, atol=0)  # shared by every task seed
    assert not torch.equal(a.transitions, MarkovSourcesConfig(source_seed=8).build(0).transitions)
    tokens = MarkovSourcesConfig(sources=3, states=5).build(0)
    assert tokens.vocab_size == 15 and isinstance(tokens.vocab_size, int)
    # Summed: each U_k e_s is a D-vector of independent N(0, 1/D) entries, so its squared norm is ~1.
    summed = MarkovSourcesConfig(sources=4, states=8, mode="summed").build(0)
    assert summed.maps.shape == (4, 8, 32) and summed.input_dim == summed.output_dim == 32
    assert float(summed.maps.pow(2).sum(-1).mean()) == pytest.approx(1.0, abs=0.15)
    torch.testing.assert_close(summed.maps, MarkovSourcesConfig(sources=4, states=8, mode="summed").build(5).maps,
                               rtol=0, atol=0)


def test_interleaved_tokens_are_the_chain_states_with_their_source_ids():
    task = MarkovSourcesConfig(sources=3, states=4, length=20).build(0)
    batch = task.batch("train", 1, 5)
    states = batch.extras["states"]  # (B, K, n)
    tokens = torch.cat([batch.inputs, batch.targets[:, -1:]], 1)  # (B, T+1)
    for t in range(21):
        assert torch.equal(tokens[:, t], states[:, t % 3, t // 3] + 4 * (t % 3))


def test_summed_noise_is_centred_gaussian_and_part_of_the_pure_stream():
    noisy = MarkovSourcesConfig(sources=2, states=3, mode="summed", noise=0.2, length=50).build(0)
    clean = MarkovSourcesConfig(sources=2, states=3, mode="summed", length=50).build(0)
    a = noisy.batch("train", 0, 64)
    b = noisy.batch("train", 0, 64)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.extras["states"], b.extras["states"])
    c = clean.batch("train", 0, 64)
    assert torch.equal(a.extras["states"], c.extras["states"])  # the same chains, then the noise
    noise = (a.inputs - c.inputs).double()
    assert abs(float(noise.mean())) < 0.01 and float(noise.std()) == pytest.approx(0.2, rel=0.05)
    assert float(noise.abs().max()) < 0.2 * 6  # Gaussian tails, not a ratio of Gaussians
    torch.testing.assert_close(a.inputs[:, 1:], a.targets[:, :-1])
    assert torch.equal(clean.batch("val", 3, 4).inputs, clean.batch("val", 3, 4).inputs)
