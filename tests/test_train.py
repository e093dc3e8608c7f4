"""The training engine: exact resume, determinism, schedules, clipping, atomic checkpoints."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sandbox.checkpoints import list_checkpoints
from sandbox.config import TrainConfig, parse_overrides
from sandbox.train import evaluate, lr_factor, train

TINY = ["task=three_moons", "task.length=24", "model=mosaic", "model.d=8", "model.units=2", "model.layers=2",
        "model.dropout=0.1", "train.steps=10", "train.batch_size=4", "train.log_every=2", "train.eval_every=5",
        "train.eval_batches=2", "train.lr=3e-3", "train.warmup_steps=2", "train.grad_clip=1.0"]


def run(tmp_path, *extra, **kwargs):
    return train(parse_overrides([*TINY, f"out={tmp_path}", *extra]), progress=False, **kwargs)


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_continues_bit_for_bit(tmp_path):
    whole = run(tmp_path / "a", "name=r")
    run(tmp_path / "b", "name=r", stop_after=5)
    resumed = run(tmp_path / "b", "name=r", resume=True)
    for key, value in weights(whole.model).items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    lines = lambda p: [json.loads(x) for x in (p / "r" / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    strip = lambda ls: [{k: v for k, v in x.items() if k != "tokens_per_second"} for x in ls]  # noqa: E731
    assert strip(lines(tmp_path / "a")) == strip(lines(tmp_path / "b"))


def test_same_seed_same_metrics_different_seed_different(tmp_path):
    a, b, c = run(tmp_path / "a"), run(tmp_path / "b"), run(tmp_path / "c", "seed=1")
    assert a.final_metrics == b.final_metrics
    assert a.final_metrics != c.final_metrics


def test_run_directory_contents(tmp_path):
    result = run(tmp_path, "name=x")
    assert sorted(p.name for p in result.run_dir.iterdir()) == ["checkpoints", "config.json", "metrics.jsonl"]
    (checkpoint,) = (result.run_dir / "checkpoints").iterdir()
    assert checkpoint.name.startswith("step-00000010.") and torch.load(checkpoint, weights_only=True)["step"] == 10
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["split"] == "train"] == [2, 4, 6, 8, 10]
    assert [x["step"] for x in lines if x["split"] == "val"] == [5, 10]
    assert json.loads((result.run_dir / "config.json").read_text())["model"]["d"] == 8


def test_training_reduces_the_loss(tmp_path):
    result = run(tmp_path, "train.steps=60", "train.eval_every=0", "model.dropout=0.0", "train.lr=1e-2")
    train_losses = [x["loss"] for x in result.history if x["split"] == "train"]
    # The small initial read-out starts near the zero prediction, not at a large random loss.
    assert sum(train_losses[-3:]) < 0.8 * sum(train_losses[:3])


def test_callbacks_add_metrics(tmp_path):
    result = run(tmp_path, callbacks=(lambda model, task, step: {"custom": float(step)},))
    assert result.final_metrics["custom"] == 10.0


def test_failed_checkpoint_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def broken_write(path, data):
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", broken_write)
    with pytest.raises(OSError, match="disk full"):
        run(tmp_path, "name=x")
    assert list((tmp_path / "x" / "checkpoints").iterdir()) == []
    assert not [p for p in (tmp_path / "x").iterdir() if p.name.startswith(".")]  # nor the lock


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="cannot resume .*: it holds no run"):
        run(tmp_path, resume=True)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_schedules(schedule):
    config = TrainConfig(steps=101, warmup_steps=10, schedule=schedule, final_lr_fraction=0.1)
    assert lr_factor(0, config) == pytest.approx(0.1) and lr_factor(9, config) == pytest.approx(1.0)
    assert lr_factor(10, config) == pytest.approx(1.0)
    end = {"cosine": 0.1, "linear": 0.1, "constant": 1.0}[schedule]
    assert lr_factor(100, config) == pytest.approx(end)
    middle = {"cosine": 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 45 / 90)), "linear": 1 - 0.9 * 0.5, "constant": 1.0}
    assert lr_factor(55, config) == pytest.approx(middle[schedule])


def test_sgd_and_frozen_parameters(tmp_path):
    result = run(tmp_path, "train.optimizer=sgd", "train.momentum=0.9")
    state = torch.load(list_checkpoints(result.run_dir)[0][1], weights_only=True)["optimizer"]  # what it stepped with
    assert state["param_groups"][0]["momentum"] == 0.9 and "betas" not in state["param_groups"][0]
    assert state["state"] and all("momentum_buffer" in s for s in state["state"].values())
    # A parameter with requires_grad=False is left out of the optimizer and does not move.
    from sandbox.train import build, make_optimizer

    config = parse_overrides([*TINY, f"out={tmp_path}", "train.optimizer=sgd", "train.momentum=0.9"])
    _, model = build(config, torch.device("cpu"))
    frozen_name, frozen = next(iter(model.named_parameters()))
    frozen.requires_grad_(False)
    before = weights(model)
    optimizer = make_optimizer(model, config.train)
    assert all(p is not frozen for group in optimizer.param_groups for p in group["params"])
    task = config.task.build(config.seed)
    batch = task.batch("train", 0, 4)
    task.loss(model(batch.inputs), batch).backward()
    optimizer.step()
    after = model.state_dict()
    assert torch.equal(after[frozen_name], before[frozen_name])
    assert any(not torch.equal(after[k], before[k]) for k in before if k != frozen_name)


def test_gradient_clipping_bounds_the_update(tmp_path):
    # With clip c and plain SGD (no momentum) the first update has norm <= lr·c.
    config = parse_overrides([*TINY, f"out={tmp_path}", "train.optimizer=sgd", "train.momentum=0.0",
                              "train.grad_clip=0.01", "train.lr=1.0", "train.warmup_steps=0",
                              "train.schedule=constant", "train.steps=1", "model.dropout=0.0"])
    from sandbox.train import build

    _, before = build(config, torch.device("cpu"))
    after = train(config, progress=False).model.cpu()  # trained on whatever device auto picks
    with torch.no_grad():
        delta = torch.sqrt(sum((a - b).pow(2).sum() for a, b in zip(after.parameters(), before.parameters())))
    assert 0 < float(delta) <= 0.01 + 1e-6


def test_a_new_run_never_overwrites_an_old_one(tmp_path):
    first = run(tmp_path, "name=x")
    before = {p.name: p.read_bytes() for p in first.run_dir.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match=r"already holds a run \(checkpoints, config.json, metrics.jsonl\); "
                                         r"continue it with --resume .*--overwrite"):
        run(tmp_path, "name=x", "seed=1")
    assert {p.name: p.read_bytes() for p in first.run_dir.iterdir() if p.is_file()} == before
    again = run(tmp_path, "name=x", "seed=1", overwrite=True)  # explicitly asked: replaced, nothing stale
    lines = [json.loads(x) for x in (again.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 7 and json.loads((again.run_dir / "config.json").read_text())["seed"] == 1
    assert len(list((again.run_dir / "checkpoints").iterdir())) == 1


def test_default_names_differ_for_different_configs(tmp_path):
    a = parse_overrides([*TINY, f"out={tmp_path}"])
    b = parse_overrides([*TINY, f"out={tmp_path}", "train.steps=2"])
    assert a.run_dir != b.run_dir and a.run_dir.name.startswith("three_moons-mosaic-seed0-")
    assert a.run_dir == parse_overrides([*TINY, f"out={tmp_path}", "name="]).run_dir  # same config, same name
    assert a.run_dir.name == parse_overrides([*TINY, "out=elsewhere"]).run_dir.name  # `out` is not the config


def test_a_second_process_is_refused_while_the_first_trains(tmp_path):
    config = parse_overrides([*TINY, f"out={tmp_path}", "name=x"])

    def meanwhile(model, task, step):  # called inside the first run, lock held
        with pytest.raises(BlockingIOError, match=rf"{tmp_path / 'x'} is in use by process {os.getpid()} on "):
            train(config, resume=True, progress=False)
        return {}

    train(config, callbacks=(meanwhile,), progress=False)
    assert not (tmp_path / "x" / ".lock").exists()


def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path):
    whole = run(tmp_path / "a", "name=r", "train.checkpoint_every=2")
    run(tmp_path / "b", "name=r", "train.checkpoint_every=2", stop_after=8)
    folder = tmp_path / "b" / "r" / "checkpoints"
    assert [p.name[:13] for p in sorted(folder.iterdir())] == ["step-00000004", "step-00000006", "step-00000008"]
    newest, middle, _ = sorted(folder.iterdir(), reverse=True)
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    middle.write_bytes(b"")  # empty
    with pytest.warns(UserWarning, match=r"skipped damaged checkpoint\(s\) step-00000008.*digest.*; step-00000006"
                                         r".*resuming from step-00000004"):
        resumed = run(tmp_path / "b", "name=r", "train.checkpoint_every=2", resume=True)
    for key, value in weights(whole.model).items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert sorted(p.name.endswith(".damaged") for p in folder.iterdir()).count(True) == 2


def test_with_no_intact_checkpoint_resume_starts_again_from_step_0(tmp_path):
    whole = run(tmp_path / "a", "name=r")
    run(tmp_path / "b", "name=r", stop_after=4)
    (checkpoint,) = (tmp_path / "b" / "r" / "checkpoints").iterdir()
    checkpoint.write_bytes(b"garbage" * 100)
    with pytest.warns(UserWarning, match=r"every checkpoint is damaged \(step-00000004.*digest.*\); starting again "
                                         "from step 0"):
        resumed = run(tmp_path / "b", "name=r", resume=True)
    for key, value in weights(whole.model).items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path):
    whole = run(tmp_path / "a", "name=r")
    run(tmp_path / "b", "name=r", stop_after=6)
    metrics = tmp_path / "b" / "r" / "metrics.jsonl"
    n = len(metrics.read_text().splitlines())
    with open(metrics, "a") as f:
        f.write('{"step": 8, "split": "tr')  # a write cut short
    with pytest.warns(UserWarning, match=rf"metrics.jsonl, line {n + 1}: torn"):
        resumed = run(tmp_path / "b", "name=r", resume=True)
    assert resumed.final_metrics == {k: v for k, v in whole.final_metrics.items()}
    bad = tmp_path / "b" / "r" / "metrics.jsonl"
    bad.write_text("{}\nnot json\n" + bad.read_text())
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 1: a metrics line needs"):
        run(tmp_path / "b", "name=r", resume=True)


def test_resuming_a_finished_run_trains_nothing_and_returns_its_metrics(tmp_path):
    whole = run(tmp_path, "name=r")
    again = run(tmp_path, "name=r", resume=True)
    assert again.steps_trained == 0 and again.final_metrics == whole.final_metrics
    with pytest.warns(UserWarning, match="train.steps: 10 -> 12"):  # a schedule key: allowed
        longer = run(tmp_path, "name=r", "train.steps=12", resume=True)
    assert longer.steps_trained == 2 and longer.final_metrics["step"] == 12


def test_resume_may_change_the_schedule_and_nothing_else(tmp_path):
    run(tmp_path, "name=r", stop_after=4)
    with pytest.raises(ValueError, match=r"with model.d, seed changed: a resumed run may change only train.\{steps,lr,"):
        run(tmp_path, "name=r", "model.d=16", "seed=2", resume=True)
    with pytest.warns(UserWarning, match=r"resuming at step 4 with train.lr: 0.003 -> 0.0003"):
        run(tmp_path, "name=r", "train.lr=3e-4", resume=True)
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert {"step": 4, "split": "resume", "changed": ["train.lr: 0.003 -> 0.0003"]} in lines
    after = [x["lr"] for x in lines if x["split"] == "train" and x["step"] > 4]
    assert after == pytest.approx([3e-4 * lr_factor(s, parse_overrides(TINY).train) for s in (6, 8, 10)], rel=1e-12)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["lr"] == 3e-4


def test_divergence_names_the_step_and_keeps_the_last_finite_checkpoint(tmp_path, nan_loss_at):
    whole = run(tmp_path / "a", "name=r", "train.checkpoint_every=2")
    poisoned = nan_loss_at(6)
    with pytest.raises(FloatingPointError, match=r"training diverged: the training loss became nan at step 6; the "
                                                 r"newest checkpoint before it \(step 4\) is kept. Resume with a "
                                                 r"lower learning rate: sandbox train --resume .*r train.lr=0.0003"):
        run(tmp_path / "b", "name=r", "train.checkpoint_every=2")
    poisoned.undo()
    folder = tmp_path / "b" / "r" / "checkpoints"
    assert sorted(p.name[:13] for p in folder.iterdir() if p.suffix == ".pt") == ["step-00000002", "step-00000004"]
    assert [p.suffix for p in folder.iterdir() if p.suffix != ".pt"] == [".diverged"]  # step 6's weights
    resumed = run(tmp_path / "b", "name=r", "train.checkpoint_every=2", resume=True)
    for key, value in weights(whole.model).items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_a_real_divergence_without_a_checkpoint_before_it(tmp_path):
    with pytest.raises(FloatingPointError, match=r"the training loss became (nan|inf) at step 1; no checkpoint from "
                                                 r"before it \(train.checkpoint_every=1\): a resumed run starts again "
                                                 r"from step 0. Resume with a lower learning rate: .* train.lr=1e\+29"):
        run(tmp_path, "name=r", "train.lr=1e30", "train.checkpoint_every=1", "train.warmup_steps=0")
    assert list_checkpoints(tmp_path / "r") == []  # the step-1 checkpoint gives a NaN loss: set aside


# A real process killed with SIGKILL: mid-run (before the batch of step AT) or in the middle of writing its
# AT-th checkpoint (half the bytes in the temporary file, not yet renamed).
KILLED = """
import os, signal, sys
import sandbox.checkpoints as saving
import sandbox.train as engine
import torch
from sandbox.cli import main

torch.set_num_threads(int(os.environ["SANDBOX_TEST_THREADS"]))  # the parent's, so the arithmetic is the same

where, at = sys.argv[1], int(sys.argv[2])
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
if where == "step":
    real_build = engine.build
    def build(config, device):
        task, model = real_build(config, device)
        real_batch = task.batch
        def batch(split, index, *args, **kwargs):
            if split == "train" and index == at:
                die()
            return real_batch(split, index, *args, **kwargs)
        task.batch = batch
        return task, model
    engine.build = build
else:
    real_write, count = saving.atomic_write, [0]
    def atomic_write(path, write):
        count[0] += 1
        if count[0] != at:
            return real_write(path, write)
        def torn(tmp):
            write(tmp)
            tmp.write_bytes(tmp.read_bytes()[: tmp.stat().st_size // 2])
            die()
        return real_write(path, torn)
    saving.atomic_write = atomic_write
main(["train", *sys.argv[3:]])
"""


def metric_lines(run_dir):
    return [{k: v for k, v in json.loads(x).items() if k != "tokens_per_second"}
            for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def killed_then_resumed(tmp_path, where, at):
    args = [*TINY, "train.checkpoint_every=2", f"out={tmp_path}", "name=r"]
    env = dict(os.environ, SANDBOX_TEST_THREADS=str(torch.get_num_threads()))
    done = subprocess.run([sys.executable, "-c", KILLED, where, str(at), *args], capture_output=True, text=True,
                          env=env)
    assert done.returncode == -signal.SIGKILL, done.stderr
    run_dir = tmp_path / "r"
    assert (run_dir / ".lock").exists() and json.loads((run_dir / ".lock").read_text())["pid"] != os.getpid()
    with pytest.warns(UserWarning, match="taking over the stale lock"):
        resumed = train(parse_overrides(args), resume=True, progress=False)
    assert not list(run_dir.rglob(".*.tmp")) and not (run_dir / ".lock").exists()
    return resumed


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return run(tmp_path_factory.mktemp("whole"), "train.checkpoint_every=2", "name=r")


@pytest.mark.parametrize("where, at", [("step", 5), ("checkpoint", 3)] + [
    pytest.param(w, a, marks=pytest.mark.slow) for w, a in [("step", 1), ("step", 9), ("checkpoint", 1), ("checkpoint", 5)]])
def test_sigkill_then_resume_equals_the_uninterrupted_run(uninterrupted, tmp_path, where, at):
    resumed = killed_then_resumed(tmp_path, where, at)
    for key, value in weights(uninterrupted.model).items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert metric_lines(uninterrupted.run_dir) == metric_lines(tmp_path / "r")


class _KeysByBatch:
    """A fake task whose batch `index` reports `loss` always and `rare` only on odd batches."""

    def batch(self, split, index, batch_size, device):
        return SimpleNamespace(inputs=torch.full((batch_size, 1), float(index)))

    def metrics(self, outputs, batch):
        index = float(outputs[0, 0])
        return {"loss": index, **({"rare": 10.0 * index} if index % 2 == 1 else {})}


def test_evaluate_averages_each_metric_over_the_batches_that_report_it():
    """Batches 0..4 report loss 0..4 and `rare` only on batches 1 and 3 (10 and 30): the means are 2
    and 20, not `rare`'s sum over all five batches (8)."""
    model = torch.nn.Identity()
    metrics = evaluate(model, _KeysByBatch(), TrainConfig(eval_batches=5, batch_size=2), "cpu")
    assert metrics == {"loss": 2.0, "rare": 20.0}
