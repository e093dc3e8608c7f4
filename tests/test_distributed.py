"""Data parallelism: the batch slices and loss weights (in process), and torchrun against one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sandbox.checkpoints import load_newest_intact
from sandbox.config import parse_overrides
from sandbox.distributed import Context, check_batch_size, setup, shard, slice_weight
from sandbox.train import train
from tasks.base import Batch


def token_batch(seed: int, rows: int, length: int = 6, vocab: int = 5, masked: float = 0.3) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    targets = torch.randint(vocab, (rows, length), generator=gen)
    targets[torch.rand(rows, length, generator=gen) < masked] = -100
    return Batch(torch.randint(vocab, (rows, length), generator=gen), targets,
                 labels=torch.zeros(rows, length, dtype=torch.long), extras={"scale": torch.tensor(2.0)})


@given(seed=st.integers(0, 2**31), world=st.sampled_from([1, 2, 3, 4]), per_rank=st.integers(1, 4))
def test_slices_partition_the_global_batch(seed, world, per_rank):
    batch = token_batch(seed, world * per_rank)
    slices = [shard(batch, rank, world) for rank in range(world)]
    assert all(s.inputs.shape[0] == per_rank for s in slices)
    assert torch.equal(torch.cat([s.inputs for s in slices]), batch.inputs)
    assert torch.equal(torch.cat([s.targets for s in slices]), batch.targets)
    assert all(torch.equal(s.extras["scale"], batch.extras["scale"]) for s in slices)  # not a batch axis


@given(seed=st.integers(0, 2**31), world=st.sampled_from([2, 3, 4]), per_rank=st.integers(1, 4),
       masked=st.floats(0.0, 0.9))
def test_weighted_slice_gradients_average_to_the_global_gradient(seed, world, per_rank, masked):
    # What DDP computes, (1/W) Σ_r w_r ∇ mean_r, must be ∇ of the global mean loss, masks or not.
    batch = token_batch(seed, world * per_rank, masked=masked)
    if not (batch.targets != -100).any():
        batch.targets[0, 0] = 1
    logits = torch.randn(*batch.targets.shape, 5, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64,
                         requires_grad=True)

    def mean_loss(rows):
        return torch.nn.functional.cross_entropy(logits[rows].flatten(0, 1), batch.targets[rows].flatten(), ignore_index=-100)

    (expected,) = torch.autograd.grad(mean_loss(slice(None)), logits)
    total = (batch.targets != -100).sum()
    averaged = torch.zeros_like(logits)
    for rank in range(world):
        rows = slice(rank * per_rank, (rank + 1) * per_rank)
        terms = (batch.targets[rows] != -100).sum()
        if terms == 0:
            continue  # a slice with nothing to learn adds no gradient (its loss would be NaN, its weight 0)
        (grad,) = torch.autograd.grad(slice_weight(terms, total, world) * mean_loss(rows), logits)
        averaged += grad / world
    torch.testing.assert_close(averaged, expected, rtol=1e-12, atol=1e-12)


def test_equal_slices_weigh_one():
    assert slice_weight(torch.tensor(6), torch.tensor(12), 2) == 1.0


def test_the_global_batch_must_split_evenly():
    with pytest.raises(ValueError, match=r"train.batch_size=6 must be a multiple of the number of ranks \(4\)"):
        check_batch_size(6, 4)


def test_without_torchrun_nothing_is_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context = setup("cpu")
    assert context == Context(device=torch.device("cpu")) and not context.active and context.is_main


def test_a_bad_world_size_is_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer, got 'two'"):
        setup("cpu")


# Two ranks on the CPU through torchrun against one process with the same global batch. The loss is
# on the predictable positions only, so the two slices of a batch hold different numbers of loss
# terms: the slice weights must make the two runs agree.
DDP = ["task=bigram", "task.seq_len=32", "task.loss_on=predictable", "model=mosaic", "model.d=16", "model.units=2",
       "model.layers=1", "model.dropout=0.0", "train.batch_size=8", "train.log_every=1", "train.eval_every=3",
       "train.eval_batches=1", "train.lr=3e-3", "train.schedule=constant", "train.device=cpu"]


def torchrun(*args, ranks: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
           "-m", "sandbox", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def metric_lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_same_curves(ddp: list[dict], single: list[dict]) -> None:
    assert [(x["step"], x["split"]) for x in ddp] == [(x["step"], x["split"]) for x in single]
    for a, b in zip(ddp, single):
        for key, value in b.items():
            if isinstance(value, float) and key != "tokens_per_second":
                assert a[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (a["step"], a["split"], key)


def test_torchrun_two_ranks_match_one_process(tmp_path):
    steps = ["train.steps=6"]
    done = torchrun(*DDP, *steps, f"out={tmp_path}", "name=ddp")
    single = train(parse_overrides([*DDP, *steps, f"out={tmp_path}", "name=single"]), progress=False)
    assert done.stdout.count("run directory:") == 1  # only rank 0 prints
    assert_same_curves(metric_lines(tmp_path / "ddp"), metric_lines(single.run_dir))
    ddp_weights = load_newest_intact(tmp_path / "ddp")["model"]
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp_weights[key], value, rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.slow
def test_torchrun_resume_continues_the_curve(tmp_path):
    torchrun(*DDP, "train.steps=3", f"out={tmp_path}", "name=ddp")
    torchrun("--resume", str(tmp_path / "ddp"), "train.steps=6")
    single = train(parse_overrides([*DDP, "train.steps=6", f"out={tmp_path}", "name=single"]), progress=False)
    resumed = [x for x in metric_lines(tmp_path / "ddp") if x["split"] in ("train", "val")]
    assert_same_curves(resumed, metric_lines(single.run_dir))
