"""The training engine: exact resume, determinism, schedules, clipping, atomic checkpoints."""

import json
import math

import pytest
import torch

from sandbox.config import TrainConfig, parse_overrides
from sandbox.train import lr_factor, train

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
    assert sorted(p.name for p in result.run_dir.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl"]
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
    def broken_save(obj, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        run(tmp_path, "name=x")
    assert not (tmp_path / "x" / "checkpoint.pt").exists()
    assert not [p for p in (tmp_path / "x").iterdir() if p.name.startswith(".")]


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint"):
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
    state = torch.load(result.run_dir / "checkpoint.pt")["optimizer"]  # what the run actually stepped with
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
    after = train(config, progress=False).model
    with torch.no_grad():
        delta = torch.sqrt(sum((a - b).pow(2).sum() for a, b in zip(after.parameters(), before.parameters())))
    assert 0 < float(delta) <= 0.01 + 1e-6
