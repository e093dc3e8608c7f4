"""`sandbox sweep`: grids, skipping finished runs, failures, the aggregate over seeds, the launchers."""

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.analysis.seeds import t_interval
from sandbox.cli import main
from sandbox.sweep import expand_grid, parse_grid, plan, sweep

BASE = ["task=three_moons", "task.length=24", "model=mosaic", "model.d=8", "model.units=2", "model.layers=1",
        "train.steps=4", "train.batch_size=4", "train.log_every=2", "train.eval_every=0", "train.eval_batches=1",
        "train.device=cpu"]


@given(st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True), min_size=0, max_size=3))
def test_grid_is_every_combination_once(axes):
    grid = {f"k{i}": [str(v) for v in values] for i, values in enumerate(axes)}
    points = expand_grid(grid)
    assert len(points) == math.prod(len(v) for v in grid.values())
    assert len(set(points)) == len(points)
    assert all([k for k, _ in p] == list(grid) for p in points)


def test_parse_grid_and_its_errors():
    assert parse_grid(["model.d=8,16", "train.betas=0.9,0.99;0.8,0.9"]) == {
        "model.d": ["8", "16"], "train.betas": ["0.9,0.99", "0.8,0.9"]}
    for bad, message in [("model.d", "KEY=V1,V2"), ("seed=1,2", "--seeds"), ("model.d=8,,16", "empty value"),
                         ("model.d=8,8", "repeated")]:
        with pytest.raises(ValueError, match=message):
            parse_grid([bad])


def test_plan_validates_every_point_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match=r"grid point model.d=-3: model: d must be"):
        plan(BASE, {"model.d": ["8", "-3"]}, [0], tmp_path)
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ValueError, match="repeated"):
        plan(BASE, {}, [0, 0], tmp_path)


def test_pool_sweep_skips_finished_runs_lists_failures_and_aggregates(tmp_path, capsys):
    # lr=1e9 makes the loss non-finite: that run fails, the others finish.
    grid = {"train.lr": ["0.003", "1e9"]}
    summary = sweep(BASE, grid, [0, 1], tmp_path, jobs=2, progress=False)
    assert [f["label"] for f in summary["failed"]] == ["train.lr=1e9", "train.lr=1e9"]
    assert "training diverged" in summary["failed"][0]["error"]
    good, bad = summary["table"]
    assert good["seeds"] == [0, 1] and bad["seeds"] == [] and bad["metrics"] == {}
    losses = good["seed_values"]["loss"]
    assert len(losses) == 2 and losses[0] != losses[1]  # two seeds, two different runs
    assert good["metrics"]["loss"] == t_interval(losses)
    for seed, loss in zip([0, 1], losses):
        metrics = [json.loads(x) for x in (tmp_path / "runs" / f"train.lr=0.003_seed={seed}" / "metrics.jsonl").read_text().splitlines()]
        assert metrics[-1]["loss"] == loss
    assert (tmp_path / "sweep.png").exists() and json.loads((tmp_path / "sweep.json").read_text())["table"]
    assert "| train.lr=0.003 | 2 |" in (tmp_path / "table.md").read_text()
    assert "2 of 4 runs failed" in capsys.readouterr().out
    # Again: finished runs are skipped (their files untouched) and the table is rebuilt from them.
    stamp = (tmp_path / "runs" / "train.lr=0.003_seed=0" / "metrics.jsonl").stat().st_mtime_ns
    again = sweep(BASE, {"train.lr": ["0.003"]}, [0, 1], tmp_path, jobs=1, progress=False)
    assert again["skipped"] == 2 and not again["failed"]
    assert (tmp_path / "runs" / "train.lr=0.003_seed=0" / "metrics.jsonl").stat().st_mtime_ns == stamp
    assert again["table"][0]["metrics"] == good["metrics"]


def test_a_changed_config_is_not_taken_for_finished(tmp_path):
    (run,) = plan(BASE, {}, [0], tmp_path)
    from sandbox.sweep import is_done, train_one

    train_one(run.config.to_dict(), threads=1)
    assert is_done(run)
    (longer,) = plan([*BASE, "train.steps=5"], {}, [0], tmp_path)
    assert longer.config.run_dir == run.config.run_dir and not is_done(longer)


def submitit_sweep(tmp_path, cluster, grid):
    pytest.importorskip("submitit", reason="submitit is in the dev extra; install it to test this launcher")
    return sweep(BASE, grid, [3], tmp_path / "submitit", launcher="submitit", cluster=cluster,
                 parameters={"timeout_min": 5, "cpus_per_task": 1}, progress=False)


def test_submitit_debug_executor_runs_the_sweep(tmp_path):
    # The debug executor runs each job in this process: the launcher's plumbing, without process start-up.
    from sandbox.sweep import train_one

    submitted = submitit_sweep(tmp_path, "debug", {"model.d": ["8"]})
    (run,) = plan([*BASE, "model.d=8"], {}, [3], tmp_path / "direct")
    direct = train_one(run.config.to_dict(), threads=1)
    assert not submitted["failed"]
    assert submitted["table"][0]["seed_values"]["loss"] == [pytest.approx(direct["loss"], rel=1e-6)]


@pytest.mark.slow
def test_submitit_local_executor_gives_the_pool_results(tmp_path):
    grid = {"model.d": ["8", "16"]}
    submitted = submitit_sweep(tmp_path, "local", grid)
    pooled = sweep(BASE, grid, [3], tmp_path / "pool", jobs=1, progress=False)
    assert not submitted["failed"]
    assert list((tmp_path / "submitit" / "submitit").iterdir())  # submitit's own logs
    # The same numbers, up to float summation order (the launchers may give torch different thread counts).
    for a, b in zip(submitted["table"], pooled["table"]):
        for metric, values in b["seed_values"].items():
            assert a["seed_values"][metric] == pytest.approx(values, rel=1e-5)


def test_sweep_command(tmp_path, capsys):
    pytest.importorskip("submitit", reason="submitit is in the dev extra; install it to test this launcher")
    code = main(["sweep", *BASE, "--grid", "model.d=8,16", "--seeds", "0-1", "--launcher", "submitit",
                 "--cluster", "debug", "--out", str(tmp_path), "--metrics", "loss", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "4 runs (2 grid points × 2 seeds), 0 already finished" in out and "| model.d=16 | 2 | " in out
    assert "| loss |" in out and "| mse |" not in out


def test_sweep_command_rejects_too_many_jobs(tmp_path, capsys):
    assert main(["sweep", *BASE, "--jobs", "999", "--out", str(tmp_path)]) == 2
    assert "--jobs must be in [1," in capsys.readouterr().err
