"""Multi-query associative recall: key-value pairs, then queries whose answers are in the context.

A sequence lists n pairs `k_1 v_1 ... k_n v_n` (distinct keys; n uniform in [min_pairs, max_pairs]),
then `queries` times a key from the pairs followed by its value. Only the answers are scored
(targets elsewhere are -100); accuracy is reported overall and per number of pairs. Token ids:
0 = padding, keys 1..key_vocab, values key_vocab+1..key_vocab+value_vocab. Sequences are padded to a
common length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sandbox.validation import check_int
from tasks.base import Batch, Task
from tasks.registry import register_task


@register_task("recall")
@dataclass
class RecallConfig:
    min_pairs: int = 4
    max_pairs: int = 32
    queries: int = 16
    key_vocab: int = 64
    value_vocab: int = 64

    def __post_init__(self):
        check_int(self.min_pairs, "min_pairs", low=1)
        check_int(self.max_pairs, "max_pairs", low=self.min_pairs)
        check_int(self.key_vocab, "key_vocab", low=self.max_pairs)
        check_int(self.value_vocab, "value_vocab", low=1)
        check_int(self.queries, "queries", low=1)

    def build(self, seed: int) -> "AssociativeRecall":
        return AssociativeRecall(self, seed)


class AssociativeRecall(Task):
    kind = "tokens"

    def __init__(self, config: RecallConfig, seed: int):
        super().__init__(seed)
        self.config, self.name = config, "recall"
        self.vocab_size = 1 + config.key_vocab + config.value_vocab
        self.seq_len = 2 * config.max_pairs + 2 * config.queries - 1

    def sample(self, gen, split, index, batch_size) -> Batch:
        c = self.config
        B, P, Q = batch_size, c.max_pairs, c.queries
        pairs = torch.randint(c.min_pairs, c.max_pairs + 1, (B,), generator=gen)  # (B,) n per sequence
        keys = 1 + torch.argsort(torch.rand(B, c.key_vocab, generator=gen), -1)[:, :P]  # (B, P) distinct
        values = 1 + c.key_vocab + torch.randint(c.value_vocab, (B, P), generator=gen)  # (B, P)
        asked = (torch.rand(B, Q, generator=gen) * pairs[:, None]).long()  # (B, Q) which pair each query asks
        tokens = torch.zeros(B, 2 * P + 2 * Q, dtype=torch.long)
        pair_pos = torch.arange(P)  # pair i sits at 2i (key), 2i+1 (value)
        live = pair_pos[None, :] < pairs[:, None]  # (B, P)
        rows = torch.arange(B)[:, None].expand(B, P)
        tokens[rows[live], 2 * pair_pos.expand(B, P)[live]] = keys[live]
        tokens[rows[live], 2 * pair_pos.expand(B, P)[live] + 1] = values[live]
        query_pos = 2 * pairs[:, None] + 2 * torch.arange(Q)  # (B, Q) positions of the query keys
        batch_rows = torch.arange(B)[:, None].expand(B, Q)
        tokens[batch_rows, query_pos] = keys.gather(1, asked)
        tokens[batch_rows, query_pos + 1] = values.gather(1, asked)
        inputs, targets = tokens[:, :-1], torch.full((B, tokens.shape[1] - 1), -100, dtype=torch.long)
        targets[batch_rows, query_pos] = values.gather(1, asked)  # predict the value after each query key
        return Batch(inputs, targets, extras={"pairs": pairs})

    def metrics(self, outputs, batch) -> dict[str, float]:
        scored = batch.targets != -100
        correct = (outputs.argmax(-1) == batch.targets) & scored  # (B, T)
        per_sequence = correct.sum(1).double() / scored.sum(1)  # (B,)
        out = {"loss": float(self.loss(outputs, batch)), "accuracy": float(correct.sum() / scored.sum())}
        for n in batch.extras["pairs"].unique().tolist():
            out[f"accuracy_pairs_{n}"] = float(per_sequence[batch.extras["pairs"] == n].mean())
        return out

    def describe(self) -> dict:
        c = self.config
        return {"name": self.name, "kind": self.kind, "vocab_size": self.vocab_size,
                "keys": [1, c.key_vocab], "values": [c.key_vocab + 1, c.key_vocab + c.value_vocab],
                "pairs": [c.min_pairs, c.max_pairs], "queries": c.queries}
