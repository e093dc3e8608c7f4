"""Trigger bigrams: transitions follow π_b, trigger outputs repeat exactly, labels are right."""

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tasks.bigram import BigramConfig, TriggerBigrams, alias_tables, reference_sequences


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


def test_alias_tables_reproduce_rows_of_counts_with_entries_of_exactly_one_over_v():
    # A text file's rows are counts over a total: entries of exactly 1/V (scaled to exactly 1) occur,
    # and the tables must still reproduce the row. Every row of counts summing to 2V, V = 2..4.
    for size in range(2, 5):
        grid = torch.cartesian_prod(*[torch.arange(2 * size + 1)] * size)  # (·, V) every count vector
        counts = grid[grid.sum(1) == 2 * size].double()
        p = counts / (2 * size)
        accept, alias = alias_tables(p)
        recovered = (accept / size).scatter_add(1, alias, (1 - accept) / size)
        torch.testing.assert_close(recovered, p, rtol=0, atol=1e-12)


def test_random_triggers_and_their_bigram_outputs_are_a_pure_function_of_the_seed():
    task = BigramConfig(seq_len=8, random_triggers=True, outputs="bigram").build(0)
    draw = lambda: task.draw_triggers_and_outputs(torch.Generator().manual_seed(3), 16)  # noqa: E731
    (triggers, outputs), (again_triggers, again_outputs) = draw(), draw()
    assert torch.equal(triggers, again_triggers) and torch.equal(outputs, again_outputs)
    other = task.draw_triggers_and_outputs(torch.Generator().manual_seed(4), 16)
    assert not torch.equal(triggers, other[0]) and not torch.equal(outputs, other[1])
    first, second = task.batch("train", 2, 4), task.batch("train", 2, 4)
    assert torch.equal(first.inputs, second.inputs) and torch.equal(first.extras["outputs"], second.extras["outputs"])


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


def transitions(tokens: torch.Tensor, triggers: torch.Tensor, vocab_size: int) -> np.ndarray:
    """(V, V) counts of (token, next token) at positions whose next token is drawn (label <= 1)."""
    labels = TriggerBigrams.labels(tokens[:, :-1], triggers)
    drawn = labels <= 1  # (B, T): global draws and first occurrences of triggers
    pairs = tokens[:, :-1][drawn] * vocab_size + tokens[:, 1:][drawn]
    return np.bincount(pairs.numpy(), minlength=vocab_size**2).reshape(vocab_size, vocab_size)


def same_distribution_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample chi-square (contingency) test on counts a, b over the same cells; sparse cells pooled."""
    keep = (a + b) >= 10
    table = np.array([np.append(a[keep], a[~keep].sum()), np.append(b[keep], b[~keep].sum())])
    table = table[:, table.sum(0) > 0]
    return stats.chi2_contingency(table).pvalue


@pytest.mark.parametrize("random_triggers, outputs", [(False, "uniform"), (True, "bigram")])
def test_vectorised_generator_matches_the_reference_loop(random_triggers, outputs):
    """The per-sequence loop is the definition; the vectorised generator (alias tables, one loop over
    time) must draw the same distribution: first tokens, triggers, every drawn transition (global and
    trigger outputs) agree by a two-sample test, and in both every trigger repeats its output exactly."""
    task = BigramConfig(source="dirichlet:6", triggers=2, seq_len=24, random_triggers=random_triggers,
                        outputs=outputs).build(0)
    V, B = task.vocab_size, 600
    ref_tokens, ref_triggers = reference_sequences(task, np.random.default_rng(0), B)
    fast_tokens, fast_triggers, _ = task.sequences(torch.Generator().manual_seed(0), B)
    for tokens, triggers in ((ref_tokens, ref_triggers), (fast_tokens, fast_triggers)):
        assert tokens.shape == (B, task.seq_len + 1) and triggers.shape == (B, 2)
        assert (triggers[:, 0] != triggers[:, 1]).all()  # K distinct triggers per sequence
        hits = tokens[:, :-1, None] == triggers[:, None, :]  # (B, T, K): a trigger at t
        following = tokens[:, 1:, None].expand_as(hits)  # (B, T, K)
        highest = torch.where(hits, following, -1).amax(1)  # (B, K)
        lowest = torch.where(hits, following, V).amin(1)  # (B, K)
        assert torch.equal(highest[hits.any(1)], lowest[hits.any(1)])  # one output per trigger
        assert (hits.sum(1) >= 2).sum() > B // 4  # and triggers do repeat: the check has cases
    count = lambda x: np.bincount(x.flatten().numpy(), minlength=V)  # noqa: E731
    assert same_distribution_p(count(ref_tokens[:, 0]), count(fast_tokens[:, 0])) > 1e-4
    assert same_distribution_p(count(ref_triggers), count(fast_triggers)) > 1e-4
    ref, fast = transitions(ref_tokens, ref_triggers, V), transitions(fast_tokens, fast_triggers, V)
    assert same_distribution_p(ref.flatten(), fast.flatten()) > 1e-4
    # Each sample is far from a distorted source: the test has the power to see a wrong table.
    assert same_distribution_p(ref.flatten(), np.roll(fast, 1, axis=1).flatten()) < 1e-6


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


def test_integer_and_choice_parameters_are_checked_at_their_bounds():
    assert BigramConfig(seq_len=2, triggers=64).build(0).batch("train", 0, 1).inputs.shape == (1, 2)
    BigramConfig(triggers=1, source_seed=0)
    checks = [(dict(seq_len=1), r"seq_len must be in \[2, inf\], got 1"),
              (dict(triggers=0), r"triggers must be in \[1, 64\], got 0"),
              (dict(triggers=65), r"triggers must be in \[1, 64\], got 65"),
              (dict(source_seed=-1), r"source_seed must be in \[0, inf\], got -1"),
              (dict(outputs="zipf"), r"outputs must be one of \['bigram', 'uniform'\], got 'zipf'"),
              (dict(loss_on="some"), r"loss_on must be one of \['all', 'predictable'\], got 'some'"),
              (dict(concentration=0.0), r"concentration must be finite and > 0, got 0.0"),
              (dict(source="dirichlet:1"), r"dirichlet vocabulary size must be in \[2, inf\], got 1"),
              (dict(source="dirichlet:x"), r"source must be 'dirichlet:V' with an integer V, got 'dirichlet:x'"),
              (dict(source="web"), r"source must be 'shakespeare', 'file:PATH' or 'dirichlet:V', got 'web'")]
    for kwargs, message in checks:
        with pytest.raises(ValueError, match=rf"^{message}$"):
            BigramConfig(**kwargs)
    assert BigramConfig(source="dirichlet:2", triggers=1).build(0).vocab_size == 2


def test_a_text_file_source_counts_its_characters(tmp_path):
    from collections import Counter

    from tasks.bigram import load_source

    text = "abcab" + "ba" * 3 + "d"  # 'd' ends the file: never followed by anything
    path = tmp_path / "t.txt"
    path.write_text(text)
    vocab, pi_u, pi_b = load_source(f"file:{path}")
    assert vocab == "abcd" and pi_u.dtype == pi_b.dtype == torch.float64
    unigram = Counter(text)
    torch.testing.assert_close(pi_u, torch.tensor([unigram[c] / len(text) for c in vocab], dtype=torch.float64))
    pairs = Counter(zip(text, text[1:]))
    for i, c in enumerate(vocab[:3]):
        row = [pairs[(c, d)] / sum(pairs[(c, e)] for e in vocab) for d in vocab]
        torch.testing.assert_close(pi_b[i], torch.tensor(row, dtype=torch.float64))
    torch.testing.assert_close(pi_b[3], pi_u)  # the never-followed 'd' falls back to the unigram
    one = tmp_path / "one.txt"
    one.write_text("aaaa")
    with pytest.raises(ValueError, match=rf"^source file {re.escape(repr(str(one)))} must contain at least 2 distinct characters$"):
        load_source(f"file:{one}")
    with pytest.raises(ValueError, match=rf"^source file {re.escape(repr(str(tmp_path / 'no.txt')))} does not exist$"):
        load_source(f"file:{tmp_path / 'no.txt'}")
    two = tmp_path / "two.txt"
    two.write_text("ab")  # 'a' followed once: its row is exactly (0, 1)
    torch.testing.assert_close(load_source(f"file:{two}")[2][0], torch.tensor([0.0, 1.0], dtype=torch.float64))


def test_dirichlet_source_follows_its_seed_and_concentration():
    from tasks.bigram import load_source

    _, pi_u, pi_b = load_source("dirichlet:30", 0.5, 3)
    _, again_u, again_b = load_source("dirichlet:30", 0.5, 3)
    assert torch.equal(pi_u, again_u) and torch.equal(pi_b, again_b)
    assert not torch.equal(pi_b, load_source("dirichlet:30", 0.5, 4)[2])
    torch.testing.assert_close(pi_u.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(pi_b.sum(1), torch.ones(30, dtype=torch.float64))
    peaked, flat = load_source("dirichlet:30", 0.01, 0)[2], load_source("dirichlet:30", 100.0, 0)[2]
    assert float(peaked.max(1).values.mean()) > 0.8 and float(flat.max(1).values.max()) < 2 / 30
    config = BigramConfig(source="dirichlet:30", concentration=0.01, source_seed=3)
    torch.testing.assert_close(config.build(0).pi_b, load_source("dirichlet:30", 0.01, 3)[2])


def test_shakespeare_source_is_its_shipped_counts_normalised_in_float64():
    import json
    from importlib import resources

    from tasks.bigram import load_source

    vocab, pi_u, pi_b = load_source("shakespeare")
    assert len(vocab) == 65 and pi_u.shape == (65,) and pi_b.shape == (65, 65)
    assert pi_u.dtype == pi_b.dtype == torch.float64
    torch.testing.assert_close(pi_u.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(pi_b.sum(1), torch.ones(65, dtype=torch.float64))
    # The shipped counts are integers: each probability is its count over the total at float64
    # precision (integer counts divided in float32 would be off by about 1e-8).
    data = json.loads(resources.files("tasks").joinpath("data/tinyshakespeare_char_counts.json").read_text())
    unigram, bigram = np.array(data["unigram"], dtype=np.float64), np.array(data["bigram"], dtype=np.float64)
    assert vocab == data["vocab"] and (bigram.sum(1) > 0).all()
    torch.testing.assert_close(pi_u, torch.from_numpy(unigram / unigram.sum()), rtol=1e-14, atol=0)
    torch.testing.assert_close(pi_b, torch.from_numpy(bigram / bigram.sum(1, keepdims=True)), rtol=1e-14, atol=0)


def test_load_source_defaults_are_the_configs():
    from tasks.bigram import load_source

    config = BigramConfig(source="dirichlet:7")
    _, pi_u, pi_b = load_source("dirichlet:7")
    _, config_u, config_b = load_source("dirichlet:7", config.concentration, config.source_seed)
    assert torch.equal(pi_u, config_u) and torch.equal(pi_b, config_b)
