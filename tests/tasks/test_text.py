"""The text task: deterministic split, seeded windows from the right text, tokenisation round trips,
user files by path, and clear errors."""

import gzip

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
        with pytest.raises(ValueError, match="no out-of-distribution text"):
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
