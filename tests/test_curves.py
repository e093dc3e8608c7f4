"""`sandbox plot`: learning curves read back from run directories."""

import json

import pytest

from sandbox.cli import main
from sandbox.curves import collect, plot_curves
from sandbox.runs import curves, final_metrics, is_finished, read_metrics


def write_run(path, lines):
    path.mkdir(parents=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


LINES = [{"step": 2, "split": "train", "loss": 2.0, "lr": 1e-3, "tokens_per_second": 10.0},
         {"step": 4, "split": "train", "loss": 1.5, "lr": 1e-3, "tokens_per_second": 11.0},
         {"step": 4, "split": "val", "loss": 1.7, "accuracy": 0.25},
         {"step": 6, "split": "train", "loss": 1.0, "lr": 5e-4, "tokens_per_second": 12.0},
         {"step": 6, "split": "val", "loss": 1.2, "accuracy": 0.5}]


def test_curves_split_by_split_and_metric(tmp_path):
    run = write_run(tmp_path / "a", LINES)
    c = curves(run)
    assert c["train"]["loss"] == {"steps": [2, 4, 6], "values": [2.0, 1.5, 1.0]}
    assert c["val"]["accuracy"] == {"steps": [4, 6], "values": [0.25, 0.5]}
    assert final_metrics(run)["accuracy"] == 0.5
    assert is_finished(run, 6) and not is_finished(run, 8)


def test_plot_writes_png_pdf_and_the_plotted_numbers(tmp_path):
    a = write_run(tmp_path / "a", LINES)
    b = write_run(tmp_path / "b", [{**line, "loss": line["loss"] * 2} for line in LINES])
    paths = plot_curves([a, b], tmp_path / "out" / "curves")
    assert all(paths[k].stat().st_size > 0 for k in ("png", "pdf", "json"))
    data = json.loads(paths["json"].read_text())
    # Task metrics only, the loss first; the engine's lr and tokens/s are left out.
    assert data["metrics"] == ["loss", "accuracy"]
    assert data["runs"]["b"]["val"]["loss"]["values"] == [3.4, 2.4]
    assert "lr" not in data["runs"]["a"]["train"]


def test_same_names_are_told_apart_by_their_paths(tmp_path):
    a, b = write_run(tmp_path / "x" / "run", LINES), write_run(tmp_path / "y" / "run", LINES)
    assert sorted(collect([a, b])["runs"]) == ["x/run", "y/run"]


def test_plot_command(tmp_path, capsys):
    run = write_run(tmp_path / "a", LINES)
    assert main(["plot", str(run), "--out", str(tmp_path / "c"), "--metrics", "accuracy"]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["metrics"] == ["accuracy"]
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("setup, message", [
    (lambda p: p, "does not exist"),
    (lambda p: (p.mkdir(), p)[1], "no metrics.jsonl"),
    (lambda p: write_run(p, LINES[:1]) and (p / "metrics.jsonl").write_text("{oops\n{}\n") and p, "line 1: not JSON"),
    (lambda p: write_run(p, [{"step": 1}]), "line 1: a metrics line needs 'step' and 'split'"),
])
def test_bad_run_directories_are_named(tmp_path, setup, message):
    with pytest.raises(ValueError, match=message):
        read_metrics(setup(tmp_path / "r"))


def test_a_torn_last_line_is_left_out_and_the_file_kept(tmp_path):
    run = write_run(tmp_path / "a", LINES)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 8, "spl')
    before = (run / "metrics.jsonl").read_text()
    with pytest.warns(UserWarning, match="line 6: incomplete"):
        assert read_metrics(run) == LINES
    assert (run / "metrics.jsonl").read_text() == before


def test_unknown_metric_lists_the_available_ones(tmp_path, capsys):
    run = write_run(tmp_path / "a", LINES)
    assert main(["plot", str(run), "--out", str(tmp_path / "c"), "--metrics", "bleu"]) == 2
    assert "'bleu' is in none of the runs; available: accuracy, loss, lr" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


def test_tensorboard_export(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional tensorboard package is not installed")
    from sandbox.curves import export_tensorboard

    run = write_run(tmp_path / "a", LINES)
    (target,) = export_tensorboard([run], tmp_path / "tb")
    assert list(target.glob("events.out.tfevents.*"))


def test_tensorboard_missing_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    from sandbox.curves import export_tensorboard

    with pytest.raises(ValueError, match=r"needs the tensorboard package"):
        export_tensorboard([write_run(tmp_path / "a", LINES)], tmp_path / "tb")


def test_plot_and_resume_read_through_the_one_reader(tmp_path, monkeypatch):
    """`sandbox plot` and resume both parse metrics.jsonl with `sandbox.runs.read_metrics`: the plot
    leaves a live run's torn last line in the file, resume (repair=True) drops it and the lines after
    the checkpoint it resumes from."""
    import sandbox.runs
    from sandbox.config import parse_overrides
    from sandbox.train import train

    calls = []
    reader = sandbox.runs.read_metrics
    monkeypatch.setattr(sandbox.runs, "read_metrics", lambda *a, **k: calls.append(k) or reader(*a, **k))
    overrides = ["task=three_moons", "task.length=24", "model=mosaic", "model.d=8", "model.units=2",
                 "train.steps=6", "train.batch_size=2", "train.log_every=2", "train.eval_every=3",
                 "train.eval_batches=1", "train.checkpoint_every=2", f"out={tmp_path}", "name=r"]
    train(parse_overrides(overrides), progress=False, stop_after=4)
    metrics = tmp_path / "r" / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"step": 6, "spl')  # a write in progress, or cut short
    live = metrics.read_bytes()
    with pytest.warns(UserWarning, match=r"metrics.jsonl, line \d+: incomplete"):
        assert main(["plot", str(tmp_path / "r"), "--out", str(tmp_path / "c")]) == 0
    assert metrics.read_bytes() == live and calls == [{}]
    with pytest.warns(UserWarning, match=r"metrics.jsonl, line \d+: torn"):
        train(parse_overrides(overrides), progress=False, resume=True)
    assert calls[1] == {"repair": True, "up_to_step": 4}
    lines = [json.loads(text) for text in metrics.read_text().splitlines()]
    assert [line["step"] for line in lines if line["split"] == "train"] == [2, 4, 6]
