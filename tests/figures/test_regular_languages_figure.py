"""The regular-languages figure: the tiny preset writes its files with finite numbers; plots redraw."""

import json
import math

import pytest
import torch

from figures import regular_languages
from figure_helpers import finite, load_run, redraw, run_tiny
from sandbox.config import TrainConfig
from sandbox.train import evaluate


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    return run_tiny(tmp_path_factory, "regular-languages")


def test_files_numbers_and_baselines(results_dir):
    for suffix in ("png", "pdf", "json"):
        assert (results_dir / f"regular_languages.{suffix}").stat().st_size > 0
    results = json.loads((results_dir / "results.json").read_text())
    assert finite(results)
    runs = {(r["model"], r["automata"]) for r in results["runs"]}
    assert runs == {(m, n) for m in ("mosaic", "gpt") for n in regular_languages.PRESETS["tiny"]["automata"]}
    preset = regular_languages.PRESETS["tiny"]
    for run in results["runs"]:  # the plotted scores are the trained model's scores on every test sequence
        task, model = load_run(results_dir / "runs" / f"{run['model']}-N{run['automata']}")
        batches = math.ceil(preset["eval_automata"] / preset["batch_size"])
        test = evaluate(model, task, TrainConfig(batch_size=preset["batch_size"], eval_batches=batches),
                        torch.device("cpu"), split="test")
        assert (run["accuracy"], run["tvd"]) == pytest.approx((test["accuracy"], test["tvd"]), rel=1e-6)
    two, three = results["baselines"]["2-gram"], results["baselines"]["3-gram"]
    assert three["accuracy"] > two["accuracy"] and three["tvd"] < two["tvd"]


def test_plot_redraws_from_saved_results(results_dir):
    redraw(results_dir, "regular_languages")


def test_paper_preset_uses_the_published_schedule():
    paper = regular_languages.PRESETS["paper"]
    assert regular_languages.steps_for(paper, 1000) == 200 * 1000 // 32
    assert paper["mosaic"] == dict(d=128, layers=2, units=8, persistent_slots=448)


def test_gallery_summary_has_a_row_per_run_and_baseline(results_dir):
    results = json.loads((results_dir / "results.json").read_text())
    rows = regular_languages.summary(results)
    assert len(rows) == len(results["runs"]) + 2
    assert all(" / " in ours for _, ours, _ in rows)


@pytest.mark.slow
def test_quick_preset_mosaic_beats_gpt_on_100_automata(tmp_path):
    """The quick preset's smallest N (about 7 minutes): the mosaic learns the languages in context from
    100 automata, beating the 2-gram baseline's accuracy, where the GPT does not (docs/regular-languages.md)."""
    preset = {**regular_languages.PRESETS["quick"], "automata": [100]}
    results = regular_languages.compute(preset, tmp_path, progress=False)
    scores = {r["model"]: r for r in results["runs"]}
    assert scores["mosaic"]["accuracy"] > max(scores["gpt"]["accuracy"] + 0.2, results["baselines"]["2-gram"]["accuracy"])
    assert scores["mosaic"]["tvd"] < scores["gpt"]["tvd"] - 0.1
