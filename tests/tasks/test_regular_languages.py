"""Regular languages: automata, minimisation, disjoint splits, sequences, metrics, baselines."""

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.automata import LETTERS, Automaton, canonical_form, minimise, random_automaton, trim
from tasks.regular_languages import (
    SEPARATOR,
    RegularLanguagesConfig,
    ngram_baseline,
    ngram_predictions,
    regular_language_scores,
)


@pytest.fixture(scope="module")
def task():
    return RegularLanguagesConfig(train_automata=60, eval_automata=40).build(0)


def walks(automaton, rng, count, length):
    """Random accepted strings (walks from the start) of the automaton."""
    out = []
    for _ in range(count):
        state, string = 0, []
        for _ in range(int(rng.integers(1, length + 1))):
            symbol, state = automaton.delta[state][int(rng.integers(len(automaton.delta[state])))]
            string.append(symbol)
        out.append(string)
    return out


def relabel(automaton, rng):
    """The same automaton with states 1.. permuted (start stays 0)."""
    perm = [0] + list(1 + rng.permutation(automaton.states - 1))
    inverse = {old: new for new, old in enumerate(perm)}
    return Automaton(tuple(tuple(sorted((s, inverse[t]) for s, t in automaton.delta[old])) for old in perm))


@settings(max_examples=40)
@given(seed=st.integers(0, 2**31))
def test_minimisation_preserves_the_language_and_is_canonical(seed):
    rng = np.random.default_rng(seed)
    original = random_automaton(rng)
    minimal = minimise(original)
    assert minimal.states <= trim(original).states <= original.states
    assert minimise(minimal) == minimal
    letters = sorted({s for edges in original.delta for s, _ in edges})
    probes = walks(original, rng, 30, 12) + walks(minimal, rng, 30, 12)
    probes += [list(rng.choice(letters, size=int(rng.integers(1, 6)))) for _ in range(60)]
    for string in probes:
        assert original.accepts(string) == minimal.accepts(string)
    assert canonical_form(relabel(original, rng)) == canonical_form(original)


def test_equivalent_states_merge():
    # 0 -a-> 1, 0 -b-> 2; 1 and 2 both read c back to 0: they accept the same continuations.
    automaton = Automaton((((1, 1), (2, 2)), ((3, 0),), ((3, 0),)))
    assert minimise(automaton).states == 2
    assert minimise(automaton).accepts([1, 3, 2, 3]) and not minimise(automaton).accepts([3])


def test_random_automata_follow_the_specification():
    rng = np.random.default_rng(0)
    for _ in range(200):
        automaton = random_automaton(rng)
        assert 4 <= automaton.states <= 12
        for state, edges in enumerate(automaton.delta):
            symbols, targets = [s for s, _ in edges], [t for _, t in edges]
            assert 1 <= len(edges) <= 3 and len(set(symbols)) == len(symbols) and len(set(targets)) == len(targets)
            assert state not in targets and all(1 <= s <= 18 for s in symbols)


def test_random_alphabets_have_4_to_18_distinct_letters_and_hold_every_edge_symbol():
    class Recording:  # the generator's own draws, with each alphabet drawn from the 18 letters recorded
        def __init__(self, seed):
            self.rng, self.alphabets = np.random.default_rng(seed), []

        def integers(self, *args, **kwargs):
            return self.rng.integers(*args, **kwargs)

        def choice(self, a, *args, **kwargs):
            out = self.rng.choice(a, *args, **kwargs)
            if a is LETTERS:
                self.alphabets.append(out.tolist())
            return out

    rng = Recording(0)
    automata = [random_automaton(rng) for _ in range(300)]
    assert len(rng.alphabets) == 300
    # 300 draws of 15 sizes: every size from 4 to 18 appears (one missing has p < 1e-7).
    assert sorted({len(alphabet) for alphabet in rng.alphabets}) == list(range(4, 19))
    for alphabet, automaton in zip(rng.alphabets, automata):
        assert len(set(alphabet)) == len(alphabet) and set(alphabet) <= set(range(1, 19))
        assert {symbol for edges in automaton.delta for symbol, _ in edges} <= set(alphabet)


def test_every_generated_string_is_accepted(task):
    for split, data in task.sets.items():
        for row, automaton in enumerate(data.automata):
            tokens = data.tokens[row, : data.lengths[row]].tolist()
            strings = " ".join(map(str, tokens)).split(str(SEPARATOR))
            strings = [[int(x) for x in s.split()] for s in strings]
            assert 10 <= len(strings) <= 19
            assert all(1 <= len(s) <= 49 and automaton.accepts(s) for s in strings), (split, row)
            assert (data.tokens[row, data.lengths[row]:] == 0).all()


def test_splits_are_disjoint_and_test_set_does_not_depend_on_n():
    small = RegularLanguagesConfig(train_automata=30, eval_automata=20).build(0)
    large = RegularLanguagesConfig(train_automata=90, eval_automata=20).build(0)
    forms = {split: {a.delta for a in small.sets[split].automata} for split in small.sets}
    assert not forms["train"] & forms["test"] and not forms["train"] & forms["val"] and not forms["val"] & forms["test"]
    assert len(forms["train"]) == 30
    assert torch.equal(small.sets["test"].tokens, large.sets["test"].tokens)
    # Training automata are a prefix: more of them extends, never replaces, the set.
    assert [a.delta for a in large.sets["train"].automata[:30]] == [a.delta for a in small.sets["train"].automata]


def test_targets_are_legal_under_the_true_distribution_and_separators_ignored(task):
    batch = task.batch("train", 0, 16)
    letters = batch.targets >= 1  # letter targets (separators and padding are -100)
    probability = batch.extras["next_dist"].gather(-1, batch.targets.clamp(min=0)[..., None])[..., 0]
    assert (probability[letters] > 0).all()
    shifted = batch.inputs[:, 1:]
    assert (batch.targets[:, :-1][shifted == SEPARATOR] == -100).all()
    torch.testing.assert_close(batch.extras["next_dist"][batch.extras["scored"]].sum(-1),
                               torch.ones(int(batch.extras["scored"].sum()), dtype=torch.float64))


def test_metrics_perfect_and_uniform_predictors(task):
    batch = task.batch("val", 0, 8)
    perfect = regular_language_scores(batch.extras["next_dist"], batch)
    assert perfect == {"accuracy": 1.0, "tvd": 0.0}
    uniform = torch.full_like(batch.extras["next_dist"], 1 / 20)
    assert 0.5 < regular_language_scores(uniform, batch)["tvd"] < 1.0
    logits = torch.log(batch.extras["next_dist"].clamp_min(1e-12)).float()
    assert task.metrics(logits, batch)["accuracy"] == 1.0


def test_each_epoch_visits_every_training_sequence_once(task):
    seen = torch.cat([task.rows("train", i, 12) for i in range(5)])  # 60 = one epoch
    assert sorted(seen.tolist()) == list(range(60))
    assert not torch.equal(torch.cat([task.rows("train", i, 12) for i in range(5, 10)]), seen)


def test_ngram_baselines_order(task):
    two, three = ngram_baseline(task, "test", 2), ngram_baseline(task, "test", 3)
    assert 0.6 < two["accuracy"] < three["accuracy"] <= 1.0
    assert three["tvd"] < two["tvd"] < 0.6


def test_ngram_baseline_micro_averages_every_scored_position_of_the_split():
    # Six test sequences in chunks of 4 and 2: the chunks' scores, weighted by their scored positions,
    # must give the scores of all positions at once; the defaults are the 3-gram on the test split.
    small = RegularLanguagesConfig(train_automata=1, eval_automata=6).build(0)
    whole = small.batch_of_rows("test", torch.arange(6))
    for n in (2, 3):
        expected = regular_language_scores(ngram_predictions(whole.inputs, n), whole)
        chunked = ngram_baseline(small, "test", n, batch_size=4)
        assert chunked.keys() == expected.keys()
        for key in expected:
            assert chunked[key] == pytest.approx(expected[key], rel=0, abs=1e-12), (n, key)
    assert ngram_baseline(small) == ngram_baseline(small, "test", 3)
    assert ngram_baseline(small) != ngram_baseline(small, "test", 4)


def backoff_reference(prefix: list[int], n: int) -> dict[int, float]:
    """The published back-off baseline written from its description, recounting from scratch: the
    strings read so far, each padded with n-1 fillers ('_'), all their k-grams counted for k <= n."""
    strings = " ".join(map(str, prefix)).split(str(SEPARATOR))
    strings = [["_"] * (n - 1) + [int(x) for x in s.split()] for s in strings]
    grams = Counter(tuple(s[i:i + k]) for s in strings for k in range(1, n + 1) for i in range(len(s) - k + 1))
    vocab = sorted({x for s in strings for x in s if x != "_"})
    unigrams = sum(c for g, c in grams.items() if len(g) == 1)

    def prob(history, chars):
        if not history:
            return {x: grams[(x,)] / unigrams for x in chars}
        seen = {x: grams[history + (x,)] / grams[history] for x in vocab if grams[history + (x,)]}
        unseen = [x for x in chars if x not in seen]
        lower = prob(history[1:], unseen) if unseen else {}
        left = 1 - sum(seen.values())
        return {x: seen[x] if x in seen else left * lower[x] / sum(lower.values()) for x in chars}

    p = prob(tuple(strings[-1][len(strings[-1]) - n + 1:]) if n > 1 else (), vocab)
    return {x: v / sum(p.values()) for x, v in p.items()}


def test_ngram_backoff_by_hand():
    # "a b a c d | a" (letters 1..4): after "a" the 2-gram saw b and c once each among 3 a's, so
    # P(b) = P(c) = 1/3; the 1/3 left goes to the unseen a and d in proportion to their unigram
    # counts 3 and 1 (of 8 symbols, the two fillers included): P(a) = 1/4, P(d) = 1/12.
    sequence = torch.tensor([[1, 2, 1, 3, 4, SEPARATOR, 1]])
    p = ngram_predictions(sequence, 2)[0, -1]
    torch.testing.assert_close(p[1:5], torch.tensor([1 / 4, 1 / 3, 1 / 3, 1 / 12], dtype=torch.float64))
    assert p.sum().item() == pytest.approx(1.0) and p[SEPARATOR] == 0


def test_trigram_history_at_a_string_start_holds_the_filler():
    # "b a c | a b | a" (letters 1..3): after "|a" the 3-gram history is (filler, a), seen twice at a
    # string start and followed once by b: P(b) = 1/2. The 1/2 left backs off to the 2-gram after "a"
    # (3 a's, followed by c and b): c gets 1/3 there and the unseen a the 1/3 left; renormalised over
    # {a, c}, P(a) = P(c) = 1/4. The 2-gram history "a" alone would give 1/3 to each.
    sequence = [2, 1, 3, SEPARATOR, 1, 2, SEPARATOR, 1]
    p = ngram_predictions(torch.tensor([sequence]), 3)[0, -1]
    torch.testing.assert_close(p[1:4], torch.tensor([1 / 4, 1 / 2, 1 / 4], dtype=torch.float64))
    assert backoff_reference(sequence, 3) == pytest.approx({1: 1 / 4, 2: 1 / 2, 3: 1 / 4}, abs=1e-12)


def test_before_any_letter_the_ngram_prediction_is_uniform_over_the_letters():
    # A sequence that opens with separators has seen no letter yet: every letter gets 1/18, padding and
    # separator nothing; the first letter then starts the counts as usual.
    p = ngram_predictions(torch.tensor([[SEPARATOR, SEPARATOR, 2, SEPARATOR]]), 2)[0]  # (4, 20)
    uniform = torch.zeros(20, dtype=torch.float64)
    uniform[1:SEPARATOR] = 1 / 18
    assert torch.equal(p[0], uniform) and torch.equal(p[1], uniform)
    expected = torch.zeros(20, dtype=torch.float64)
    expected[2] = 1.0  # only b has been seen
    assert torch.equal(p[2], expected) and torch.equal(p[3], expected)


def test_ngram_order_is_checked_at_its_bounds():
    sequence = torch.tensor([[1, 2, 1]])
    for n in (1, 8):
        torch.testing.assert_close(ngram_predictions(sequence, n).sum(-1), torch.ones(1, 3, dtype=torch.float64))
    for n in (0, 9):
        with pytest.raises(ValueError, match=rf"^n must be in \[1, 8\], got {n}$"):
            ngram_predictions(sequence, n)


@settings(max_examples=60)
@given(n=st.integers(1, 4), tokens=st.lists(st.sampled_from([1, 2, 3, 5, 5, 7, SEPARATOR]), min_size=1, max_size=30))
def test_ngram_counts_match_the_from_scratch_reference(n, tokens):
    tokens = [1] + tokens  # a sequence starts with a letter
    p = ngram_predictions(torch.tensor([tokens]), n)[0]  # (T, 20)
    for t in range(len(tokens)):
        expected = backoff_reference(tokens[:t + 1], n)
        assert set(np.nonzero(p[t].numpy())[0]) <= set(expected)
        for x, value in expected.items():
            assert p[t, x].item() == pytest.approx(value, abs=1e-12), (t, x)


def published_ngram_check(sequences: int):
    """(2-gram, 3-gram) scores on the first test sequences of the figure's test set."""
    task = RegularLanguagesConfig(train_automata=1, eval_automata=500).build(0)
    batch = task.batch_of_rows("test", torch.arange(sequences))
    return [regular_language_scores(ngram_predictions(batch.inputs, n), batch) for n in (2, 3)]


@pytest.mark.parametrize("sequences", [pytest.param(500, marks=pytest.mark.slow), 100])
def test_ngram_baselines_reproduce_the_published_numbers(sequences):
    # Akyürek et al. (2024), table of in-context baselines: 2-gram .818 / .337, 3-gram .930 / .265
    # (accuracy / TVD with TVD = ½ L1); the tolerances: .01 in accuracy, .015 in TVD.
    for scores, (accuracy, tvd) in zip(published_ngram_check(sequences), [(.818, .337), (.930, .265)]):
        assert abs(scores["accuracy"] - accuracy) <= 0.01 and abs(scores["tvd"] - tvd) <= 0.015, scores


def test_streams_are_pure(task):
    assert torch.equal(task.batch("train", 7, 4).inputs, task.batch("train", 7, 4).inputs)


@pytest.mark.parametrize("kwargs, match", [(dict(train_automata=0), "train_automata must be in"),
                                           (dict(eval_automata=0), "eval_automata must be in")])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RegularLanguagesConfig(**kwargs)


def test_next_state_table():
    automaton = Automaton((((1, 1), (2, 0)), ((3, 1),)))
    table = automaton.table(max_states=3)
    expected = np.full((3, 20), -1, dtype=np.int64)
    expected[0, 1], expected[0, 2], expected[1, 3] = 1, 0, 1
    assert table.dtype == np.int64 and np.array_equal(table, expected)


def test_sampling_distinct_automata_gives_up_after_its_attempt_budget(monkeypatch):
    import tasks.automata as automata

    only = Automaton((((1, 0),),))  # the language a*: every draw is the same automaton
    calls, budget = [], [0]

    def draw(rng):
        # A count that never reached its budget would draw for ever: stop it one draw past the budget.
        calls.append(1)
        assert len(calls) <= budget[0], f"drew {len(calls)} automata, past the budget of {budget[0]}"
        return only

    monkeypatch.setattr(automata, "random_automaton", draw)
    budget[0] = 1
    assert automata.sample_automata(np.random.default_rng(0), 1) == [only]
    calls.clear()
    budget[0] = 50 * 2 + 1000  # 50 draws per automaton asked for, plus 1000
    with pytest.raises(RuntimeError, match=r"^could only find 1 distinct automata out of 2 asked for$"):
        automata.sample_automata(np.random.default_rng(0), 2)
    assert len(calls) == budget[0]
    calls.clear()
    budget[0] = 50 * 1 + 1000
    with pytest.raises(RuntimeError, match=r"^could only find 0 distinct automata out of 1 asked for$"):
        automata.sample_automata(np.random.default_rng(0), 1, exclude={only.delta})
    assert len(calls) == budget[0]


def test_sequences_join_10_to_19_strings_of_1_to_49_symbols(task):
    # Sequences generated here as well as the module task's: mutmut records a module fixture's calls
    # for the one test that builds it, so only a test that generates its own sequences is run against
    # each mutant of the generator.
    from tasks.regular_languages import generate_sequences

    def strings(data):
        counts, lengths = [], []
        for row, length in zip(data.tokens.tolist(), data.lengths.tolist()):
            assert row[length - 1] != SEPARATOR and all(t == 0 for t in row[length:])  # no trailing '|'
            joined = "".join("|" if t == SEPARATOR else "a" for t in row[:length]).split("|")
            counts.append(len(joined))
            lengths += [len(s) for s in joined]
        return counts, lengths

    automaton = Automaton((((1, 1), (2, 1)), ((3, 0),)))
    counts, lengths = strings(generate_sequences([automaton] * 150, np.random.default_rng(0)))
    # 150 sequences and ~2000 strings: every end of both ranges is drawn (missing one has p < 1e-6).
    assert min(counts) == 10 and max(counts) == 19
    assert min(lengths) == 1 and max(lengths) == 49
    for data in task.sets.values():
        counts, lengths = strings(data)
        assert 10 <= min(counts) and max(counts) <= 19 and 1 <= min(lengths) and max(lengths) <= 49


@pytest.mark.parametrize("field, low, high", [("train_automata", 1, 200_000), ("eval_automata", 1, 10_000)])
def test_automata_counts_are_accepted_exactly_within_their_range(field, low, high):
    for value in (low, high):
        assert getattr(RegularLanguagesConfig(**{field: value}), field) == value
    for value in (low - 1, high + 1):
        with pytest.raises(ValueError, match=rf"^{field} must be in \[{low}, {high}\], got {value}$"):
            RegularLanguagesConfig(**{field: value})


def test_each_next_symbol_is_uniform_over_the_state_edges():
    # One state with three edges (a, b, c) looping back to itself through a second state: every
    # letter read at state 0 is one of three, each with probability 1/3.
    from tasks.regular_languages import generate_sequences

    automaton = Automaton((((1, 1), (2, 1), (3, 1)), ((4, 0),)))
    data = generate_sequences([automaton] * 40, np.random.default_rng(0))
    read = Counter()
    for row, length in zip(data.tokens.tolist(), data.lengths.tolist()):
        state = 0
        for token in row[:length]:
            if token == SEPARATOR:
                state = 0
                continue
            if state == 0:
                read[token] += 1
            state = automaton.step(state, token)
    total = sum(read.values())
    assert set(read) == {1, 2, 3} and total > 3000
    for letter in (1, 2, 3):
        assert read[letter] / total == pytest.approx(1 / 3, abs=0.03)


def test_states_are_the_walk_of_each_sequence_and_zero_on_padding(task):
    from tasks.regular_languages import generate_sequences

    # The module task's sets, and sequences generated in this test (which mutmut then runs it against).
    generated = generate_sequences(task.sets["val"].automata[:10], np.random.default_rng(1))
    for split, data in (*task.sets.items(), ("generated", generated)):
        for row, automaton in enumerate(data.automata):
            length, state, expected = int(data.lengths[row]), 0, []
            for token in data.tokens[row, :length].tolist():
                state = 0 if token == SEPARATOR else automaton.step(state, token)
                expected.append(state)
            assert data.states[row, :length].tolist() == expected, (split, row)
            assert (data.states[row, length:] == 0).all()
            # The edge masks are those of the row's own automaton.
            assert torch.equal(data.edges[row], torch.from_numpy(automaton.table() >= 0))


def test_splits_stay_disjoint_when_every_stream_draws_the_same_languages_first(monkeypatch):
    # Each random stream yields the same three languages in the same order, so test, validation and
    # training would all start with the first one: only the exclusion keeps the splits apart.
    import tasks.automata as automata

    pool = [Automaton((((1, 0),),)), Automaton((((2, 0),),)), Automaton((((3, 0),),))]
    streams, drawn = [], []  # each stream seen (kept alive, so that no id is reused) and its draws so far

    def draw(rng):
        if not any(rng is s for s in streams):
            streams.append(rng)
            drawn.append(0)
        k = next(i for i, s in enumerate(streams) if s is rng)
        drawn[k] += 1
        return pool[(drawn[k] - 1) % len(pool)]

    monkeypatch.setattr(automata, "random_automaton", draw)
    task = RegularLanguagesConfig(train_automata=1, eval_automata=1).build(0)
    assert [task.sets[s].automata[0] for s in ("test", "val", "train")] == pool


def test_vocabulary_names_padding_letters_a_to_r_and_separator(task):
    vocab = task.describe()["vocab"]  # id i is written vocab[i]
    assert vocab[0] == "." and vocab[SEPARATOR] == "|" and len(vocab) == SEPARATOR + 1
    assert [ord(c) - ord("a") + 1 for c in vocab[1:SEPARATOR]] == list(range(1, SEPARATOR))


def test_targets_and_scored_positions_by_hand(task):
    rows = torch.tensor([3, 0, 7, 1])
    batch = task.batch_of_rows("val", rows)
    data = task.sets["val"]
    width = int(data.lengths[rows].max())
    assert batch.inputs.shape == batch.targets.shape == batch.extras["scored"].shape == (4, width - 1)
    assert torch.equal(batch.extras["rows"], rows)  # the batch names the fixed sequences it holds
    for b, row in enumerate(rows.tolist()):
        length, tokens = int(data.lengths[row]), data.tokens[row].tolist()
        for t in range(width - 1):
            assert batch.inputs[b, t] == tokens[t]
            letter_next = t + 1 < length and tokens[t + 1] != SEPARATOR
            assert batch.targets[b, t] == (tokens[t + 1] if letter_next else -100), (b, t)
            assert bool(batch.extras["scored"][b, t]) == (1 <= t < length - 1), (b, t)
            if t < length - 1:  # the true next-symbol distribution: uniform over the state's edges
                state = int(data.states[row, t])
                edges = data.automata[row].delta[state]
                expected = torch.zeros(20, dtype=torch.float64)
                expected[[s for s, _ in edges]] = 1 / len(edges)
                assert torch.equal(batch.extras["next_dist"][b, t], expected), (b, t)


def test_scores_compare_in_the_precision_of_the_predictions(task):
    batch = task.batch("val", 0, 4)
    exact = batch.extras["next_dist"].float()  # float32 predictions equal to the truth rounded to float32
    assert regular_language_scores(exact, batch) == {"accuracy": 1.0, "tvd": 0.0}
