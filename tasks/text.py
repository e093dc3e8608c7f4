"""Language modelling on real text, character- or byte-level (docs/language-modelling.md).

The corpus is Shakespeare's plays, shipped with the package (`tasks/data/`, public domain, from Project
Gutenberg), or any UTF-8 text file by path. The split is deterministic: the last `val_fraction` of the
corpus is the validation text (for the plays, the last plays in alphabetical order), the rest is the
training text. The `test` split is a second text of a different kind, the out-of-distribution set:
by default Shakespeare's sonnets and poems. A batch is B windows of T + 1 consecutive tokens at
seeded random offsets of its split's text: inputs are the first T, targets the last T.

Tokens: `char` gives one id per distinct character of the corpus (its sorted alphabet); characters of
the out-of-distribution text outside that alphabet are dropped and counted. `byte` gives the 256
UTF-8 byte values, so every text is representable.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from sandbox.validation import check_choice, check_fraction, check_int
from tasks.base import Batch, Task
from tasks.registry import register_task

BUILTIN = {"shakespeare_plays": "data/shakespeare_plays.txt.gz",
           "shakespeare_poems": "data/shakespeare_poems.txt.gz"}
TOKENS = ("char", "byte")


@lru_cache(maxsize=4)
def _read(source: str, stamp: float) -> str:
    path = resources.files("tasks").joinpath(BUILTIN[source]) if source in BUILTIN else Path(source)
    data = path.read_bytes()
    if str(source).endswith(".gz") or source in BUILTIN:
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"text file {source!r} is not UTF-8 ({err})") from None


def read_text(source: str, name: str = "corpus") -> str:
    """The text of a built-in corpus name or of a file path (.gz files are decompressed)."""
    if not isinstance(source, str) or not source:
        raise TypeError(f"{name} must be a built-in name {sorted(BUILTIN)} or a file path, got {source!r}")
    if source in BUILTIN:
        return _read(source, 0.0)
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"{name} must be a built-in name {sorted(BUILTIN)} or an existing file, got {source!r}")
    return _read(str(path), path.stat().st_mtime)


@register_task("text")
@dataclass
class TextConfig:
    """corpus: 'shakespeare_plays' (shipped), 'shakespeare_poems' (shipped) or a UTF-8 file path (.gz
    allowed); tokens: 'char' or 'byte'; seq_len: T; val_fraction: the tail of the corpus held out for
    validation; ood: the out-of-distribution text served as the 'test' split (a name, a path, or
    'none')."""

    corpus: str = "shakespeare_plays"
    tokens: str = "char"
    seq_len: int = 256
    val_fraction: float = 0.1
    ood: str = "shakespeare_poems"

    def __post_init__(self):
        check_choice(self.tokens, "tokens", TOKENS)
        check_int(self.seq_len, "seq_len", low=1)
        check_fraction(self.val_fraction, "val_fraction", open_low=True, open_high=True)
        text = read_text(self.corpus, "corpus")
        size = len(text) if self.tokens == "char" else len(text.encode("utf-8"))
        held_out = int(size * self.val_fraction)
        if min(held_out, size - held_out) < self.seq_len + 1:
            raise ValueError(f"corpus {self.corpus!r} has {size} tokens: each split (val_fraction "
                             f"{self.val_fraction}) needs at least seq_len + 1 = {self.seq_len + 1}")
        if self.ood != "none":
            read_text(self.ood, "ood")

    def build(self, seed: int) -> "TextTask":
        return TextTask(self, seed)


class TextTask(Task):
    kind = "tokens"

    def __init__(self, config: TextConfig, seed: int):
        super().__init__(seed)
        self.config, self.name, self.seq_len = config, "text", config.seq_len
        text = read_text(config.corpus, "corpus")
        if config.tokens == "char":
            self.vocab = "".join(sorted(set(text)))
            self.codes = np.frombuffer(self.vocab.encode("utf-32-le"), dtype=np.uint32)  # (V,) sorted
            self.vocab_size = len(self.vocab)
        else:
            self.vocab, self.codes, self.vocab_size = None, None, 256
        ids = self.encode(text)  # (N,)
        cut = len(ids) - int(len(ids) * config.val_fraction)
        self.splits = {"train": ids[:cut], "val": ids[cut:]}
        self.ood_dropped = 0
        if config.ood != "none":
            ood = read_text(config.ood, "ood")
            if self.vocab is not None:
                alphabet = set(self.vocab)
                kept = "".join(c for c in ood if c in alphabet)
                self.ood_dropped, ood = len(ood) - len(kept), kept
            self.splits["test"] = self.encode(ood)
            if len(self.splits["test"]) < self.seq_len + 1:
                raise ValueError(f"ood text {config.ood!r} has {len(self.splits['test'])} usable tokens, "
                                 f"fewer than seq_len + 1 = {self.seq_len + 1}")

    def encode(self, text: str) -> torch.Tensor:
        """Token ids (N,) of `text`; a character outside the corpus alphabet is an error."""
        if self.vocab is None:
            return torch.from_numpy(np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy())
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # (N,) code points
        ids = np.searchsorted(self.codes, codes).clip(max=self.vocab_size - 1)  # the alphabet is sorted
        unknown = self.codes[ids] != codes
        if unknown.any():
            missing = "".join(sorted(set(np.unique(codes[unknown]).tobytes().decode("utf-32-le"))))
            raise ValueError(f"characters {missing!r} are not in the corpus alphabet {self.vocab!r}")
        return torch.from_numpy(ids.astype(np.uint8 if self.vocab_size <= 256 else np.int32))

    def decode(self, ids) -> str:
        """The text of token ids (bytes that are not valid UTF-8 show as U+FFFD)."""
        if isinstance(ids, (torch.Tensor, np.ndarray)):
            ids = ids.tolist()  # one conversion: element by element, a corpus split took half a minute
        ids = [int(i) for i in ids]
        if self.vocab is None:
            return bytes(ids).decode("utf-8", errors="replace")
        return "".join(self.vocab[i] for i in ids)

    def sample(self, gen, split, index, batch_size) -> Batch:
        if split not in self.splits:
            raise ValueError("this text task has no out-of-distribution text (ood='none'): no 'test' split")
        data, T = self.splits[split], self.seq_len
        starts = torch.randint(len(data) - T, (batch_size,), generator=gen)  # (B,)
        windows = data[starts[:, None] + torch.arange(T + 1)].long()  # (B, T+1)
        return Batch(windows[:, :-1], windows[:, 1:], extras={"starts": starts})

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "corpus": self.config.corpus, "tokens": self.config.tokens,
                "vocab_size": self.vocab_size, "vocab": self.vocab, "seq_len": self.seq_len,
                "split_tokens": {s: len(d) for s, d in self.splits.items()}, "ood": self.config.ood,
                "ood_dropped_characters": self.ood_dropped}
