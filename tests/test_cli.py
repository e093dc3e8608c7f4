"""The `sandbox` entry point and the demo command."""

import json
import subprocess
import sys

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
