"""Every task's loss, metrics and description, checked against values computed here independently.

The description is what a run saves beside its results (the ground-truth factorisation, the ranges of
ids, the periods in steps), so each entry is compared with what the task actually generates.
"""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tasks.base import Batch, Task
from tasks.bigram import BigramConfig
from tasks.disentangle import MarkovSourcesConfig, OscillatorsConfig
from tasks.recall import RecallConfig
from tasks.regular_languages import SEPARATOR, RegularLanguagesConfig
from tasks.registry import get_task, list_tasks
from tasks.three_moons import ThreeMoonsConfig, combined_period


def one_hot_logits(targets: torch.Tensor, vocab: int, scale: float = 30.0) -> torch.Tensor:
    return F.one_hot(targets.clamp(min=0), vocab).float() * scale  # (B, T, V)


def test_registry_lists_every_task_by_its_name():
    assert set(list_tasks()) >= {"bigram", "recall", "three_moons", "oscillators", "markov_sources",
                                 "regular_languages", "text"}
    small = {"regular_languages": dict(train_automata=2, eval_automata=2)}  # the default takes 5 s to build
    for name in list_tasks():
        config = get_task(name)()  # the defaults are valid
        assert dataclasses.replace(config, **small.get(name, {})).build(0).name == name


def test_base_task_loss_ignores_padding_and_describes_itself():
    class Minimal(Task):
        name, kind = "minimal", "tokens"

    task = Minimal(0)
    targets = torch.tensor([[1, -100, 2]])
    logits = torch.zeros(1, 3, 4)
    logits[0, 1, 3] = 100.0  # a confident wrong guess at the ignored position changes nothing
    batch = Batch(targets.clamp(min=0), targets)
    assert task.loss(logits, batch) == pytest.approx(math.log(4))
    assert task.metrics(logits, batch) == {"loss": pytest.approx(math.log(4))}
    assert task.describe() == {"name": "minimal", "kind": "tokens"}


def test_bigram_metrics_by_label_group():
    task = BigramConfig(seq_len=64).build(0)
    batch = task.batch("val", 0, 16)
    V = task.vocab_size
    in_context = batch.labels >= 2  # (B, T)
    # Perfect where the answer is in context, uniform elsewhere: the groups must tell them apart.
    outputs = torch.where(in_context[..., None], one_hot_logits(batch.targets, V), torch.zeros(1))
    metrics = task.metrics(outputs, batch)
    assert metrics["in_context_accuracy"] == 1.0 and metrics["in_context_loss"] < 1e-6
    assert metrics["global_loss"] == pytest.approx(math.log(V), rel=1e-6)
    assert metrics["first_loss"] == pytest.approx(math.log(V), rel=1e-6)
    argmax_right = (outputs.argmax(-1) == batch.targets).double()
    assert metrics["global_accuracy"] == pytest.approx(float(argmax_right[batch.labels == 0].mean()))
    assert metrics["first_accuracy"] == pytest.approx(float(argmax_right[batch.labels == 1].mean()))
    assert metrics["accuracy"] == pytest.approx(float(argmax_right.mean()))
    losses = F.cross_entropy(outputs.flatten(0, 1), batch.targets.flatten(), reduction="none")
    assert metrics["loss"] == pytest.approx(float(losses.mean()), rel=1e-6)  # loss_on="all"
    predictable = BigramConfig(seq_len=64, loss_on="predictable").build(0)
    assert predictable.loss(outputs, batch) < 1e-6  # only label >= 2 positions count
    # Right only at second occurrences (label 2): the in-context group and the predictable loss must
    # still count every label >= 2, so both see the uniform guesses at labels >= 3.
    second = batch.labels == 2
    outputs = torch.where(second[..., None], one_hot_logits(batch.targets, V), torch.zeros(1))
    later = batch.labels >= 3
    assert later.any()
    share = float(second.sum() / in_context.sum())
    assert task.metrics(outputs, batch)["in_context_accuracy"] == pytest.approx(
        share + (1 - share) * float((outputs.argmax(-1) == batch.targets)[later].double().mean()))
    assert float(predictable.loss(outputs, batch)) == pytest.approx((1 - share) * math.log(V), rel=1e-4)


def test_bigram_description():
    task = BigramConfig(triggers=3).build(0)
    info = task.describe()
    pi_u = np.array(info["unigram"])
    assert info["name"] == "bigram" and info["kind"] == "tokens" and info["outputs"] == "uniform"
    assert info["vocab_size"] == len(info["vocab"]) == len(pi_u) == 65
    assert info["triggers"] == sorted(range(65), key=lambda i: -pi_u[i])[:3]  # the most frequent tokens
    assert info["unigram_entropy_nats"] == pytest.approx(-(pi_u * np.log(pi_u)).sum())
    random = BigramConfig(random_triggers=True).build(0).describe()
    assert random["triggers"] == "random per sequence"


def test_recall_description_matches_the_generated_ids():
    config = RecallConfig(min_pairs=2, max_pairs=5, queries=3, key_vocab=7, value_vocab=4)
    task = config.build(0)
    info = task.describe()
    assert info == {"name": "recall", "kind": "tokens", "vocab_size": 12, "keys": [1, 7], "values": [8, 11],
                    "pairs": [2, 5], "queries": 3}
    batch = task.batch("train", 0, 64)
    key_positions = torch.zeros_like(batch.inputs, dtype=torch.bool)
    key_positions[:, ::2] = True
    tokens = batch.inputs[batch.inputs > 0]
    assert tokens.max() == info["values"][1] and tokens.min() == info["keys"][0]
    assert batch.inputs.shape[1] == task.seq_len == 2 * 5 + 2 * 3 - 1
    answers = batch.targets[batch.targets != -100]
    assert answers.min() >= info["values"][0] and answers.max() <= info["values"][1]


def test_recall_accuracy_counts_each_number_of_pairs_apart():
    task = RecallConfig(min_pairs=2, max_pairs=3, queries=4, key_vocab=10, value_vocab=5).build(0)
    batch = task.batch("val", 0, 64)
    pairs = batch.extras["pairs"]
    right_on_two = torch.where((pairs == 2)[:, None, None], one_hot_logits(batch.targets, task.vocab_size),
                               torch.zeros(1))
    metrics = task.metrics(right_on_two, batch)
    assert metrics["accuracy_pairs_2"] == 1.0 and metrics["accuracy_pairs_3"] == 0.0
    assert metrics["accuracy"] == pytest.approx(float((pairs == 2).double().mean()))
    scored = batch.targets != -100
    losses = F.cross_entropy(right_on_two.flatten(0, 1), batch.targets.flatten(), ignore_index=-100)
    assert metrics["loss"] == pytest.approx(float(losses)) and scored.sum() == 4 * 64


def test_three_moons_loss_clips_each_error_at_half():
    task = ThreeMoonsConfig(length=20).build(0)
    batch = task.batch("val", 0, 3)
    for shift, loss, mse in ((0.1, 0.01, 0.01), (-2.0, 0.25, 4.0)):
        metrics = task.metrics(batch.targets + shift, batch)
        assert metrics["loss"] == pytest.approx(loss, rel=1e-5) and metrics["mse"] == pytest.approx(mse, rel=1e-5)
    mixed = batch.targets.clone()
    mixed[..., 0] += 3.0  # one coordinate of 2K far off: its error counts as 0.5² only
    assert task.loss(mixed, batch) == pytest.approx(0.25 / task.input_dim, rel=1e-5)


@pytest.mark.parametrize("mixing", [False, True])
def test_three_moons_description(mixing):
    task = ThreeMoonsConfig(length=20, mixing=mixing).build(0)
    info = task.describe()
    assert info["name"] == "three_moons" and info["kind"] == "continuous" and info["frame"] == "inertial"
    assert tuple(info["val_periods"]) == task.val_set and list(map(tuple, info["train_periods"])) == task.train_sets
    assert info["dt"] == task.dt == pytest.approx(3 * info["largest_combined_period"] / 800)
    assert info["largest_combined_period"] == max(info["combined_periods"].values())
    assert info["combined_periods"][str(task.val_set)] == combined_period(task.val_set)
    assert info["val_periods_in_steps"] == pytest.approx([p / task.dt for p in task.val_set])
    assert info["val_combined_period_in_steps"] == pytest.approx(combined_period(task.val_set) / task.dt)
    assert info["factors"] == [[0, 1], [2, 3], [4, 5]]
    if mixing:
        torch.testing.assert_close(torch.tensor(info["mixing"], dtype=task.mixing.dtype), task.mixing)
    else:
        assert info["mixing"] is None
        # Unmixed, moon j owns coordinates (2j, 2j+1): each pair lies on the unit circle.
        batch = task.batch("val", 0, 2)
        for a, b in info["factors"]:
            torch.testing.assert_close(batch.inputs[..., a] ** 2 + batch.inputs[..., b] ** 2,
                                       torch.ones(2, 20), rtol=0, atol=1e-5)


@pytest.mark.parametrize("mixing", [False, True])
def test_oscillators_loss_and_description(mixing):
    task = OscillatorsConfig(periods="0.5,1.3", dt=0.05, length=10, mixing=mixing).build(0)
    batch = task.batch("val", 0, 2)
    assert task.metrics(batch.targets + 0.3, batch) == {"loss": pytest.approx(0.09, rel=1e-5)}
    info = task.describe()
    assert info["name"] == "oscillators" and info["kind"] == "continuous"
    assert info["periods"] == [0.5, 1.3] and info["dt"] == 0.05
    assert info["periods_in_steps"] == pytest.approx([10.0, 26.0])
    assert info["factors"] == [[0, 1], [2, 3]]
    if mixing:
        torch.testing.assert_close(torch.tensor(info["mixing"], dtype=task.mixing.dtype), task.mixing)
    else:
        assert info["mixing"] is None


def test_markov_sources_loss_and_description():
    tokens = MarkovSourcesConfig(sources=2, states=3, length=12).build(0)
    info = tokens.describe()
    assert info["name"] == "markov_sources" and info["kind"] == "tokens" and info["mode"] == "interleaved"
    torch.testing.assert_close(torch.tensor(info["transitions"], dtype=torch.float64), tokens.transitions)
    assert info["factors"] == {"source_of_step": "t mod 2", "ids_of_source": [[0, 2], [3, 5]]}
    batch = tokens.batch("val", 0, 4)
    for k, (low, high) in enumerate(info["factors"]["ids_of_source"]):
        ids = batch.inputs[:, k::2]
        assert ids.min() >= low and ids.max() <= high
    assert tokens.loss(torch.zeros(4, 12, 6), batch) == pytest.approx(math.log(6))

    summed = MarkovSourcesConfig(sources=2, states=3, length=12, mode="summed").build(0)
    info = summed.describe()
    assert info["kind"] == "continuous" and info["mode"] == "summed"
    torch.testing.assert_close(torch.tensor(info["factors"]["maps"], dtype=torch.float64), summed.maps)
    assert set(info["factors"]) == {"maps", "observation"}
    assert info["factors"]["observation"] == "x_t = sum_k maps[k][s_k,t]"  # the rule checked in test_disentangle
    batch = summed.batch("val", 0, 4)
    assert summed.metrics(batch.targets - 0.2, batch) == {"loss": pytest.approx(0.04, rel=1e-5)}


def test_regular_languages_description_and_loss():
    task = RegularLanguagesConfig(train_automata=10, eval_automata=8).build(0)
    info = task.describe()
    assert info["name"] == "regular_languages" and info["kind"] == "tokens"
    assert len(info["vocab"]) == task.vocab_size == 20 and info["vocab"][SEPARATOR] == "|" and info["vocab"][0] == "."
    assert (info["train_automata"], info["eval_automata"]) == (10, 8)
    for split in ("train", "val", "test"):
        states = [a.states for a in task.sets[split].automata]
        assert info["mean_states"][split] == pytest.approx(np.mean(states))
        assert max(states) <= info["max_states"]
    assert info["seq_len"] == task.seq_len == max(int(s.lengths.max()) for s in task.sets.values()) - 1
    batch = task.batch("val", 0, 4)
    uniform = torch.zeros(*batch.targets.shape, 20)
    metrics = task.metrics(uniform, batch)
    assert metrics["loss"] == pytest.approx(math.log(20), rel=1e-6)
    tvd = 0.5 * (torch.full((20,), 1 / 20) - batch.extras["next_dist"]).abs().sum(-1)
    assert metrics["tvd"] == pytest.approx(float(tvd[batch.extras["scored"]].mean()))


def test_batch_to_moves_every_tensor_and_keeps_the_rest():
    batch = Batch(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3), torch.arange(6).view(2, 3),
                  {"mask": torch.ones(2, dtype=torch.bool), "note": "kept", "count": 4})
    moved = batch.to("meta")  # a device every machine has
    assert [t.device.type for t in (moved.inputs, moved.targets, moved.labels, moved.extras["mask"])] == ["meta"] * 4
    assert moved.extras["note"] == "kept" and moved.extras["count"] == 4
    assert moved.inputs.dtype == torch.long and moved.extras["mask"].shape == (2,)
    assert batch.inputs.device.type == "cpu"  # the original is left where it was
    assert Batch(torch.zeros(1), torch.zeros(1)).to("meta").labels is None


def test_loss_terms_count_what_the_loss_averages_over():
    class Minimal(Task):
        name, kind = "minimal", "tokens"

    task = Minimal(0)
    targets = torch.tensor([[1, -100, 2], [-100, 7, 100]])  # 4 targets scored (100 is a real id), 2 ignored
    logits = torch.randn(2, 3, 101)
    terms = task.loss_terms(Batch(targets.clamp(min=0), targets))
    assert terms.item() == 4 and not terms.is_floating_point()
    per_term = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum") / terms
    assert task.loss(logits, Batch(targets.clamp(min=0), targets)) == pytest.approx(float(per_term), rel=1e-6)
    continuous = Batch(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
    assert task.loss_terms(continuous).item() == 24
    assert task.loss_terms(continuous.to("meta")).device.type == "meta"  # on the targets' device


@pytest.mark.parametrize("loss_on", ["all", "predictable"])
def test_bigram_loss_terms_follow_loss_on(loss_on):
    task = BigramConfig(seq_len=64, loss_on=loss_on).build(0)
    batch = task.batch("train", 0, 8)
    expected = batch.targets.numel() if loss_on == "all" else int((batch.labels >= 2).sum())
    assert 0 < expected and task.loss_terms(batch).item() == expected
    logits = torch.randn(*batch.targets.shape, task.vocab_size)
    keep = torch.ones_like(batch.labels, dtype=torch.bool) if loss_on == "all" else batch.labels >= 2
    total = F.cross_entropy(logits[keep], batch.targets[keep], reduction="sum")
    assert float(task.loss(logits, batch)) == pytest.approx(float(total / task.loss_terms(batch)), rel=1e-5)


def test_stream_seeds_are_63_bit_and_distinct_for_every_seed_split_and_index():
    from tasks.base import generator, stream_seed

    keys = [(seed, split, index) for seed in (0, 1, 2**32, 2**32 + 1, 2**40) for split in ("train", "val", "test")
            for index in (0, 1, 2**32, 2**33 + 5)]
    seeds = [stream_seed(*key) for key in keys]
    assert len(set(seeds)) == len(keys)  # the high and low 32-bit words of seed and index both count
    assert all(isinstance(s, int) and 0 <= s < 2**63 for s in seeds)
    assert max(seeds) >= 2**62  # 63 bits used: 60 draws all below 2**62 would have probability 2**-60
    assert stream_seed(*keys[7]) == seeds[7]
    assert torch.equal(torch.rand(3, generator=generator(5, "val", 9)),
                       torch.rand(3, generator=torch.Generator().manual_seed(stream_seed(5, "val", 9))))
    with pytest.raises(ValueError, match=r"^split must be one of"):
        stream_seed(0, "dev", 0)
    with pytest.raises(ValueError, match=r"^index must be in \[0, inf\], got -1$"):
        stream_seed(0, "train", -1)


def test_task_seed_and_batch_size_are_checked_at_their_bounds():
    task = RecallConfig(min_pairs=1, max_pairs=2, queries=1, key_vocab=4, value_vocab=2).build(0)
    assert task.seed == 0 and task.batch("train", 0, 1).inputs.shape[0] == 1
    with pytest.raises(ValueError, match=r"^seed must be in \[0, inf\], got -1$"):
        RecallConfig().build(-1)
    with pytest.raises(ValueError, match=r"^batch_size must be in \[1, inf\], got 0$"):
        task.batch("train", 0, 0)
    with pytest.raises(ValueError, match=r"^index must be in \[0, inf\], got -1$"):
        task.batch("train", -1, 2)
    assert task.batch("val", 0, 2, device="meta").inputs.device.type == "meta"
