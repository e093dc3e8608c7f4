"""In-context bigrams with trigger tokens: the induction-head task (docs/trigger-bigrams.md).

A global bigram source (π_u, π_b) generates text, except after K trigger tokens: each sequence draws
one output per trigger, and every occurrence of a trigger is followed by that output. The global
statistics can be learned once; the trigger outputs must be read from the context. Labels per target
position: 0 = global bigram, 1 = first occurrence of a trigger (its output is unpredictable), k >= 2 =
its k-th occurrence (predictable in context).

Sources: the tiny-Shakespeare character counts shipped with the package (`shakespeare`), the
characters of a text file (`file:PATH`), or a random Dirichlet bigram source (`dirichlet:V`).
Generation is vectorised over the batch (a loop over time only); `reference_sequences` is the plain
per-sequence loop, kept to check it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sandbox.validation import check_choice, check_int, check_positive
from tasks.base import Batch, Task
from tasks.registry import register_task


def load_source(source: str, concentration: float = 0.5, source_seed: int = 0):
    """(vocab string or None, π_u (V,), π_b (V, V)) as float64 tensors; rows of π_b sum to 1."""
    if source == "shakespeare":
        data = json.loads(resources.files("tasks").joinpath("data/tinyshakespeare_char_counts.json").read_text())
        vocab, unigram, bigram = data["vocab"], np.array(data["unigram"], float), np.array(data["bigram"], float)
    elif source.startswith("file:"):
        path = Path(source[5:])
        if not path.is_file():
            raise ValueError(f"source file {str(path)!r} does not exist")
        text = path.read_text()
        vocab = "".join(sorted(set(text)))
        if len(vocab) < 2:
            raise ValueError(f"source file {str(path)!r} must contain at least 2 distinct characters")
        ids = np.array([vocab.index(c) for c in text])
        unigram = np.bincount(ids, minlength=len(vocab)).astype(float)
        bigram = np.zeros((len(vocab), len(vocab)))
        np.add.at(bigram, (ids[:-1], ids[1:]), 1)
    elif source.startswith("dirichlet:"):
        try:
            size = int(source[10:])
        except ValueError:
            raise ValueError(f"source must be 'dirichlet:V' with an integer V, got {source!r}") from None
        check_int(size, "dirichlet vocabulary size", low=2)
        rng = np.random.default_rng(source_seed)
        vocab, unigram = None, rng.dirichlet(np.ones(size))
        bigram = rng.dirichlet(np.full(size, concentration), size=size)
    else:
        raise ValueError(f"source must be 'shakespeare', 'file:PATH' or 'dirichlet:V', got {source!r}")
    pi_u = torch.tensor(unigram / unigram.sum())
    rows = torch.tensor(bigram)
    empty = rows.sum(1, keepdim=True) == 0  # a character never followed by anything: fall back to π_u
    pi_b = torch.where(empty, pi_u, rows / rows.sum(1, keepdim=True).clamp_min(1))
    return vocab, pi_u, pi_b


def alias_tables(probabilities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Vose's alias tables for each row of a (R, V) stochastic matrix: (accept (R, V), alias (R, V)).

    A draw from row r: j uniform on 0..V-1, then j with probability accept[r, j], else alias[r, j].
    Exact (up to float rounding) and O(1) per draw, where inverse-CDF search reads a whole row.
    """
    rows, size = probabilities.shape
    accept = np.ones((rows, size))
    alias = np.tile(np.arange(size), (rows, 1))
    for r, row in enumerate(probabilities.numpy()):
        scaled = row * size
        small = [j for j in range(size) if scaled[j] < 1.0]
        large = [j for j in range(size) if scaled[j] >= 1.0]
        while small and large:
            j, k = small.pop(), large.pop()
            accept[r, j], alias[r, j] = scaled[j], k
            scaled[k] -= 1.0 - scaled[j]
            (small if scaled[k] < 1.0 else large).append(k)
    return torch.tensor(accept), torch.tensor(alias)


@register_task("bigram")
@dataclass
class BigramConfig:
    """seq_len: T; triggers: K; random_triggers: draw K triggers from π_u per sequence (else the K most
    frequent tokens); outputs: 'uniform' over the vocabulary or 'bigram' (from π_b(·|trigger));
    loss_on: 'all' positions or only 'predictable' ones (label >= 2); source: 'shakespeare',
    'file:PATH' or 'dirichlet:V'; concentration, source_seed: of the Dirichlet source."""

    seq_len: int = 256
    triggers: int = 5
    random_triggers: bool = False
    outputs: str = "uniform"
    loss_on: str = "all"
    source: str = "shakespeare"
    concentration: float = 0.5
    source_seed: int = 0

    def __post_init__(self):
        check_int(self.seq_len, "seq_len", low=2)
        check_choice(self.outputs, "outputs", {"uniform", "bigram"})
        check_choice(self.loss_on, "loss_on", {"all", "predictable"})
        check_positive(self.concentration, "concentration")
        check_int(self.source_seed, "source_seed", low=0)
        _, pi_u, _ = load_source(self.source, self.concentration, self.source_seed)
        check_int(self.triggers, "triggers", low=1, high=len(pi_u) - 1)

    def build(self, seed: int) -> "TriggerBigrams":
        return TriggerBigrams(self, seed)


class TriggerBigrams(Task):
    kind = "tokens"

    def __init__(self, config: BigramConfig, seed: int):
        super().__init__(seed)
        self.config, self.name = config, "bigram"
        self.vocab, self.pi_u, self.pi_b = load_source(config.source, config.concentration, config.source_seed)
        self.vocab_size, self.seq_len = len(self.pi_u), config.seq_len
        self.fixed_triggers = torch.argsort(self.pi_u, descending=True)[: config.triggers]  # (K,)
        self.cdf_u = torch.cumsum(self.pi_u, 0)  # (V,)
        self.cdf_b = torch.cumsum(self.pi_b, 1)  # (V, V)
        accept, alias = alias_tables(self.pi_b)  # (V, V) each
        self.accept, self.alias = accept.flatten(), alias.flatten()  # indexed by current·V + j

    def draw_triggers_and_outputs(self, gen: torch.Generator, batch_size: int):
        """triggers (B, K) and their outputs (B, K)."""
        K, V = self.config.triggers, self.vocab_size
        if self.config.random_triggers:  # K distinct draws from π_u (Gumbel top-k)
            gumbel = -torch.log(-torch.log(torch.rand(batch_size, V, generator=gen, dtype=torch.float64)))
            triggers = torch.topk(torch.log(self.pi_u) + gumbel, K, -1).indices
        else:
            triggers = self.fixed_triggers.expand(batch_size, K)
        if self.config.outputs == "uniform":
            outputs = torch.randint(V, (batch_size, K), generator=gen)
        else:
            u = torch.rand(batch_size, K, 1, generator=gen, dtype=torch.float64)
            outputs = torch.searchsorted(self.cdf_b[triggers], u)[..., 0].clamp_max(V - 1)
        return triggers, outputs

    def sequences(self, gen: torch.Generator, batch_size: int):
        """tokens (B, T+1), triggers (B, K), outputs (B, K), vectorised over the batch."""
        T, V = self.seq_len, self.vocab_size
        triggers, outputs = self.draw_triggers_and_outputs(gen, batch_size)
        next_of = torch.full((batch_size, V), -1, dtype=torch.long)  # o(i) for triggers, -1 otherwise
        next_of.scatter_(1, triggers, outputs)
        # All random draws at once, laid out time-major so that each step reads contiguous rows.
        first = torch.rand(batch_size, generator=gen, dtype=torch.float64)  # (B,)
        columns = torch.randint(V, (T, batch_size), generator=gen)  # (T, B) alias-table columns
        coins = torch.rand(T, batch_size, generator=gen, dtype=torch.float64)  # (T, B)
        tokens = torch.empty(T + 1, batch_size, dtype=torch.long)  # time-major while generating
        tokens[0] = torch.searchsorted(self.cdf_u, first).clamp_max(V - 1)
        rows = torch.arange(batch_size) * V  # (B,) offsets into the flattened next_of table
        next_of = next_of.flatten()
        for t in range(T):
            current = tokens[t]  # (B,)
            cell = current * V + columns[t]  # (B,)
            global_next = torch.where(coins[t] < self.accept[cell], columns[t], self.alias[cell])
            forced = next_of[rows + current]  # (B,) the trigger's output, or -1
            tokens[t + 1] = torch.where(forced >= 0, forced, global_next)
        tokens = tokens.T.contiguous()  # (B, T+1)
        return tokens, triggers, outputs

    @staticmethod
    def labels(inputs: torch.Tensor, triggers: torch.Tensor) -> torch.Tensor:
        """(B, T): 0 if inputs[t] is no trigger, else how many times it has occurred up to t."""
        hits = (inputs[:, :, None] == triggers[:, None, :]).long()  # (B, T, K)
        return (hits * hits.cumsum(1)).sum(-1)

    def sample(self, gen, split, index, batch_size) -> Batch:
        tokens, triggers, outputs = self.sequences(gen, batch_size)
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        return Batch(inputs, targets, self.labels(inputs, triggers), {"triggers": triggers, "outputs": outputs})

    def loss_targets(self, batch) -> torch.Tensor:
        """The targets the loss sees: with loss_on='predictable', the unpredictable ones set to -100."""
        if self.config.loss_on == "predictable":
            return batch.targets.masked_fill(batch.labels < 2, -100)
        return batch.targets

    def loss(self, outputs, batch) -> torch.Tensor:
        return F.cross_entropy(outputs.flatten(0, 1).float(), self.loss_targets(batch).flatten(), ignore_index=-100)

    def loss_terms(self, batch) -> torch.Tensor:
        return (self.loss_targets(batch) != -100).sum()

    def metrics(self, outputs, batch) -> dict[str, float]:
        """In-context accuracy (argmax on label >= 2), global loss (label 0), loss by label group."""
        losses = F.cross_entropy(outputs.flatten(0, 1).float(), batch.targets.flatten(), reduction="none")
        losses = losses.view_as(batch.targets)
        correct = outputs.argmax(-1) == batch.targets
        groups = {"global": batch.labels == 0, "first": batch.labels == 1, "in_context": batch.labels >= 2}
        out = {"loss": float(self.loss(outputs, batch)), "accuracy": float(correct.float().mean())}
        for name, where in groups.items():
            if where.any():
                out[f"{name}_loss"] = float(losses[where].mean())
                out[f"{name}_accuracy"] = float(correct[where].float().mean())
        return out

    def describe(self) -> dict:
        return {
            "name": self.name, "kind": self.kind, "vocab": self.vocab, "vocab_size": self.vocab_size,
            "triggers": "random per sequence" if self.config.random_triggers else self.fixed_triggers.tolist(),
            "outputs": self.config.outputs, "unigram": self.pi_u.tolist(),
            "unigram_entropy_nats": float(-(self.pi_u * torch.log(self.pi_u.clamp_min(1e-300))).sum()),
        }


def reference_sequences(task: TriggerBigrams, rng: np.random.Generator, batch_size: int):
    """The per-sequence Python loop, written for clarity: tokens (B, T+1), triggers (B, K)."""
    V, K, T = task.vocab_size, task.config.triggers, task.seq_len
    pi_u, pi_b = task.pi_u.numpy(), task.pi_b.numpy()
    all_tokens, all_triggers = [], []
    for _ in range(batch_size):
        if task.config.random_triggers:
            triggers = rng.choice(V, size=K, replace=False, p=pi_u)
        else:
            triggers = task.fixed_triggers.numpy()
        if task.config.outputs == "uniform":
            outputs = rng.integers(V, size=K)
        else:
            outputs = np.array([rng.choice(V, p=pi_b[trigger]) for trigger in triggers])
        output_of = dict(zip(triggers.tolist(), outputs.tolist()))
        tokens = [rng.choice(V, p=pi_u)]
        for _ in range(T):
            current = tokens[-1]
            tokens.append(output_of[current] if current in output_of else rng.choice(V, p=pi_b[current]))
        all_tokens.append(tokens)
        all_triggers.append(triggers)
    return torch.tensor(all_tokens), torch.tensor(np.array(all_triggers))

