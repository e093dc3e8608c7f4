"""The variants figure: the tiny preset writes its files with finite numbers; the plot redraws; the
tuning run picks each model's learning rate on the validation split and the preset reads it."""

import json

import pytest

from figures import variants
from figure_helpers import finite, redraw, run_tiny


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    return run_tiny(tmp_path_factory, "variants")


def test_files_and_numbers(results_dir):
    for suffix in ("png", "pdf", "json"):
        assert (results_dir / f"variants.{suffix}").stat().st_size > 0
    results = json.loads((results_dir / "results.json").read_text())
    assert finite(results)
    assert [r["model"] for r in results["runs"]] == variants.PRESETS["tiny"]["models"]
    for run in results["runs"]:
        for scale in variants.LENGTHS:
            assert 0 <= run[f"accuracy_x{scale}"] <= 1
        low, high = variants.PRESETS["tiny"]["pairs"]
        assert {int(n) for n in run["accuracy_by_pairs"]} <= set(range(low, high + 1))
        by_pairs = run["accuracy_by_pairs"].values()
        assert min(by_pairs) - 1e-9 <= run["accuracy_x1"] <= max(by_pairs) + 1e-9  # the overall is their pooled mean
    # Same width and depth: the mosaic and the GPT are within a few percent in parameters.
    params = {r["model"]: r["parameters"] for r in results["runs"]}
    assert abs(params["mosaic v1"] / params["gpt"] - 1) < 0.1


def test_plot_redraws_and_gallery_rows(results_dir):
    redraw(results_dir, "variants")
    results = json.loads((results_dir / "results.json").read_text())
    rows = variants.summary(results)
    assert len(rows) == len(variants.PRESETS["tiny"]["models"])
    assert all(paper == "—" for _, _, paper in rows)


def test_the_gpt_can_be_evaluated_at_four_times_the_training_length():
    preset = variants.PRESETS["quick"]
    gpt = variants.model_config("gpt", preset)
    assert gpt.max_len == variants.task_config(preset, 4).build(0).seq_len > 2 * variants.task_config(preset).build(0).seq_len


def test_tuning_saves_each_models_choice_into_the_preset(tmp_path, monkeypatch):
    monkeypatch.setattr(variants, "TUNED", tmp_path / "lr.json")
    monkeypatch.setattr(variants, "LR_GRID", (1e-3, 1e-2))
    monkeypatch.setitem(variants.PRESETS, "tiny", dict(variants.PRESETS["tiny"], models=["mosaic v1", "gpt"]))
    chosen = variants.tune("tiny", tmp_path / "out", progress=False)
    assert set(chosen) == {"mosaic v1", "gpt"} and set(chosen.values()) <= {1e-3, 1e-2}
    scores = json.loads((tmp_path / "out" / "tuning" / "scores-tiny.json").read_text())
    for name, lr in chosen.items():
        assert scores[f"{name} @ {lr:g}"] == min(scores[f"{name} @ {g:g}"] for g in (1e-3, 1e-2))  # validation loss
    assert variants.tuned("tiny") == chosen
