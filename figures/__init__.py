"""One module per published figure family (docs/); run them with `sandbox figures NAME`.

Each module declares `PRESETS` (named settings: `tiny` for the tests, `quick` for a 2-core CPU,
`paper` for the published settings) and two functions:

- `compute(preset: dict, out: Path, progress: bool | None) -> dict`: trains and evaluates through the shared
  engine, writes its results as JSON under `out/` and returns them;
- `plot(out: Path) -> list[Path]`: draws every panel from the saved results alone, so a figure can be
  restyled without retraining;
- `summary(results) -> rows (quantity, ours, published, our target)` for the gallery (`gallery.py`).

A family that compares models also declares `TUNING` (a learning-rate grid of at least 3 values and the
validation metric) and `tuning_runs(preset)`; `python -m figures.tune NAME --preset P` is its separate
tuning run, whose choice is saved in `figures/tuned/NAME.json` and read by the presets (`tune.py`).

Seeds (`sandbox figures NAME --seeds 0,1,2`): a family takes them by giving each of its presets a
`"seeds"` list; the command replaces that list with the seeds asked for. `compute` then trains the
compared models once per seed and saves each seed's numbers; `plot` draws the mean with the spread over
seeds (error bars or a band: `sandbox.plotting.mean_band`), and `summary` reports mean ± standard
deviation where there is more than one seed (`sandbox.analysis.seeds.mean_spread`).
"""

FAMILIES = {
    "three-moons": "figures.three_moons",
    "induction-heads": "figures.induction_heads",
    "regular-languages": "figures.regular_languages",
    "variants": "figures.variants",
    "language-modelling": "figures.language_modelling",
}
