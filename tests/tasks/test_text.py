"""The text task: deterministic split, seeded windows from the right text, tokenisation round trips,
user files by path, and clear errors."""

import gzip
import os
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tasks import get_task
from tasks.text import TextConfig, read_text


@pytest.fixture(scope="module")
def plays():
    # A fixture, not a module constant: built inside the test session, so that a mutation run (which
    # imports the test modules once, before any mutant is switched on) builds it with the mutant.
    return TextConfig(seq_len=64).build(0)


def test_registered_and_shipped(plays):
    assert get_task("text") is TextConfig
    info = plays.describe()
    assert info["vocab_size"] == len(set(read_text("shakespeare_plays"))) and info["split_tokens"]["train"] > 4_000_000
    assert info["split_tokens"]["test"] > 200_000  # the sonnets and poems


def test_split_is_the_tail_and_loses_nothing(plays):
    text = read_text("shakespeare_plays")
    train, val = plays.splits["train"], plays.splits["val"]
    assert len(val) == int(len(text) * 0.1)
    assert plays.decode(train) + plays.decode(val) == text
    assert plays.decode(val[:40]) == text[len(train):len(train) + 40]


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_windows_are_consecutive_tokens_of_their_own_split(split, plays):
    batch = plays.batch(split, 7, 16)
    data = plays.splits[split]
    assert batch.inputs.shape == batch.targets.shape == (16, 64)
    for row, start in enumerate(batch.extras["starts"].tolist()):
        window = data[start:start + 65].long()
        assert torch.equal(batch.inputs[row], window[:-1]) and torch.equal(batch.targets[row], window[1:])


def test_batches_are_pure_functions_of_seed_split_and_index(plays):
    again = TextConfig(seq_len=64).build(0)
    assert torch.equal(plays.batch("train", 3, 8).inputs, again.batch("train", 3, 8).inputs)
    assert not torch.equal(plays.batch("train", 3, 8).inputs, plays.batch("train", 4, 8).inputs)
    assert not torch.equal(plays.batch("train", 3, 8).inputs, TextConfig(seq_len=64).build(1).batch("train", 3, 8).inputs)


@given(st.text(alphabet=sorted(set(read_text("shakespeare_plays"))), max_size=200))
def test_char_round_trip(plays, text):
    assert plays.decode(plays.encode(text)) == text


@pytest.fixture(scope="module")
def byte_task():
    return TextConfig(tokens="byte", seq_len=64).build(0)


@given(st.text(max_size=100))
def test_byte_round_trip_of_any_text(byte_task, text):
    ids = byte_task.encode(text)
    assert len(ids) == len(text.encode("utf-8")) and ids.dtype == torch.uint8
    assert byte_task.decode(ids) == text


def test_user_file_by_path_plain_and_gzipped(tmp_path):
    text = "to be or not to be, that is the question\n" * 20
    plain, packed = tmp_path / "a.txt", tmp_path / "a.txt.gz"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode()))
    for path in (plain, packed):
        task = TextConfig(corpus=str(path), seq_len=8, ood="none").build(0)
        assert task.vocab == "".join(sorted(set(text)))
        assert task.decode(task.batch("train", 0, 2).inputs[0]) in text
        with pytest.raises(ValueError, match=r"^this text task has no out-of-distribution text \(ood='none'\): no 'test' split$"):
            task.batch("test", 0, 2)


def test_out_of_distribution_characters_outside_the_alphabet_are_dropped_and_counted(tmp_path):
    corpus, ood = tmp_path / "c.txt", tmp_path / "o.txt"
    corpus.write_text("abc abc abc\n" * 10)
    ood.write_text("ab€c ab€c éé\n" * 10)
    task = TextConfig(corpus=str(corpus), ood=str(ood), seq_len=4).build(0)
    assert task.ood_dropped == 40 and task.describe()["ood_dropped_characters"] == 40
    assert task.decode(task.splits["test"][:10]) == "abc abc \na"


@pytest.mark.parametrize("kwargs, match", [
    (dict(corpus="no/such/file.txt"), "corpus must be a built-in name"),
    (dict(ood="no/such/file.txt"), "ood must be a built-in name"),
    (dict(tokens="word"), "tokens must be one of"),
    (dict(seq_len=0), r"seq_len must be in \[1, inf\]"),
    (dict(val_fraction=0.0), r"val_fraction must be in \(0, 1\)"),
    (dict(val_fraction=1.0), r"val_fraction must be in \(0, 1\)"),
    (dict(seq_len=600_000), "needs at least seq_len"),
])
def test_bad_config_is_a_clear_error(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TextConfig(**kwargs)


def test_non_utf8_file_and_unknown_prompt_characters_are_clear_errors(tmp_path, plays):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café au lait ".encode("latin-1") * 50)
    with pytest.raises(ValueError, match="is not UTF-8"):
        TextConfig(corpus=str(bad))
    with pytest.raises(ValueError, match="not in the corpus alphabet"):
        plays.encode("naïve")


def test_sources_that_are_not_texts_are_refused_by_name(tmp_path):
    shown = r"\['shakespeare_plays', 'shakespeare_poems'\]"
    for bad in ("", 3, None):
        with pytest.raises(TypeError, match=rf"^ood must be a built-in name {shown} or a file path, got {re.escape(repr(bad))}$"):
            read_text(bad, "ood")
    missing = str(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match=rf"^corpus must be a built-in name {shown} or an existing file, got {re.escape(repr(missing))}$"):
        read_text(missing)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 ".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"^text file {re.escape(repr(str(bad)))} is not UTF-8 \(.*\)$"):
        read_text(str(bad))


def test_a_file_is_read_again_when_it_changes(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("first")
    os.utime(path, (1_000_000, 1_000_000))
    assert read_text(str(path)) == "first"
    path.write_text("second")
    os.utime(path, (2_000_000, 2_000_000))
    assert read_text(str(path)) == "second"
    packed = tmp_path / "t.txt.gz"
    packed.write_bytes(gzip.compress("packed é".encode()))
    assert read_text(str(packed)) == "packed é"


@pytest.mark.parametrize("tokens, size", [("char", 100), ("byte", 200)])
def test_each_split_needs_exactly_seq_len_plus_one_tokens(tmp_path, tokens, size):
    path = tmp_path / "e.txt"
    path.write_text("é" * 100)  # 100 characters, 200 UTF-8 bytes: val_fraction 0.1 holds out size / 10
    held = size // 10
    task = TextConfig(corpus=str(path), tokens=tokens, seq_len=held - 1, ood="none").build(0)
    assert [len(task.splits[s]) for s in ("train", "val")] == [size - held, held]
    batch = task.batch("val", 0, 8)  # one window fits: every draw starts at 0
    assert (batch.extras["starts"] == 0).all() and torch.equal(batch.inputs[0], task.splits["val"][:-1].long())
    message = (rf"^corpus {re.escape(repr(str(path)))} has {size} tokens: each split \(val_fraction 0.1\) needs "
               rf"at least seq_len \+ 1 = {held + 1}$")
    with pytest.raises(ValueError, match=message):
        TextConfig(corpus=str(path), tokens=tokens, seq_len=held, ood="none")
    TextConfig(corpus=str(path), tokens=tokens, seq_len=1, ood="none")
    with pytest.raises(ValueError, match=r"^seq_len must be in \[1, inf\], got 0$"):
        TextConfig(corpus=str(path), tokens=tokens, seq_len=0, ood="none")


def test_validation_is_the_tail_of_the_corpus(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("".join(chr(ord("a") + i % 26) for i in range(200)))
    for fraction, held in ((0.1, 20), (0.25, 50), (0.5, 100)):
        task = TextConfig(corpus=str(path), seq_len=4, val_fraction=fraction, ood="none").build(0)
        assert task.decode(task.splits["val"]) == read_text(str(path))[200 - held:]
        assert task.decode(task.splits["train"]) == read_text(str(path))[:200 - held]


def test_ood_text_too_short_after_dropping_characters_is_refused(tmp_path):
    corpus, ood = tmp_path / "c.txt", tmp_path / "o.txt"
    corpus.write_text("abcd" * 50)
    ood.write_text("ab" + "z" * 50)  # two usable characters
    message = rf"^ood text {re.escape(repr(str(ood)))} has 2 usable tokens, fewer than seq_len \+ 1 = 4$"
    with pytest.raises(ValueError, match=message):
        TextConfig(corpus=str(corpus), ood=str(ood), seq_len=3).build(0)
    ood.write_text("abc" + "z" * 50)
    task = TextConfig(corpus=str(corpus), ood=str(ood), seq_len=2).build(0)
    assert task.ood_dropped == 50 and task.decode(task.splits["test"]) == "abc"


@pytest.mark.parametrize("alphabet, dtype", [(256, torch.uint8), (257, torch.int32)])
def test_token_ids_take_the_smallest_integer_type_that_holds_them(tmp_path, alphabet, dtype):
    path = tmp_path / "wide.txt"
    letters = "".join(chr(0x100 + i) for i in range(alphabet))  # sorted code points: ids in order
    path.write_text(letters * 4)
    task = TextConfig(corpus=str(path), seq_len=8, ood="none").build(0)
    assert task.vocab_size == alphabet and task.vocab == letters
    ids = task.encode(letters[::-1])
    assert ids.dtype == dtype and ids.tolist() == list(range(alphabet))[::-1]
    with pytest.raises(ValueError, match=rf"^characters 'ab' are not in the corpus alphabet {re.escape(repr(letters))}$"):
        task.encode("b" + letters[:3] + "aab")


def test_byte_tokens_decode_invalid_utf8_as_replacement_characters(byte_task):
    assert byte_task.vocab_size == 256 and byte_task.vocab is None
    assert byte_task.decode(torch.tensor([104, 105, 0xFF, 0xC3, 0xA9])) == "hi\ufffdé"
    assert byte_task.decode(np.array([104, 105])) == byte_task.decode([104, 105]) == "hi"


def test_description_names_the_corpus_and_its_splits(tmp_path):
    corpus, ood = tmp_path / "c.txt", tmp_path / "o.txt"
    corpus.write_text("abcd" * 50)
    ood.write_text("abcxyz" * 4)
    task = TextConfig(corpus=str(corpus), ood=str(ood), seq_len=3).build(0)
    assert task.describe() == {"name": "text", "kind": "tokens", "corpus": str(corpus), "tokens": "char",
                               "vocab_size": 4, "vocab": "abcd", "seq_len": 3,
                               "split_tokens": {"train": 180, "val": 20, "test": 12}, "ood": str(ood),
                               "ood_dropped_characters": 12}


def test_the_training_split_too_must_hold_seq_len_plus_one_tokens(tmp_path):
    path = tmp_path / "long_val.txt"
    path.write_text("abcdefghij" * 10)  # 100 characters: val_fraction 0.9 holds out 90, trains on 10
    task = TextConfig(corpus=str(path), seq_len=9, val_fraction=0.9, ood="none").build(0)
    assert [len(task.splits[s]) for s in ("train", "val")] == [10, 90]
    message = (rf"^corpus {re.escape(repr(str(path)))} has 100 tokens: each split \(val_fraction 0.9\) needs "
               rf"at least seq_len \+ 1 = 11$")
    with pytest.raises(ValueError, match=message):
        TextConfig(corpus=str(path), seq_len=10, val_fraction=0.9, ood="none")


def test_a_text_removed_after_its_config_was_checked_is_named_when_the_task_is_built(tmp_path):
    shown = r"\['shakespeare_plays', 'shakespeare_poems'\]"
    corpus, ood = tmp_path / "c.txt", tmp_path / "o.txt"
    corpus.write_text("abcd" * 50)
    ood.write_text("abc" * 10)
    config = TextConfig(corpus=str(corpus), ood=str(ood), seq_len=3)
    ood.unlink()
    with pytest.raises(ValueError, match=rf"^ood must be a built-in name {shown} or an existing file, "
                                         rf"got {re.escape(repr(str(ood)))}$"):
        config.build(0)
    corpus.unlink()
    with pytest.raises(ValueError, match=rf"^corpus must be a built-in name {shown} or an existing file, "
                                         rf"got {re.escape(repr(str(corpus)))}$"):
        config.build(0)


def test_nothing_is_dropped_without_an_ood_text_or_with_byte_tokens(tmp_path, byte_task):
    corpus = tmp_path / "c.txt"
    corpus.write_text("abcd" * 50)
    task = TextConfig(corpus=str(corpus), seq_len=3, ood="none").build(0)
    assert task.ood_dropped == 0 and task.describe() == {
        "name": "text", "kind": "tokens", "corpus": str(corpus), "tokens": "char", "vocab_size": 4,
        "vocab": "abcd", "seq_len": 3, "split_tokens": {"train": 180, "val": 20}, "ood": "none",
        "ood_dropped_characters": 0}
    info = byte_task.describe()  # every character of the poems is some bytes: nothing to drop
    assert byte_task.ood_dropped == 0 and info["ood_dropped_characters"] == 0
    assert info["split_tokens"]["test"] == len(read_text("shakespeare_poems").encode("utf-8"))
