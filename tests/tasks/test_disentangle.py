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
