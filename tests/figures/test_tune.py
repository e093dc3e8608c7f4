"""Learning-rate tuning: a separate run that writes the grid, the validation numbers and the choice."""

import json
import math
import warnings
from dataclasses import replace

import pytest

from figures import three_moons, tune


def test_tuning_keeps_each_models_best_validation_lr_and_presets_read_it(tmp_path, monkeypatch):
    monkeypatch.setitem(three_moons.PRESETS, "tiny", {**three_moons.PRESETS["tiny"], "steps": 8})
    choice = tune.tune("three-moons", "tiny", tmp_path / "runs", progress=False, root=tmp_path)
    assert choice["grid"] == three_moons.TUNING["grid"] and len(choice["grid"]) >= 3
    assert set(choice["models"]) == {"1_unit", "3_units"}
    for entry in choice["models"].values():
        losses = entry["validation"]
        assert set(losses) == {f"{lr:g}" for lr in choice["grid"]}
        assert losses[f"{entry['lr']:g}"] == min(losses.values())  # the loss: lower is better
    saved = json.loads(tune.tuned_file("three-moons", tmp_path).read_text())
    assert saved["tiny"] == choice
    assert choice["settings"] == tune.settings(three_moons, three_moons.PRESETS["tiny"])
    monkeypatch.setattr(tune, "TUNED", tmp_path)
    presets = tune.with_tuned("three-moons", {"tiny": three_moons.PRESETS["tiny"], "quick": {"steps": 1}})
    assert presets["tiny"]["lr_by_model"] == {m: e["lr"] for m, e in choice["models"].items()}
    assert presets["tiny"]["lr_grid"] == choice["grid"]
    assert presets["tiny"]["steps"] == 8
    assert presets["quick"] == {"steps": 1}  # presets without a tuning keep their defaults
    assert tune.model_lr(presets["tiny"], "3_units", 1.0) == choice["models"]["3_units"]["lr"]
    assert tune.model_lr(presets["quick"], "3_units", 1.0) == 1.0


def test_a_preset_whose_runs_changed_since_its_tuning_warns_with_the_changed_settings(tmp_path):
    tiny = three_moons.PRESETS["tiny"]
    settings = tune.settings(three_moons, tiny)
    assert set(settings) == {"1_unit", "3_units"} and "lr" not in settings["1_unit"]["train"]
    assert settings["1_unit"]["train"]["steps"] == tiny["steps"] and "out" not in settings["1_unit"]
    saved = {"tiny": {"grid": [1e-3, 1e-2, 1e-1], "models": {"1_unit": {"lr": 1e-2}}, "settings": settings}}
    (tmp_path / "three-moons.json").write_text(json.dumps(saved))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tune.warn_if_changed("three-moons", "tiny", three_moons, {**tiny, "lr": 5.0}, tmp_path) == []
    longer = {**tiny, "steps": tiny["steps"] + 1}
    with pytest.warns(UserWarning, match=r"'tiny' preset's runs changed .*1_unit\.train\.steps.*"
                                         r"figures.tune three-moons --preset tiny"):
        changed = tune.warn_if_changed("three-moons", "tiny", three_moons, longer, tmp_path)
    assert changed == ["1_unit.train.steps", "3_units.train.steps"]
    assert tune.changed_settings("three-moons", "quick", three_moons, longer, tmp_path) == []  # not tuned
    del saved["tiny"]["settings"]
    (tmp_path / "three-moons.json").write_text(json.dumps(saved))
    assert tune.changed_settings("three-moons", "tiny", three_moons, tiny, tmp_path) == [
        "settings not recorded: tuned before they were"]


def test_every_committed_tuning_trained_what_the_presets_train_today():
    """figures/tuned/*.json: a preset whose compared runs changed after its tuning must be tuned again."""
    import importlib

    from figures import FAMILIES

    tuned = sorted(tune.TUNED.glob("*.json"))
    assert len(tuned) >= 4
    for path in tuned:
        module = importlib.import_module(FAMILIES[path.stem])
        for name in json.loads(path.read_text()):
            assert tune.changed_settings(path.stem, name, module, module.PRESETS[name]) == [], (path.name, name)


def test_every_comparing_family_has_a_grid_of_at_least_three_learning_rates():
    from figures import induction_heads, regular_languages

    for module in (three_moons, induction_heads, regular_languages):
        assert len(module.TUNING["grid"]) >= 3
        assert set(module.tuning_runs(module.PRESETS["tiny"]))  # at least one compared model


def test_bad_requests_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="family"):
        tune.tune("no-such-family", "tiny", tmp_path, root=tmp_path)
    with pytest.raises(ValueError, match="--preset"):
        tune.tune("three-moons", "huge", tmp_path, root=tmp_path)


def test_the_curve_score_is_the_mean_of_every_validation_evaluation_and_the_pool_gives_the_same(tmp_path, monkeypatch):
    """`over="curve"` ranks by the area under the learning curve: the mean of the metric over the run's
    validation lines (read back from its metrics.jsonl); a process pool trains the same runs to the same
    numbers as one process."""
    from figures.induction_heads import PRESETS, tuning_runs

    preset = {**PRESETS["tiny"], "compare_steps": 6, "eval_every": 2}
    config = tuning_runs(preset)["gpt_1_layer"](1e-2)
    config = replace(config, out=str(tmp_path), name="curve")
    score = tune.validation_score(config.to_dict(), "in_context_accuracy", "curve")
    lines = [json.loads(line) for line in (tmp_path / "curve" / "metrics.jsonl").read_text().splitlines()]
    values = [line["in_context_accuracy"] for line in lines if line["split"] == "val"]
    assert len(values) == 3 and score == pytest.approx(sum(values) / 3, abs=1e-12)
    final = tune.validation_score(config.to_dict(), "in_context_accuracy", "final")
    assert final == pytest.approx(values[-1], abs=1e-12)

    runs = {(name, 1e-2): replace(config, name=name) for name in ("a", "b")}
    pooled = tune._validate_all(runs, "in_context_accuracy", "curve", jobs=2, progress=False)
    assert pooled == {key: pytest.approx(score, abs=1e-6) for key in runs}
    with pytest.raises(ValueError, match="over"):
        tune._validate_all(runs, "in_context_accuracy", "area", jobs=1, progress=False)
    with pytest.raises(ValueError, match="jobs"):
        tune.tune("three-moons", "tiny", tmp_path, root=tmp_path, jobs=0)


def test_a_diverged_run_scores_nan_and_never_wins(tmp_path):
    from figures.induction_heads import PRESETS, tuning_runs

    config = replace(tuning_runs({**PRESETS["tiny"], "compare_steps": 4})["gpt_1_layer"](1e30), out=str(tmp_path), name="boom")
    assert math.isnan(tune.validation_score(config.to_dict(), "in_context_accuracy", "final"))
    assert tune._best({"0.001": 0.2, "0.01": float("nan"), "0.1": 0.1}, higher=True) == 0.001
    assert tune._best({"0.001": 0.2, "0.01": float("nan"), "0.1": 0.1}, higher=False) == 0.1
    with pytest.raises(ValueError, match="every learning rate of the grid diverged"):
        tune._best({"0.001": float("nan")}, higher=True)


def test_a_grid_with_a_diverging_rate_saves_it_as_null_and_chooses_among_the_others(tmp_path, monkeypatch):
    monkeypatch.setitem(three_moons.PRESETS, "tiny", {**three_moons.PRESETS["tiny"], "steps": 4})
    monkeypatch.setitem(three_moons.TUNING, "grid", [1e-3, 1e-2, 1e30])
    choice = tune.tune("three-moons", "tiny", tmp_path / "runs", progress=False, root=tmp_path)
    saved = json.loads(tune.tuned_file("three-moons", tmp_path).read_text())["tiny"]
    for model, entry in saved["models"].items():
        assert entry["validation"]["1e+30"] is None and entry["lr"] in (1e-3, 1e-2)
        finite = {lr: v for lr, v in entry["validation"].items() if v is not None}
        assert entry["validation"][f"{entry['lr']:g}"] == min(finite.values())
    assert saved == choice


def test_sandbox_figures_warns_before_computing_a_preset_whose_tuning_is_stale(tmp_path, monkeypatch):
    from sandbox.cli import main

    tiny = three_moons.PRESETS["tiny"]
    stale = tune.settings(three_moons, {**tiny, "batch_size": tiny["batch_size"] + 1})
    (tmp_path / "three-moons.json").write_text(json.dumps({"tiny": {"grid": [1, 2, 3], "models": {}, "settings": stale}}))
    monkeypatch.setattr(tune, "TUNED", tmp_path)
    monkeypatch.setattr(three_moons, "compute", lambda *a, **k: (_ for _ in ()).throw(SystemExit("stopped")))
    with pytest.warns(UserWarning, match=r"1_unit\.train\.batch_size, 3_units\.train\.batch_size"), \
            pytest.raises(SystemExit, match="stopped"):
        main(["figures", "three-moons", "--preset", "tiny", "--out", str(tmp_path / "out"), "--no-progress"])
