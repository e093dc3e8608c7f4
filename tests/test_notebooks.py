"""The teaching notebooks. Each stored `.ipynb` agrees cell for cell with its percent-format source and
carries its outputs (a plot in every step); each runs top to bottom through a real Jupyter kernel
(a failing cell fails the test), and its "check your answer" cells say "no answer yet" to the blank
exercises, "right" to the solutions, and "not yet" to an answer of the wrong kind."""

import json
from pathlib import Path

import nbformat
import pytest

from sandbox.commands import notebooks

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "notebooks"
SOURCES = notebooks.sources(FOLDER)
LESSONS = ["01", "02", "03", "04", "05", "06"]
MIN_STEPS = 3
# Run after the last cell: every check made, and each exercise's verdict on an answer of the wrong kind.
PROBE = """\
import json
from sandbox import teaching
class NotAnAnswer: pass
print(json.dumps({"log": teaching.LOG,
                  "wrong": {n: teaching.verdict(e.is_right, NotAnAnswer())[0] for n, e in teaching.EXERCISES.items()}}))
"""


def step_images(nb) -> dict[str, int]:
    """{"## Step ..." heading: number of images the code cells of that step display}."""
    counts, current = {}, None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heading = next((line for line in cell.source.splitlines() if line.startswith("## ")), None)
            if heading is not None:
                current = heading if heading.startswith("## Step") else None
                if current:
                    counts[current] = 0
        elif current is not None:
            counts[current] += sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))
    return counts


def first_code_cell(nb) -> str:
    return next(cell.source for cell in nb.cells if cell.cell_type == "code")


def test_every_lesson_has_a_source_and_a_stored_notebook():
    assert [p.name[:2] for p in SOURCES] == LESSONS
    assert sorted(p.stem for p in FOLDER.glob("*.ipynb")) == [p.stem for p in SOURCES]


def test_every_notebook_starts_with_the_same_setup_cell():
    cells = {first_code_cell(notebooks.read_source(p)) for p in SOURCES}
    assert len(cells) == 1 and "pip" in cells.pop()


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_stored_notebook_agrees_with_its_source_and_has_outputs(source):
    assert notebooks.differences(source) == []
    nb = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), "not run top to bottom"
    assert not [out for cell in code for out in cell.outputs if out.output_type == "error"]
    images = step_images(nb)
    assert len(images) >= MIN_STEPS and all(images.values()), f"a step without a plot: {images}"
    printed = "".join(out.get("text", "") for cell in code for out in cell.outputs)
    assert "no answer yet" in printed and "✓ Exercise" in printed and "✗" not in printed


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_runs_in_a_jupyter_kernel(source, tmp_path):
    nb = notebooks.read_source(source)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    notebooks.execute(nb, tmp_path)  # raises CellExecutionError, naming the cell, if one fails
    images = step_images(nb)
    assert len(images) >= MIN_STEPS and all(images.values()), f"a step without a plot: {images}"
    printed = "".join(out.get("text", "") for out in nb.cells[-1].outputs if out.get("name") == "stdout")
    report = json.loads(printed.strip().splitlines()[-1])  # the stream may arrive in several chunks
    verdicts: dict[str, list[str]] = {}
    for name, verdict in report["log"]:
        verdicts.setdefault(name, []).append(verdict)
    assert len(verdicts) >= 3, "each lesson has exercises"
    for name, seen in verdicts.items():
        assert seen[0] == "unanswered" and seen[-1] == "right", f"exercise {name}: {seen}"
    assert set(report["wrong"]) == set(verdicts)
    assert all(v == "wrong" for v in report["wrong"].values()), report["wrong"]


def test_check_command_catches_a_notebook_that_disagrees_with_its_source(tmp_path, capsys):
    from sandbox.cli import main

    source = SOURCES[0]
    for path in (source, source.with_suffix(".ipynb")):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    assert main(["notebooks", "--dir", str(tmp_path), "--check"]) == 0
    edited = tmp_path / source.name
    edited.write_text(edited.read_text().replace("## Step 1:", "## Step 1 (edited):", 1))
    assert main(["notebooks", "--dir", str(tmp_path), "--check"]) == 1
    assert "differs from" in capsys.readouterr().out
    (tmp_path / source.with_suffix(".ipynb").name).unlink()
    assert main(["notebooks", "--dir", str(tmp_path), "--check"]) == 1
    assert "is missing" in capsys.readouterr().out


def test_notebooks_command_names_a_bad_argument(tmp_path, capsys):
    from sandbox.cli import main

    assert main(["notebooks", "--dir", str(tmp_path / "nowhere"), "--check"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["notebooks", "--dir", str(FOLDER), "--check", "99"]) == 2
    assert "no notebook source starts with ['99']" in capsys.readouterr().err
