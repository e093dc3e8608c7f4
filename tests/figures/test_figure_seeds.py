"""Seeds in the figure families: `sandbox figures --seeds`, the spread in the comparisons and the gallery rows."""

import json
import sys
import types

import pytest

import figures
from figures import induction_heads, regular_languages
from sandbox.cli import main


@pytest.fixture
def fake_family(monkeypatch):
    """A family module that records the preset its compute receives."""
    module = types.ModuleType("fake_family")
    module.PRESETS = {"tiny": {"steps": 1, "seeds": [0]}, "plain": {"steps": 1}}
    module.received = []
    module.compute = lambda preset, out, progress=None: module.received.append(preset)
    module.plot = lambda out: []
    monkeypatch.setitem(sys.modules, "fake_family", module)
    monkeypatch.setattr(figures, "FAMILIES", {"fake": "fake_family"})
    return module


def test_seeds_replace_the_presets_seeds(fake_family, tmp_path):
    assert main(["figures", "fake", "--preset", "tiny", "--seeds", "0-2,7", "--out", str(tmp_path)]) == 0
    assert fake_family.received == [{"steps": 1, "seeds": [0, 1, 2, 7]}]
    assert fake_family.PRESETS["tiny"]["seeds"] == [0]  # the preset itself is left alone
    assert main(["figures", "fake", "--preset", "tiny", "--out", str(tmp_path)]) == 0
    assert fake_family.received[-1]["seeds"] == [0]


def test_a_family_without_seeds_refuses_them(fake_family, tmp_path, capsys):
    assert main(["figures", "fake", "--preset", "plain", "--seeds", "1", "--out", str(tmp_path)]) == 2
    assert "the fake family does not take seeds" in capsys.readouterr().err
    assert main(["figures", "fake", "--preset", "tiny", "--seeds", "1,1", "--out", str(tmp_path)]) == 2
    assert "--seeds must be distinct" in capsys.readouterr().err


def test_the_compared_families_take_seeds():
    import importlib

    for name in ("three-moons", "induction-heads", "regular-languages", "variants", "language-modelling"):
        module = figures.FAMILIES[name]
        presets = importlib.import_module(module).PRESETS
        assert all(isinstance(p.get("seeds"), list) and p["seeds"] for p in presets.values()), name


def test_regular_languages_over_two_seeds(tmp_path):
    preset = {**regular_languages.PRESETS["tiny"], "automata": [20], "seeds": [0, 1]}
    results = regular_languages.compute(preset, tmp_path, progress=False)
    assert sorted((r["model"], r["seed"]) for r in results["runs"]) == [("gpt", 0), ("gpt", 1), ("mosaic", 0), ("mosaic", 1)]
    assert (tmp_path / "runs" / "mosaic-N20").is_dir() and (tmp_path / "runs" / "mosaic-N20-seed1").is_dir()
    mosaic = [r["accuracy"] for r in results["runs"] if r["model"] == "mosaic"]
    assert mosaic[0] != mosaic[1]  # two seeds, two runs
    regular_languages.plot(tmp_path)
    plotted = json.loads((tmp_path / "regular_languages.json").read_text())
    assert len(plotted["runs"]) == 4
    rows = {q: ours for q, ours, *_ in regular_languages.summary(results)}
    mean = sum(mosaic) / 2
    assert rows["mosaic, 20 training automata (accuracy / TVD)"].startswith(f"{mean:.3f} ± ")
    assert "(2 seeds)" in rows["mosaic, 20 training automata (accuracy / TVD)"]


def test_induction_comparison_mean_band_and_rows():
    curves = [{"steps": [10, 20], "in_context_accuracy": [0.2, 0.9], "global_loss": [3.0, 2.0]},
              {"steps": [10, 20], "in_context_accuracy": [0.4, 1.0], "global_loss": [2.0, 1.0]}]
    mean = induction_heads.mean_curve(curves, ("in_context_accuracy", "global_loss"))
    assert mean["in_context_accuracy"] == pytest.approx([0.3, 0.95]) and mean["global_loss"] == [2.5, 1.5]
    assert mean["per_seed"]["in_context_accuracy"] == [[0.2, 0.9], [0.4, 1.0]]


@pytest.mark.slow
def test_induction_over_two_seeds(tmp_path):
    preset = {**induction_heads.PRESETS["tiny"], "seeds": [0, 1]}
    results = induction_heads.compute(preset, tmp_path, progress=False)
    induction_heads.plot(tmp_path)
    for name, curve in results["mosaic_vs_gpt"].items():
        per_seed = curve["per_seed"]["in_context_accuracy"]
        assert len(per_seed) == 2 and per_seed[0] != per_seed[1], name
        assert curve["in_context_accuracy"] == pytest.approx([(a + b) / 2 for a, b in zip(*per_seed)])
    rows = [ours for q, ours, *_ in induction_heads.summary(results) if q == "one-layer mosaic in-context accuracy"]
    assert "± " in rows[0] and "(2 seeds)" in rows[0]
