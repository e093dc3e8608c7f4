"""Trigger bigrams: transitions follow π_b, trigger outputs repeat exactly, labels are right."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tasks.bigram import BigramConfig, alias_tables, reference_sequences


def chi_square_p(observed: np.ndarray, expected_p: np.ndarray) -> float:
    """Chi-square goodness of fit, pooling cells expected to hold fewer than 5 counts."""
    expected = expected_p * observed.sum()
    keep = expected >= 5
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return stats.chisquare(obs, exp).pvalue


def test_global_transitions_follow_the_bigram_matrix():
    task = BigramConfig().build(0)
    batch = task.batch("train", 0, 512)
    m = batch.labels == 0  # positions whose next token is a global bigram draw
    for char in "ehot":  # frequent non-trigger characters
        i = task.vocab.index(char)
        if i in task.fixed_triggers:
            continue
        nexts = batch.targets[m & (batch.inputs == i)]
        p = chi_square_p(np.bincount(nexts.numpy(), minlength=task.vocab_size), task.pi_b[i].numpy())
        assert p > 1e-4, (char, p)


def test_first_tokens_follow_the_unigram():
    task = BigramConfig(seq_len=2).build(0)
    first = task.batch("train", 0, 20000).inputs[:, 0]
    assert chi_square_p(np.bincount(first.numpy(), minlength=65), task.pi_u.numpy()) > 1e-4


@given(rows=st.integers(1, 4), size=st.integers(2, 12), seed=st.integers(0, 2**31))
@settings(max_examples=20)
def test_alias_tables_reproduce_each_row_exactly(rows, size, seed):
    p = torch.tensor(np.random.default_rng(seed).dirichlet(np.full(size, 0.5), size=rows))
    accept, alias = alias_tables(p)
    # Probability of j = (1/V)·(accept[j] + Σ_{k: alias[k]=j} (1 - accept[k])).
    recovered = accept / size
    recovered = recovered.scatter_add(1, alias, (1 - accept) / size)
    torch.testing.assert_close(recovered, p, rtol=0, atol=1e-12)


@given(seed=st.integers(0, 2**31), random_triggers=st.booleans(), outputs=st.sampled_from(["uniform", "bigram"]))
@settings(max_examples=15)
def test_trigger_outputs_repeat_exactly_and_labels_count_occurrences(seed, random_triggers, outputs):
    task = BigramConfig(seq_len=64, random_triggers=random_triggers, outputs=outputs).build(seed)
    batch = task.batch("train", 0, 8)
    triggers, outs = batch.extras["triggers"], batch.extras["outputs"]
    for b in range(8):
        output_of = dict(zip(triggers[b].tolist(), outs[b].tolist()))
        seen: dict[int, int] = {}
        for t, token in enumerate(batch.inputs[b].tolist()):
            if token in output_of:
                assert batch.targets[b, t] == output_of[token]
                seen[token] = seen.get(token, 0) + 1
                assert batch.labels[b, t] == seen[token]
            else:
                assert batch.labels[b, t] == 0
        assert len(set(triggers[b].tolist())) == task.config.triggers


def test_random_triggers_follow_the_unigram_and_bigram_outputs_follow_pi_b():
    task = BigramConfig(seq_len=2, random_triggers=True, outputs="bigram", triggers=1).build(0)
    gen = torch.Generator().manual_seed(0)
    triggers, outputs = task.draw_triggers_and_outputs(gen, 20000)
    assert chi_square_p(np.bincount(triggers[:, 0].numpy(), minlength=65), task.pi_u.numpy()) > 1e-4
    space = task.vocab.index(" ")
    picked = outputs[triggers == space]
    assert chi_square_p(np.bincount(picked.numpy(), minlength=65), task.pi_b[space].numpy()) > 1e-4


def test_reference_loop_has_the_same_exact_properties():
    task = BigramConfig(seq_len=40).build(0)
    tokens, triggers = reference_sequences(task, np.random.default_rng(0), 6)
    labels = task.labels(tokens[:, :-1], triggers)
    for b in range(6):
        firsts = {}
        for t in range(40):
            token = tokens[b, t].item()
            if labels[b, t] >= 1:
                firsts.setdefault(token, tokens[b, t + 1].item())
                assert tokens[b, t + 1] == firsts[token]


def test_sources_from_a_text_file_and_dirichlet(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("abababababcabcab")
    task = BigramConfig(source=f"file:{path}", triggers=1, seq_len=10).build(0)
    assert task.vocab == "abc" and task.vocab_size == 3
    torch.testing.assert_close(task.pi_b[0], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    synthetic = BigramConfig(source="dirichlet:12", seq_len=10).build(0)
    assert synthetic.vocab_size == 12 and synthetic.batch("train", 0, 3).inputs.max() < 12
    torch.testing.assert_close(synthetic.pi_b.sum(1), torch.ones(12, dtype=torch.float64))


def test_streams_are_pure_and_distinct():
    task = BigramConfig(seq_len=30).build(0)
    assert torch.equal(task.batch("train", 5, 4).inputs, task.batch("train", 5, 4).inputs)
    assert not torch.equal(task.batch("train", 5, 4).inputs, task.batch("test", 5, 4).inputs)
    assert not torch.equal(task.batch("train", 5, 4).inputs, BigramConfig(seq_len=30).build(1).batch("train", 5, 4).inputs)


def test_metrics_and_predictable_loss():
    task = BigramConfig(seq_len=64, loss_on="predictable").build(0)
    batch = task.batch("val", 0, 8)
    perfect = torch.nn.functional.one_hot(batch.targets, 65).float() * 50
    metrics = task.metrics(perfect, batch)
    assert metrics["in_context_accuracy"] == 1.0 and metrics["loss"] < 1e-6
    uniform = torch.zeros(8, 64, 65)
    assert task.metrics(uniform, batch)["global_loss"] == pytest.approx(np.log(65), rel=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(seq_len=1), "seq_len must be in"), (dict(triggers=0), "triggers must be in"),
    (dict(triggers=65), r"triggers must be in \[1, 64\]"), (dict(outputs="zipf"), "outputs must be one of"),
    (dict(source="web"), "source must be"), (dict(source="file:/nonexistent"), "does not exist"),
    (dict(source="dirichlet:x"), "integer V"), (dict(source="dirichlet:1"), "vocabulary size must be in"),
    (dict(loss_on="some"), "loss_on must be one of"), (dict(concentration=0.0), "concentration must be"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        BigramConfig(**kwargs)
