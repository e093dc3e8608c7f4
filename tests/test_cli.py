"""The `sandbox` entry point, the demo command, and one-line errors for every mistake a user can make."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.cli import COMMANDS, main


def test_demo_writes_figure_and_numbers(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--n", "150", "--seed", "3"]) == 0
    for suffix in ("png", "pdf", "json"):
        assert (tmp_path / f"demo.{suffix}").stat().st_size > 0
    data = json.loads((tmp_path / "demo.json").read_text())
    fits = data["fits"]
    assert len(fits) == 5 and len(data["grid"]) == len(data["truth"]) == 400
    cv = next(v for k, v in fits.items() if "cross-validated" in k)
    fixed = [v["rmse"] for k, v in fits.items() if "cross-validated" not in k]
    # The cross-validated bandwidth is near the best of the fixed ones and far better than the widest.
    assert len(fixed) == 4 and cv["rmse"] <= 1.25 * min(fixed)
    assert cv["rmse"] < 0.5 * fits["beta=3"]["rmse"]
    assert "RMSE to truth" in capsys.readouterr().out


def test_bad_argument_is_a_one_line_error(capsys):
    assert main(["demo", "--n", "1"]) == 2
    err = capsys.readouterr().err
    assert "--n must be in [2, inf], got 1" in err and "Traceback" not in err


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_memories_command_lists_the_reference(capsys):
    assert main(["memories"]) == 0
    assert "gaussian" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "sandbox", "memories"], capture_output=True, text=True)
    assert done.returncode == 0 and "gaussian" in done.stdout


def test_tasks_command_lists_every_task(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("bigram", "three_moons", "regular_languages", "recall", "oscillators"))


# ---- one-line errors: every mistake the issue lists ends in one line and a non-zero status ----

TINY = ["task=three_moons", "task.length=24", "model=mosaic", "model.d=8", "model.units=2", "model.layers=1",
        "train.steps=4", "train.batch_size=2", "train.log_every=2", "train.eval_every=0", "train.eval_batches=1"]


def one_line_error(capsys, argv, status=2) -> str:
    """Run `sandbox ARGV` in-process; require `status` and a single stderr line; return that line."""
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"sandbox {argv[0]}: error: "), err
    return err


def test_ordinary_mistakes_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "shape.json").write_text('{"train": 3}')
    cases = [
        (["train", "--config", str(tmp_path / "missing.json")], "--config .*missing.json: no such file"),
        (["train", "--config", str(tmp_path / "shape.json")], "shape.json: train must be an object"),
        (["train", *TINY, f"out={tmp_path / 'afile'}"], "out=.*afile: cannot make the run directory .*a file is in the way"),
        (["train", *TINY, f"out={tmp_path / 'afile' / 'below'}"], "a file is in the way"),
        (["train", "--resume", str(tmp_path / "nothing")], "--resume .*nothing: no such run directory"),
        (["train", "--resume", str(tmp_path)], "not a run directory \\(it has no config.json\\)"),
        (["train", *TINY, f"seed={2**64}"], r"seed must be in \[0, 9223372036854775807\]"),
        (["train", *TINY, "name=../../escaped"], "name must be one directory name inside out"),
        (["train", *TINY, f"name={tmp_path}/abs"], "name must be one directory name inside out"),
        (["train", "--bogus"], r"unrecognized arguments: --bogus \(see sandbox train --help\)"),
        (["figures", "three-moons", "--plot-only", "--out", str(tmp_path / "none")], "--plot-only needs saved results"),
        (["figures", "three-moons", "--preset", "nope", "--plot-only", "--out", str(tmp_path)], "--preset must be one of"),
    ]
    for argv, match in cases:
        assert re.search(match, one_line_error(capsys, argv)), (argv, match)


def test_plot_only_on_empty_or_damaged_results(tmp_path, capsys):
    (tmp_path / "three-moons").mkdir()
    err = one_line_error(capsys, ["figures", "three-moons", "--plot-only", "--out", str(tmp_path)])
    assert "--plot-only: the results in" in err and "missing or damaged" in err and "results.json" in err
    (tmp_path / "three-moons" / "results.json").write_text('{"runs": [')
    assert "missing or damaged" in one_line_error(capsys, ["figures", "three-moons", "--plot-only", "--out", str(tmp_path)])
    (tmp_path / "three-moons" / "results.json").write_text('{"runs": []}')
    assert "missing or damaged (KeyError" in one_line_error(capsys, ["figures", "three-moons", "--plot-only",
                                                                     "--out", str(tmp_path)])


def test_not_writable_is_one_line(tmp_path, capsys, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    err = one_line_error(capsys, ["train", *TINY, f"out={tmp_path / 'ro'}"])
    assert "cannot write the run directory" in err and "permission denied" in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        main(["train", "--debug", "--config", str(tmp_path / "missing.json")])


def test_options_may_come_in_any_order_and_runs_are_protected(tmp_path, capsys):
    argv = ["train", "task=three_moons", "--out", str(tmp_path), *TINY[1:], "name=r"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"run directory: {tmp_path / 'r'}" in out and "final validation metrics at step 4" in out
    # Again into the same directory: refused, nothing touched; --overwrite replaces it.
    before = (tmp_path / "r" / "metrics.jsonl").read_text()
    err = one_line_error(capsys, argv)
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == before
    assert main([*argv, "--overwrite"]) == 0
    capsys.readouterr()
    # Resuming the finished run says so; --resume may change schedule keys only, and never out= or name=.
    assert main(["train", "--resume", str(tmp_path / "r")]) == 0
    assert "the run had already finished at step 4: nothing to train" in capsys.readouterr().out
    err = one_line_error(capsys, ["train", "--resume", str(tmp_path / "r"), "model.d=16"])
    assert "with model.d changed: a resumed run may change only train.{steps,lr," in err
    assert "cannot move it" in one_line_error(capsys, ["train", "--resume", str(tmp_path / "r"), "name=s"])
    with pytest.warns(UserWarning, match="train.steps: 4 -> 6"):
        assert main(["train", "--resume", str(tmp_path / "r"), "train.steps=6"]) == 0
    assert "final validation metrics at step 6" in capsys.readouterr().out


def test_config_of_a_run_makes_a_new_run(tmp_path, capsys):
    assert main(["train", *TINY, f"out={tmp_path}"]) == 0
    (first,) = tmp_path.iterdir()
    capsys.readouterr()
    assert main(["train", "--config", str(first / "config.json"), "train.steps=2"]) == 0
    assert len(list(tmp_path.iterdir())) == 2  # a new default name: the first run is untouched
    assert "already holds a run" in one_line_error(capsys, ["train", "--config", str(first / "config.json")])


def test_divergence_is_one_line_and_resumable_with_a_lower_lr(tmp_path, capsys, nan_loss_at):
    argv = ["train", *TINY, f"out={tmp_path}", "name=r", "train.checkpoint_every=1"]
    poisoned = nan_loss_at(3)
    err = one_line_error(capsys, argv, status=1)
    poisoned.undo()
    assert re.search(r"error: training diverged: the training loss became nan at step 3; the newest checkpoint "
                     r"before it \(step 2\) is kept\. Resume with a lower learning rate: sandbox train --resume "
                     r".*r train.lr=0.0001  \(--debug shows", err), err
    with pytest.warns(UserWarning, match="resuming at step 2 with train.lr: 0.001 -> 0.0001"):
        assert main(["train", "--resume", str(tmp_path / "r"), "train.lr=1e-4"]) == 0
    assert "final validation metrics at step 4" in capsys.readouterr().out
    err = one_line_error(capsys, ["train", *TINY, f"out={tmp_path}", "name=s", "train.lr=1e30"], status=1)
    assert "at step 1; no checkpoint from before it (train.checkpoint_every=0): a resumed run starts again" in err
    with pytest.warns(UserWarning, match="holds no checkpoint yet; starting again from step 0"):
        assert main(["train", "--resume", str(tmp_path / "s"), "train.lr=1e-3"]) == 0


def test_a_busy_run_directory_is_one_line_naming_the_holder(tmp_path, capsys):
    from sandbox.io import DirectoryLock

    (tmp_path / "r").mkdir()
    with DirectoryLock(tmp_path / "r"):
        err = one_line_error(capsys, ["train", *TINY, f"out={tmp_path}", "name=r"], status=1)
    assert f"is in use by process {os.getpid()}" in err


def test_real_processes_print_one_line(tmp_path):
    for argv, status, match in [(["train", "model.d=abc"], 2, "sandbox train: error: model.d: expected an integer"),
                                (["train", "--config", str(tmp_path / "x.json")], 2, "x.json: no such file"),
                                (["nope"], 2, "sandbox: error: argument COMMAND: invalid choice: 'nope'")]:
        done = subprocess.run([sys.executable, "-m", "sandbox", *argv], capture_output=True, text=True)
        assert done.returncode == status and done.stderr.count("\n") == 1 and match in done.stderr, done.stderr
