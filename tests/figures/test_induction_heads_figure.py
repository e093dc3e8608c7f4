"""The induction-heads figure: the tiny preset writes every file with finite numbers; plots redraw."""

import json

import pytest

from figures import induction_heads
from figure_helpers import finite, load_run, redraw, run_tiny
from sandbox.analysis.probes import memory_probes


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    return run_tiny(tmp_path_factory, "induction-heads")


def test_files_and_numbers(results_dir):
    for stem in ("induction_heads_probes", "induction_heads_attention", "induction_heads_mosaic_vs_gpt"):
        for suffix in ("png", "pdf", "json"):
            assert (results_dir / f"{stem}.{suffix}").stat().st_size > 0
    results = json.loads((results_dir / "results.json").read_text())
    assert finite({k: v for k, v in results.items() if k != "probe_steps"})
    assert set(results["transformer"]) == {"free", "wo2_frozen", "random_triggers"} == set(results["probe_steps"])
    assert set(results["mosaic_vs_gpt"]) == set(induction_heads.COMPARED)
    for curve in results["transformer"].values():
        assert set(induction_heads.PROBES) <= set(curve) and len(curve["steps"]) == 2
    for label, curve in results["transformer"].items():  # the last point is the trained model's probes
        task, model = load_run(results_dir / "runs" / f"transformer-{label}")
        assert curve["steps"][-1] == induction_heads.PRESETS["tiny"]["steps"]
        triggers = None if curve["random_triggers"] else task.fixed_triggers
        final = memory_probes(model, triggers)
        assert [curve[p][-1] for p in induction_heads.PROBES] == pytest.approx([final[p] for p in induction_heads.PROBES])
    n = induction_heads.PRESETS["tiny"]["attention_len"]
    assert [len(m) for m in results["attention"].values()] == [n, n]


def test_frozen_wo2_stays_at_zero_until_released(results_dir):
    # While W_O² is frozen at zero the second layer writes nothing: the W_O² probe cannot beat chance,
    # and with the tiny preset's release at step 20 the first evaluation (step 20) sees it untrained.
    results = json.loads((results_dir / "results.json").read_text())
    frozen = results["transformer"]["wo2_frozen"]
    assert frozen["W_O2"][0] <= 2 / 65 + 1e-9
    assert results["transformer"]["free"]["W_O2"][0] > frozen["W_O2"][0]


def test_plots_redraw_from_saved_results(results_dir):
    redraw(results_dir, "induction_heads_attention")


@pytest.mark.slow
def test_quick_preset_one_layer_mosaic_learns_the_induction_head(tmp_path):
    """The quick preset (about 3 minutes): transformer and one-layer mosaic learn; one-layer GPT cannot;
    the induction key W_K² cannot learn while W_O² is frozen; early positions' W_K¹ is learned first."""
    results = induction_heads.compute(induction_heads.PRESETS["quick"], tmp_path, progress=False)
    free, frozen = results["transformer"]["free"], results["transformer"]["wo2_frozen"]
    assert free["in_context_accuracy"][-1] > 0.93
    assert results["probe_steps"]["free"]["W_O2"]["0.9"] is not None
    # With triggers drawn per sequence W_K² must store every token: W_O² is learned first, W_K¹ last.
    steps = {p: s["0.5"] for p, s in results["probe_steps"]["random_triggers"].items()}
    never = float("inf")
    assert steps["W_O2"] is not None and steps["W_O2"] < (steps["W_K2"] or never) < (steps["W_K1"] or never)
    assert free["W_K1_t<64"][-1] > free["W_K1"][-1] + 0.3
    while_frozen = [k for s, k in zip(frozen["steps"], frozen["W_K2"]) if s < frozen["freeze_wo2_until"]]
    assert max(while_frozen) == 0.0 and frozen["W_K2"][-1] == 1.0
    compared = results["mosaic_vs_gpt"]
    assert compared["mosaic_1_layer"]["in_context_accuracy"][-1] >= 0.95
    assert compared["gpt_1_layer"]["in_context_accuracy"][-1] < 0.5


def test_gallery_summary_reports_every_claim(results_dir):
    rows = induction_heads.summary(json.loads((results_dir / "results.json").read_text()))
    assert len(rows) == 9 and all(isinstance(c, str) and c for row in rows for c in row)
    assert any(row[0].startswith("one-layer mosaic") for row in rows) and all(len(row) == 4 for row in rows)
