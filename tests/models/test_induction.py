"""The induction-head transformer and its probes."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.analysis.probes import attention_probes, memory_capacity, memory_probes, recall
from sandbox.models import InductionConfig


def model(d=32, **kw):
    return InductionConfig(d=d, **kw).build(vocab_size=20, max_len=40)


def test_only_the_three_matrices_train_and_frozen_ones_stay_fixed():
    m = model()
    assert {n for n, p in m.named_parameters()} == {"W_K1", "W_K2", "W_O2"}
    frozen = {k: v.clone() for k, v in m.state_dict().items() if k not in ("W_K1", "W_K2", "W_O2", "steps_seen")}
    optimizer = torch.optim.SGD(m.parameters(), lr=1.0)
    tokens = torch.randint(20, (4, 40))
    torch.nn.functional.cross_entropy(m(tokens).flatten(0, 1), tokens.roll(-1, 1).flatten()).backward()
    optimizer.step()
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in frozen.items())
    assert m.W_O2.abs().sum() > 0


def test_wo2_frozen_for_the_first_steps():
    m = model(freeze_wo2_until=2)
    tokens = torch.randint(20, (2, 10))
    for step in range(3):
        m.zero_grad()
        m(tokens).sum().backward()
        assert (m.W_O2.grad is None or m.W_O2.grad.abs().sum() == 0) == (step < 2)


def test_causality():
    m = model()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    tokens = torch.randint(20, (1, 12))
    base = m(tokens)
    changed = tokens.clone()
    changed[0, 8] = (changed[0, 8] + 1) % 20
    after = m(changed)
    torch.testing.assert_close(after[:, :8], base[:, :8])
    assert not torch.allclose(after[:, 8:], base[:, 8:])


def test_probes_on_hand_built_weights():
    m = model(d=64)
    E, U, P = m.token_embedding, m.unembedding, m.positions
    chance = memory_probes(m)
    assert chance["W_O2"] < 0.2 and chance["W_K1"] < 0.2
    with torch.no_grad():
        # W_O² W_V² maps w_E(i) to w_U(i): W_O² = Σ_i w_U(i) (W_V² w_E(i))ᵀ (up to noise from crosstalk).
        m.W_O2.copy_(U.T @ torch.linalg.pinv(E @ m.W_V2.T).T)
        # W_K¹ maps p_{t-1} to p_t's query: scores p_tᵀ W p_s with W = Σ_t p_t p_{t-1}ᵀ.
        m.W_K1.copy_(torch.linalg.pinv(P[1:]) @ torch.linalg.pinv(P[:-1]).T)
    probes = memory_probes(m)
    assert probes["W_O2"] == 1.0 and probes["W_K1_t<64"] == 1.0


@settings(max_examples=6)
@given(seed=st.integers(0, 1000))
def test_memory_capacity_grows_with_dimension(seed):
    small, large = memory_capacity(32, 256, seed), memory_capacity(256, 256, seed)
    assert small < 0.5 < 0.95 <= large


def test_recall_counts_matches():
    inputs = torch.eye(3)
    assert recall(torch.eye(3), inputs, inputs, torch.tensor([0, 1, 2])) == 1.0
    assert recall(torch.eye(3), inputs, inputs, torch.tensor([1, 2, 0])) == 0.0


def test_attention_probes_at_initialisation_are_the_uniform_masses():
    # W_K¹ = W_K² = 0 at initialisation: each position t attends uniformly to s <= t, weight 1/(t+1).
    T = 12
    repeating = torch.arange(T) % 4  # every t >= 4 repeats t - 4, whose follower t - 3 is in the past
    distinct = torch.arange(T)  # no repeats: contributes to layer 1 only
    probes = attention_probes(model(), torch.stack([repeating, distinct]))
    uniform = 1 / (torch.arange(T, dtype=torch.float64) + 1)  # (T,) weight of any one s <= t
    assert probes["layer1_previous_token"] == pytest.approx(float(uniform[1:].mean()), rel=1e-6)
    assert probes["layer2_induction"] == pytest.approx(float(uniform[4:].mean()), rel=1e-6)
    assert attention_probes(model(), distinct[None])["layer2_induction"] == 0.0


def test_attention_probes_see_a_previous_token_head():
    # Scores p_tᵀ W_K¹ p_s made large exactly for s = t - 1: layer 1 then puts all its mass there.
    m = model()
    P = m.positions  # (T, d)
    with torch.no_grad():
        m.W_K1.copy_(200 * torch.linalg.pinv(P) @ torch.eye(len(P)).roll(-1, 1) @ torch.linalg.pinv(P).T)
    tokens = torch.zeros(1, 10, dtype=torch.long)  # one token: only the positions tell steps apart
    assert attention_probes(m, tokens)["layer1_previous_token"] > 0.99


def test_bad_config():
    with pytest.raises(ValueError, match="needs vocab_size"):
        InductionConfig().build(input_dim=3, output_dim=3)
    with pytest.raises(ValueError, match="freeze_wo2_until must be in"):
        InductionConfig(freeze_wo2_until=-1)


def test_induction_key_probe_reads_the_triggers_only():
    m = model(d=64)
    E = m.token_embedding
    images = E @ (m.W_O1 @ m.W_V1).T  # what layer 1 writes after each token
    triggers = torch.tensor([2, 5, 11])
    with torch.no_grad():  # W_K² = Σ_k over triggers of (query k) ↔ (image of k), exactly on the triggers
        m.W_K2.copy_(torch.linalg.pinv(E[triggers]) @ torch.linalg.pinv(images[triggers]).T)
    assert memory_probes(m, triggers)["W_K2"] == 1.0
    assert memory_probes(m)["W_K2"] <= (len(triggers) + 2) / len(E)  # the other tokens were never stored
