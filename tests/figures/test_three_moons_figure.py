"""The three-moons figure: the tiny preset writes every file, numbers are finite, plots redraw from JSON."""

import json
import shutil

import pytest
import torch

from figures import three_moons
from sandbox.analysis.disentanglement import disentanglement_score, moon_assignment
from figure_helpers import finite, redraw, run_tiny


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    return run_tiny(tmp_path_factory, "three-moons")


def test_every_panel_is_written_as_png_pdf_and_json(results_dir):
    for stem in ("three_moons_attention", "three_moons_generation", "three_moons_moduli"):
        for suffix in ("png", "pdf", "json"):
            assert (results_dir / f"{stem}.{suffix}").stat().st_size > 0
    assert json.loads((results_dir / "timing.json").read_text())["wall_seconds"] > 0


def test_results_have_the_expected_numbers(results_dir):
    results = json.loads((results_dir / "results.json").read_text())
    assert finite(results)
    assert results["moon_periods_in_steps"] == pytest.approx([44.444, 88.889, 133.333], abs=1e-3)
    assert {r["units"] for r in results["runs"]} == {1, 3}
    for run in results["runs"]:
        assert len(run["generation_error"]) == len(results["contexts"])
        assert len(run["reads"]) == run["units"] == len(run["unit_scores"])
        # The reported score and unit → moon assignment are those of the saved W_φ moduli, unit by unit.
        score, unit_scores = disentanglement_score(torch.tensor(run["moduli"]["W_phi"]), run["units"])
        assert run["score"] == pytest.approx(score, rel=1e-9)
        assert run["unit_scores"] == pytest.approx(unit_scores, rel=1e-9)
        assert run["reads"] == moon_assignment(torch.tensor(run["moduli"]["W_phi"]), run["units"])
        assert all(len(m) == 3 and len(m[0]) == 3 for m in run["moduli"].values())


def test_plots_redraw_from_saved_results_alone(results_dir):
    for run_dir in (results_dir / "runs").iterdir():  # no checkpoints needed: plotting reads JSON only
        shutil.rmtree(run_dir / "checkpoints")
    redraw(results_dir, "three_moons_moduli")


def test_training_beats_predicting_nothing(results_dir):
    # Robust at any size: the trained models' validation loss is well below that of predicting zeros.
    import torch

    from tasks.three_moons import ThreeMoonsConfig

    task = ThreeMoonsConfig(length=three_moons.PRESETS["tiny"]["length"]).build(0)
    batch = task.batch("val", 0, 16)
    zero_loss = float(task.loss(torch.zeros_like(batch.targets), batch))
    results = json.loads((results_dir / "results.json").read_text())
    for run in results["runs"]:
        assert run["val_loss"] < 0.75 * zero_loss, (run["val_loss"], zero_loss)


def test_presets_are_complete():
    for preset in three_moons.PRESETS.values():
        assert {"steps", "batch_size", "seeds", "eval_sequences", "contexts", "length"} <= set(preset)
        assert max(preset["contexts"]) + three_moons.HORIZON <= preset["length"] + 1


@pytest.mark.slow
def test_quick_preset_three_units_disentangle_more_than_one(tmp_path):
    """The quick preset (about 2 minutes): the 3-unit model's score beats the 1-unit model's."""
    results = three_moons.compute(three_moons.PRESETS["quick"], tmp_path, progress=False)
    assert results["summary"]["3_units"]["score_mean"] > results["summary"]["1_units"]["score_mean"]


def test_runs_on_a_process_pool_give_the_serial_numbers(results_dir, tmp_path):
    """`--jobs 2` trains the (units, seed) runs in two processes: the same seeds give the same numbers."""
    from sandbox.cli import main

    assert main(["figures", "three-moons", "--preset", "tiny", "--out", str(tmp_path), "--no-progress", "--jobs", "2"]) == 0
    serial = json.loads((results_dir / "results.json").read_text())
    pooled = json.loads((tmp_path / "three-moons" / "results.json").read_text())
    assert [(r["units"], r["seed"]) for r in pooled["runs"]] == [(r["units"], r["seed"]) for r in serial["runs"]]
    for a, b in zip(serial["runs"], pooled["runs"]):
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)
        assert b["score"] == pytest.approx(a["score"], abs=1e-5) and b["reads"] == a["reads"]
