"""Learning-rate tuning for the models a figure compares: a separate run, never part of the main job.

    python -m figures.tune induction-heads --preset quick      # trains every compared model at each lr
    python -m figures.tune regular-languages --preset quick
    python -m figures.tune three-moons --preset quick --jobs 8   # the grid on 8 processes at once

Each family that compares models declares `TUNING`: the learning-rate grid (at least 3 values), the
validation metric and whether higher is better (optionally `"over": "curve"`: the metric averaged over the
run's validation evaluations, the area under its learning curve, which ranks a model that learns sooner
higher where several rates reach the same final value), and `tuning_runs(preset)`, which gives, for each compared
model, a function from a learning rate to the run to train (the preset's own settings, validation data
only). This script trains every (model, lr), keeps the best lr of each model on the validation metric and
writes the grid, every validation number and the choice to `figures/tuned/FAMILY.json`, a committed
file. The family's presets read their learning rates from that file when they are loaded, so the main
job uses the tuned choice without tuning, and every result file records the grid and the choice with
the preset. The file also keeps what the tuning trained (each model's run without its lr): a preset whose
runs changed since (more steps, another model size) warns, when its figure is computed, that its learning
rates need a new tuning.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import warnings
from dataclasses import replace
from pathlib import Path

from sandbox.config import RunConfig, dotted
from sandbox.io import write_json
from sandbox.pool import map_processes

TUNED = Path(__file__).resolve().parent / "tuned"


def tuned_file(family: str, root: Path | None = None) -> Path:
    return Path(TUNED if root is None else root) / f"{family}.json"


def settings(module, preset: dict) -> dict:
    """What a tuning of `preset` trains, beside the learning rate: each compared model's run as the
    family's `tuning_runs` makes it, without its lr, output directory and name, as JSON reads it back."""
    runs = {}
    for model, run_for in module.tuning_runs(preset).items():
        config = run_for(1.0).to_dict()
        del config["train"]["lr"], config["out"], config["name"]
        runs[model] = config
    return json.loads(json.dumps(runs))


def changed_settings(family: str, name: str, module, preset: dict, root: Path | None = None) -> list[str]:
    """The settings (dotted: `gpt.train.steps`) of the runs that tuning preset `name` trains that differ from
    those it was tuned with; none where the preset was not tuned."""
    path = tuned_file(family, root)
    choice = json.loads(path.read_text()).get(name) if path.exists() else None
    if choice is None:
        return []
    if "settings" not in choice:
        return ["settings not recorded: tuned before they were"]
    tuned, now = dotted(choice["settings"]), dotted(settings(module, preset))
    return sorted(key for key in set(tuned) | set(now) if tuned.get(key) != now.get(key))


def warn_if_changed(family: str, name: str, module, preset: dict, root: Path | None = None) -> list[str]:
    """Warn, naming what changed, where preset `name` no longer trains what its learning rates were tuned
    on (`sandbox figures` calls this before it computes); the changed settings."""
    changed = changed_settings(family, name, module, preset, root)
    if changed:
        warnings.warn(f"{tuned_file(family, root).name}: the {name!r} preset's runs changed since their learning "
                      f"rates were tuned ({', '.join(changed)}); run `python -m figures.tune {family} --preset {name}` "
                      "again", UserWarning, stacklevel=2)
    return changed


def with_tuned(family: str, presets: dict) -> dict:
    """`presets` with, for each preset tuned in `figures/tuned/FAMILY.json`, its `lr_by_model` (the chosen
    lr of each model) and `lr_grid` (the grid the choice was made on) filled in."""
    path = tuned_file(family)
    if not path.exists():
        return presets
    tuned = json.loads(path.read_text())
    out = {}
    for name, preset in presets.items():
        choice = tuned.get(name)
        if choice is None:
            out[name] = preset
            continue
        out[name] = {**preset, "lr_grid": choice["grid"],
                     "lr_by_model": {model: entry["lr"] for model, entry in choice["models"].items()}}
    return out


def model_lr(preset: dict, model: str, default: float) -> float:
    """The tuned learning rate of `model` in `preset`, or `default` where the preset was not tuned."""
    return preset.get("lr_by_model", {}).get(model, default)


def validation_score(config: dict, metric: str, over: str, progress: bool | None = False) -> float:
    """Train one run (a `RunConfig` as a dict, so that it can go to a worker process) and give its
    validation `metric`: the last evaluation's (`over="final"`) or the mean over all its evaluations
    (`over="curve"`). A run that diverges scores NaN, which never wins (`_best`)."""
    from sandbox.train import DivergedError, train

    try:
        result = train(RunConfig.from_dict(config), progress=progress, overwrite=True)
    except DivergedError as err:
        print(f"  {config['name']}: diverged ({err}); it scores NaN")
        return float("nan")
    if over == "final":
        return float(result.final_metrics[metric])
    values = [line[metric] for line in result.history if line.get("split") == "val" and metric in line]
    return float(sum(values) / len(values))


def _best(validation: dict, higher: bool) -> float:
    """The learning rate with the best finite validation number ({"lr": value}); NaN or None (diverged) never wins."""
    finite = {lr: value for lr, value in validation.items() if value is not None and math.isfinite(value)}
    if not finite:
        raise ValueError(f"every learning rate of the grid diverged: {sorted(validation)}; choose a lower grid")
    return float((max if higher else min)(finite, key=finite.get))


def _validate_all(runs: dict, metric: str, over: str, jobs: int, progress) -> dict:
    """{key: validation score} of every run in `runs` ({key: RunConfig}), on `jobs` processes."""
    if over not in ("final", "curve"):
        raise ValueError(f"TUNING['over'] must be 'final' or 'curve', got {over!r}")
    calls = [(config.to_dict(), metric, over, progress if jobs == 1 else False) for config in runs.values()]
    return dict(zip(runs, map_processes(validation_score, calls, jobs)))


def tune(family: str, preset_name: str, out: Path, progress: bool | None = None,
         root: Path | None = None, jobs: int = 1) -> dict:
    """Train each compared model of `family` at every lr of its grid; save the choice under `root`."""
    from figures import FAMILIES

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    module = importlib.import_module(FAMILIES[family])
    if not hasattr(module, "TUNING"):
        raise ValueError(f"family {family!r} compares no models: nothing to tune")
    if preset_name not in module.PRESETS:
        raise ValueError(f"--preset must be one of {sorted(module.PRESETS)}, got {preset_name!r}")
    grid, metric, higher = module.TUNING["grid"], module.TUNING["metric"], module.TUNING["higher_is_better"]
    if len(grid) < 3:
        raise ValueError(f"a tuning grid needs at least 3 learning rates, got {grid}")
    runs = {(model, lr): replace(run_for(lr), out=str(Path(out) / family), name=f"{model}-lr{lr:g}")
            for model, run_for in module.tuning_runs(module.PRESETS[preset_name]).items() for lr in grid}
    over = module.TUNING.get("over", "final")
    scores = _validate_all(runs, metric, over, jobs, progress)
    models = {}
    for model in dict.fromkeys(model for model, _ in runs):
        validation = {f"{lr:g}": scores[model, lr] for lr in grid}
        best = _best(validation, higher)
        # a diverged run is saved as null: JSON has no NaN
        models[model] = {"lr": best, "validation": {lr: (value if math.isfinite(value) else None)
                                                    for lr, value in validation.items()}}
        print(f"  {family} {model}: validation {metric} ({over}) "
              + ", ".join(f"lr {lr}: {value:.4f}" for lr, value in validation.items()) + f"; chose lr {best:g}")
    path = tuned_file(family, root)
    saved = json.loads(path.read_text()) if path.exists() else {}
    saved[preset_name] = {"grid": list(grid), "metric": metric, "over": over, "higher_is_better": higher,
                          "models": models, "settings": settings(module, module.PRESETS[preset_name])}
    write_json(path, saved)
    return saved[preset_name]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", help="a figure family that compares models")
    parser.add_argument("--preset", default="quick", help="which preset's settings to tune (default: quick)")
    parser.add_argument("--out", default="runs/tuning", help="where the tuning runs go (default: runs/tuning)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train this many (model, lr) runs at once in separate processes (default: 1)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    tune(args.family, args.preset, Path(args.out), progress=False if args.no_progress else None, jobs=args.jobs)
    print(f"wrote {tuned_file(args.family)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
