"""The variants figure on its tiny preset: every (task, model) is trained and scored; the saved numbers
are those the saved models give again; parameter counts match (v2 against v1 within 3%); the tuned
learning rate of each (task, model) is the one its run trains with; the table and the plot come from
the saved results alone."""

import json
from pathlib import Path

import pytest
import torch

from figures import tune, variants
from figure_helpers import finite, load_run, redraw, run_tiny
from sandbox.models import num_parameters

TINY = variants.PRESETS["tiny"]


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    return run_tiny(tmp_path_factory, "variants")


@pytest.fixture(scope="module")
def results(results_dir):
    return json.loads((results_dir / "results.json").read_text())


def test_every_task_and_model_is_run_and_the_files_are_written(results_dir, results):
    for suffix in ("png", "pdf", "json"):
        assert (results_dir / f"variants.{suffix}").stat().st_size > 0
    assert finite(results)
    assert [(r["task"], r["model"]) for r in results["runs"]] == [(t, m) for t in variants.TASKS for m in TINY["models"]]
    for run in results["runs"]:
        if run["task"] == "regular_languages":
            assert set(run) >= {"accuracy", "tvd"}
        else:
            assert {f"accuracy_x{s}" for s in variants.LENGTHS} <= set(run)


def test_saved_numbers_are_what_the_saved_models_give(results_dir, results):
    """Each model is rebuilt from its run directory (config + newest checkpoint) and scored again."""
    for run in results["runs"]:
        task, model = load_run(results_dir / "runs" / run["run"])
        again = variants.test_scores(run["task"], model, TINY, run["seed"], torch.device("cpu"))
        for key, value in again.items():
            if key == "accuracy_by_pairs":
                assert value == pytest.approx(run[key], abs=1e-12)
            else:
                assert value == pytest.approx(run[key], abs=1e-9), (run["task"], run["model"], key)
        assert run["parameters"] == num_parameters(model, embeddings=False)


def test_recall_accuracy_pools_every_answer(results_dir, results):
    """The overall recall accuracy at T is the answers' hit rate, and per number of pairs the rate over
    those sequences' answers: recomputed here from the model's predictions, query by query."""
    run = next(r for r in results["runs"] if (r["task"], r["model"]) == ("recall", "mosaic_v1"))
    _, model = load_run(results_dir / "runs" / run["run"])
    hits, by_pairs = [], {}
    for scale in variants.LENGTHS:
        task = variants.task_config("recall", TINY, scale).build(run["seed"])
        scale_hits = []
        for index in range(TINY["eval_batches"]):
            batch = task.batch("test", index, TINY["batch_size"], "cpu")
            with torch.no_grad():
                predicted = model(batch.inputs).argmax(-1)
            for row in range(batch.inputs.shape[0]):
                answers = (batch.targets[row] != -100).nonzero().flatten().tolist()
                row_hits = [int(predicted[row, t] == batch.targets[row, t]) for t in answers]
                scale_hits += row_hits
                by_pairs.setdefault(int(batch.extras["pairs"][row]), []).extend(row_hits)
        assert run[f"accuracy_x{scale}"] == pytest.approx(sum(scale_hits) / len(scale_hits), abs=1e-12)
        hits += scale_hits
    assert run["accuracy_by_pairs"] == pytest.approx({str(n): sum(h) / len(h) for n, h in sorted(by_pairs.items())})


def test_parameter_counts_v2_matches_v1_and_the_gpt_is_the_same_size(results):
    for preset in variants.PRESETS.values():  # every preset, without training
        counts = {name: num_parameters(variants.model_config(name, preset, "recall").build(vocab_size=50), embeddings=False)
                  for name in ("mosaic_v1", "mosaic_v2", "gpt")}
        assert abs(counts["mosaic_v2"] / counts["mosaic_v1"] - 1) < 0.03, counts
        assert abs(counts["gpt"] / counts["mosaic_v1"] - 1) < 0.1, counts
    params = {(r["task"], r["model"]): r["parameters"] for r in results["runs"]}
    for task in variants.TASKS:
        assert abs(params[task, "mosaic_v2"] / params[task, "mosaic_v1"] - 1) < 0.03


def test_v2_window_and_lag_scale_with_the_training_length():
    for task in variants.TASKS:
        config = variants.model_config("mosaic_v2", variants.PRESETS["quick"], task)
        length = variants.training_length(task, variants.PRESETS["quick"])
        window = length // 4
        assert config.version == 2 and config.window == window and config.lag_range == (window // 4, window)


def test_the_gpt_can_be_evaluated_at_four_times_the_training_length():
    for task in ("bigram", "recall"):
        gpt = variants.model_config("gpt", variants.PRESETS["quick"], task)
        longest = variants.task_config(task, variants.PRESETS["quick"], 4).build(0).seq_len
        assert gpt.max_len == longest > 2 * variants.training_length(task, variants.PRESETS["quick"])


def test_each_task_and_model_trains_at_its_tuned_learning_rate(tmp_path, monkeypatch):
    chosen = {"recall.gpt": 0.0123, "bigram.gpt": 0.0456}
    saved = {"tiny": {"grid": variants.TUNING["grid"], "metric": "loss", "higher_is_better": False,
                      "models": {key: {"lr": lr, "validation": {}} for key, lr in chosen.items()}}}
    (tmp_path / "variants.json").write_text(json.dumps(saved))
    monkeypatch.setattr(tune, "TUNED", tmp_path)
    preset = {**tune.with_tuned("variants", {"tiny": TINY})["tiny"], "steps": 2}
    row = variants.one_run(preset, "recall", "gpt", 0, tmp_path / "out")
    assert row["lr"] == 0.0123
    config = json.loads((tmp_path / "out" / "runs" / row["run"] / "config.json").read_text())
    assert config["train"]["lr"] == 0.0123
    untuned = variants.one_run(preset, "recall", "mosaic_v1", 0, tmp_path / "out")
    assert untuned["lr"] == variants.DEFAULT_LR


def test_tuning_covers_every_task_and_model_with_the_figures_own_runs():
    runs = variants.tuning_runs(TINY)
    assert set(runs) == {f"{t}.{m}" for t in variants.TASKS for m in TINY["models"]}
    assert len(variants.TUNING["grid"]) >= 3
    for task in variants.TASKS:
        config = runs[f"{task}.mosaic_v2"](0.02)
        same = variants.run_config(TINY, task, "mosaic_v2", 0.02, Path("."))
        assert config.train.lr == 0.02 and config.to_dict() == same.to_dict()


def test_plot_redraws_and_the_table_holds_every_number(results_dir, results):
    redraw(results_dir, "variants")
    rows = variants.summary(results)
    assert len(rows) == len(variants.TASKS) * len(TINY["models"])
    for (quantity, ours, published, _), run in zip(rows, results["runs"]):
        assert variants.LABELS[run["model"]] in quantity and f"lr {run['lr']:g}" in quantity
        assert f"{run['parameters']:,} parameters" in quantity and published == "—"
        keys = ("accuracy", "tvd") if run["task"] == "regular_languages" else [f"accuracy_x{s}" for s in variants.LENGTHS]
        assert ours.split(" / ") == [f"{run[k]:.3f}" for k in keys]
    plotted = json.loads((results_dir / "variants.json").read_text())
    recall = {r["model"]: [r[f"accuracy_x{s}"] for s in variants.LENGTHS] for r in results["runs"] if r["task"] == "recall"}
    assert plotted["recall_by_length"].keys() == recall.keys()
    for name, accuracies in recall.items():
        assert plotted["recall_by_length"][name] == pytest.approx(accuracies, abs=1e-12)


def test_bad_names_are_clear_errors():
    with pytest.raises(ValueError, match="model must be one of"):
        variants.model_config("transformer", TINY, "recall")
    with pytest.raises(ValueError, match="task must be one of"):
        variants.task_config("parity", TINY)
