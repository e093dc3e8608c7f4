"""In-context regular languages, RegBench style (docs/regular-languages.md).

Vocabulary: 0 = padding '.', 1..18 = letters a..r, 19 = separator '|'. A sequence joins 10..19
strings of length 1..49 drawn from one automaton (each next symbol uniform over the current state's
edges), separated by '|'. The model must infer the language from the sequence itself. One fixed
sequence per training automaton; validation and test use 500 automata each, drawn first from their own
streams and excluded (by canonical form) from training, so they do not change with the number of
training automata and never share a language with it.

Metrics from logits at every position but the first, including those whose target is '|' (scored
against the continuation distribution of the current state; after '|' the state is the start):
accuracy (the argmax is a legal next symbol) and total variation distance to the true next-symbol
distribution (TVD = ½ Σ|p − q|), micro-averaged. `ngram_baseline` gives the in-context 2-gram and 3-gram
references with the published back-off scheme.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from sandbox.validation import check_int
from tasks.automata import MAX_STATES, sample_automata
from tasks.base import Batch, Task, stream_seed
from tasks.registry import register_task

PAD, SEPARATOR, VOCAB = 0, 19, 20
STRINGS = (10, 19)
STRING_LENGTH = (1, 49)
EVAL_AUTOMATA = 500


@register_task("regular_languages")
@dataclass
class RegularLanguagesConfig:
    """train_automata: N training automata (one fixed sequence each; paper: 100 ... 40000);
    eval_automata: automata in each of the validation and test sets (paper: 500)."""

    train_automata: int = 1000
    eval_automata: int = EVAL_AUTOMATA

    def __post_init__(self):
        check_int(self.train_automata, "train_automata", low=1, high=200_000)
        check_int(self.eval_automata, "eval_automata", low=1, high=10_000)

    def build(self, seed: int) -> "RegularLanguages":
        return RegularLanguages(self, seed)


@dataclass
class SequenceSet:
    """Fixed sequences of one split: tokens (n, L) padded, lengths (n,), states after each token
    (n, L) (the state from which the next symbol is drawn) and the automata's edge masks (n, S, 20)."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    states: torch.Tensor
    edges: torch.Tensor
    automata: list


def generate_sequences(automata, rng: np.random.Generator) -> SequenceSet:
    """One sequence per automaton, walked for all automata at once (a loop over positions only)."""
    n = len(automata)
    tables = np.stack([a.table() for a in automata])  # (n, S, 20) next state or -1
    edges = tables >= 0  # (n, S, 20)
    count = edges.sum(-1)  # (n, S) out-degree
    order = np.argsort(~edges, axis=-1, kind="stable")  # legal symbols first, in increasing order
    # Plan: how many strings, how long each; a position is a separator or a letter.
    strings = rng.integers(STRINGS[0], STRINGS[1] + 1, size=n)
    lengths = rng.integers(STRING_LENGTH[0], STRING_LENGTH[1] + 1, size=(n, STRINGS[1]))
    lengths = np.where(np.arange(STRINGS[1]) < strings[:, None], lengths, 0)
    total = lengths.sum(1) + strings - 1  # (n,)
    longest = int(total.max())
    ends = np.cumsum(lengths + 1, 1) - 1  # position of the separator after string i
    separator = np.zeros((n, longest), dtype=bool)
    rows, cols = np.nonzero(np.arange(STRINGS[1]) < strings[:, None] - 1)
    separator[rows, ends[rows, cols]] = True
    tokens = np.zeros((n, longest), dtype=np.int64)
    states = np.zeros((n, longest), dtype=np.int64)
    state = np.zeros(n, dtype=np.int64)
    picks = rng.random((n, longest))
    idx = np.arange(n)
    for t in range(longest):
        choice = (picks[:, t] * count[idx, state]).astype(np.int64)  # uniform over the state's edges
        symbol = order[idx, state, choice]
        new_state = tables[idx, state, symbol]
        sep = separator[:, t]
        tokens[:, t] = np.where(sep, SEPARATOR, symbol)
        state = np.where(sep, 0, new_state)
        states[:, t] = state
    live = np.arange(longest) < total[:, None]
    tokens, states = np.where(live, tokens, PAD), np.where(live, states, 0)
    return SequenceSet(torch.tensor(tokens), torch.tensor(total), torch.tensor(states),
                       torch.tensor(edges), list(automata))


class RegularLanguages(Task):
    kind = "tokens"
    vocab_size = VOCAB

    def __init__(self, config: RegularLanguagesConfig, seed: int):
        super().__init__(seed)
        self.config, self.name = config, "regular_languages"
        rng = lambda split, what: np.random.default_rng(stream_seed(seed, split, what))  # noqa: E731
        held_out = set()
        self.sets: dict[str, SequenceSet] = {}
        for split in ("test", "val"):  # first, and from their own streams: independent of N
            automata = sample_automata(rng(split, 0), config.eval_automata, exclude=held_out)
            held_out |= {a.delta for a in automata}
            self.sets[split] = generate_sequences(automata, rng(split, 1))
        train = sample_automata(rng("train", 0), config.train_automata, exclude=held_out)
        self.sets["train"] = generate_sequences(train, rng("train", 1))
        self.seq_len = max(int(s.lengths.max()) for s in self.sets.values()) - 1

    def rows(self, split: str, index: int, batch_size: int) -> torch.Tensor:
        """Which fixed sequences make batch `index`: training walks seeded permutations epoch by epoch."""
        n = len(self.sets[split].automata)
        positions = torch.arange(index * batch_size, (index + 1) * batch_size)
        if split != "train":
            return positions % n
        epochs, offsets = positions // n, positions % n
        rows = torch.empty_like(positions)
        for epoch in epochs.unique().tolist():
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(stream_seed(self.seed, "train", 10**9 + epoch)))
            rows[epochs == epoch] = perm[offsets[epochs == epoch]]
        return rows

    def sample(self, gen, split, index, batch_size) -> Batch:
        return self.batch_of_rows(split, self.rows(split, index, batch_size))

    def batch_of_rows(self, split: str, rows: torch.Tensor) -> Batch:
        """The fixed sequences `rows` of `split`, padded to the longest of them."""
        data = self.sets[split]
        width = int(data.lengths[rows].max())
        tokens = data.tokens[rows, :width]  # (B, L)
        inputs, targets = tokens[:, :-1], tokens[:, 1:].clone()
        real = torch.arange(width - 1) < (data.lengths[rows, None] - 1)  # (B, L-1) input positions with a target
        targets[(targets == SEPARATOR) | ~real] = -100
        # True next-symbol distribution at each input position: uniform over the current state's edges.
        legal = data.edges[rows[:, None], data.states[rows, : width - 1]]  # (B, L-1, 20)
        next_dist = legal.double() / legal.sum(-1, keepdim=True).clamp_min(1)
        scored = real.clone()
        scored[:, 0] = False  # every position but the first
        return Batch(inputs, targets, extras={"next_dist": next_dist, "scored": scored, "rows": rows})

    def metrics(self, outputs, batch) -> dict[str, float]:
        return {"loss": float(self.loss(outputs, batch)),
                **regular_language_scores(torch.softmax(outputs.double(), -1), batch)}

    def describe(self) -> dict:
        sizes = lambda s: [a.states for a in self.sets[s].automata]  # noqa: E731
        return {"name": self.name, "kind": self.kind, "vocab": ".abcdefghijklmnopqr|",
                "train_automata": self.config.train_automata, "eval_automata": self.config.eval_automata,
                "mean_states": {s: float(np.mean(sizes(s))) for s in self.sets},
                "max_states": MAX_STATES, "seq_len": self.seq_len}


def regular_language_scores(probabilities: torch.Tensor, batch: Batch) -> dict[str, float]:
    """accuracy and TVD of predicted next-symbol distributions (B, T, 20) at the scored positions."""
    truth, scored = batch.extras["next_dist"].to(probabilities), batch.extras["scored"]
    legal = truth.gather(-1, probabilities.argmax(-1, keepdim=True))[..., 0] > 0  # (B, T)
    tvd = 0.5 * (probabilities - truth).abs().sum(-1)  # (B, T)
    return {"accuracy": float(legal[scored].double().mean()), "tvd": float(tvd[scored].mean())}


FILLER = -1  # pads the start of every string, so that its first letters have an order-n history


class _Counts:
    """n-gram counts of one sequence so far, for n = 1..order, over the strings read up to now.

    `gram[h]` is the count of the (n-1)-gram h anywhere (also at the end of a string, where nothing
    follows it yet); `after[h]` counts the letters that followed h. Every string is padded at its start
    with order-1 fillers, which are counted as symbols, as the published baseline does.
    """

    def __init__(self, order: int):
        self.order = order
        self.gram: Counter = Counter()
        self.after: dict[tuple, Counter] = defaultdict(Counter)
        self.seen: list[int] = []  # letters read so far in the sequence, in order of appearance
        self.symbols = 0  # unigram count, fillers included
        self.text: list[int] = []

    def new_string(self) -> None:
        self.text = [FILLER] * (self.order - 1)
        for end in range(1, len(self.text) + 1):  # the grams made of fillers only
            for n in range(1, end + 1):
                self.gram[tuple(self.text[end - n:end])] += 1
        self.symbols += len(self.text)

    def append(self, letter: int) -> None:
        if letter not in self.after[()]:
            self.seen.append(letter)
        for n in range(1, self.order + 1):
            history = tuple(self.text[len(self.text) - n + 1:]) if n > 1 else ()
            self.after[history][letter] += 1
            self.gram[history + (letter,)] += 1
        self.text.append(letter)
        self.symbols += 1

    def history(self) -> tuple:
        return tuple(self.text[len(self.text) - self.order + 1:]) if self.order > 1 else ()

    def probabilities(self, history: tuple, candidates: list[int]) -> dict[int, float]:
        """Back-off probabilities of the `candidates` letters after `history`.

        A letter seen after h gets c(h·x)/c(h); the mass left, 1 - Σ over all letters seen after h,
        is spread over the unseen candidates in proportion to their probabilities after h minus its
        first symbol, down to the unigram frequencies."""
        if not history:
            unigrams = self.after[()]
            return {x: unigrams[x] / self.symbols for x in candidates}
        counts, total = self.after.get(history, {}), self.gram[history]
        out = {x: counts[x] / total for x in candidates if x in counts}
        unseen = [x for x in candidates if x not in counts]
        if unseen:
            lower = self.probabilities(history[1:], unseen)
            left, norm = 1.0 - sum(counts.values()) / max(total, 1), sum(lower.values())
            out.update({x: left * p / norm for x, p in lower.items()})
        return out


def ngram_predictions(inputs: torch.Tensor, n: int) -> torch.Tensor:
    """In-context n-gram predictions (B, T, 20) with back-off, as the published RegBench baseline
    (Akyürek et al. 2024): counts over the strings of the sequence read so far, each padded at its
    start; the history restarts at each '|'; only letters already seen in the sequence get mass; the
    distribution is normalised at the end (where no letter is left for the back-off, Σ < 1)."""
    check_int(n, "n", low=1, high=8)
    batch, length = inputs.shape
    out = np.zeros((batch, length, VOCAB))
    for b in range(batch):
        counts = _Counts(n)
        counts.new_string()
        for t, token in enumerate(inputs[b].tolist()):
            if token == PAD:
                break
            if token == SEPARATOR:
                counts.new_string()
            else:
                counts.append(token)
            if not counts.seen:
                out[b, t, 1:SEPARATOR] = 1 / (SEPARATOR - 1)
                continue
            p = counts.probabilities(counts.history(), counts.seen)
            norm = sum(p.values())
            for x, value in p.items():
                out[b, t, x] = value / norm
    return torch.from_numpy(out)


def ngram_baseline(task: RegularLanguages, split: str = "test", n: int = 3, batch_size: int = 50) -> dict[str, float]:
    """accuracy and TVD of the in-context n-gram predictor over every sequence of `split`."""
    sums, weights = {"accuracy": 0.0, "tvd": 0.0}, 0
    for rows in torch.arange(len(task.sets[split].automata)).split(batch_size):
        batch = task.batch_of_rows(split, rows)
        scores = regular_language_scores(ngram_predictions(batch.inputs, n), batch)
        weight = int(batch.extras["scored"].sum())
        for key in sums:
            sums[key] += scores[key] * weight
        weights += weight
    return {key: value / weights for key, value in sums.items()}
