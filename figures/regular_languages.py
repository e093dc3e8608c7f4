"""In-context regular languages (docs/regular-languages.md): accuracy and total variation distance on the test
automata against the number of training automata, for a memory mosaic and a GPT, with the in-context
2-gram and 3-gram predictors as reference lines and the published numbers beside ours. With several
seeds (`--seeds`), each point is the mean over seeds with ± one standard deviation as error bars.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import time
from pathlib import Path

from sandbox.analysis.seeds import mean_spread
from sandbox.config import RunConfig, TrainConfig
from sandbox.io import write_json
from sandbox.models import GPTConfig, MosaicConfig
from sandbox.train import evaluate, train
from tasks.regular_languages import RegularLanguagesConfig, ngram_baseline

from figures.tune import model_lr, with_tuned

PRESETS = with_tuned("regular-languages", {
    "tiny": dict(automata=[20, 60], eval_automata=16, steps=12, batch_size=4, lr=3e-3, weight_decay=0.1,
                 mosaic=dict(d=32, layers=1, units=4), gpt=dict(d=32, layers=2, heads=2), dropout=0.0, seeds=[0]),
    # 180 steps keep the main job within its budget on 2 cores: a step of 16 sequences takes about 0.37 s
    # for either model; 300 steps made the family 13 minutes of the main job's 25.
    "quick": dict(automata=[100, 500, 1000], eval_automata=500, steps=180, batch_size=16, lr=3e-3, weight_decay=0.1,
                  mosaic=dict(d=64, layers=2, units=4), gpt=dict(d=64, layers=4, heads=2), dropout=0.0, seeds=[0]),
    # Published: batch 32, 200 epochs, AdamW (0.9, 0.999), wd 0.1, cosine with 10% warm-up to 0.1·lr, clip 1.
    "paper": dict(automata=[100, 500, 1000, 2500, 40000], eval_automata=500, epochs=200, batch_size=32, lr=5e-4,
                  weight_decay=0.1, mosaic=dict(d=128, layers=2, units=8, persistent_slots=448),
                  gpt=dict(d=128, layers=8, heads=2), dropout=0.05, seeds=[0]),
})
# docs/regular-languages.md, published numbers: (accuracy, TVD) of the published mosaic and transformer.
PAPER = {"mosaic": {100: (.925, .57), 500: (.928, .25), 1000: (.934, .215), 2500: (.941, .185), 40000: (.958, .12)},
         "gpt": {100: (.52, .685), 500: (.54, .64), 1000: (.53, .63), 2500: (.925, .23), 40000: (.95, .143)}}
PAPER_NGRAM = {"2-gram": (.818, .337), "3-gram": (.930, .265)}


# Each model's AdamW learning rate comes from `python -m figures.tune regular-languages` (chosen on the
# validation loss at the preset's middle N over this grid, saved in figures/tuned/regular-languages.json).
TUNING = {"grid": [3e-4, 1e-3, 3e-3, 1e-2, 3e-2], "metric": "loss", "higher_is_better": False}


def model_config(name: str, preset: dict):
    if name == "mosaic":
        return MosaicConfig(dropout=preset["dropout"], **preset["mosaic"])
    return GPTConfig(dropout=preset["dropout"], **preset["gpt"])


def steps_for(preset: dict, automata: int) -> int:
    if "epochs" in preset:
        return max(1, preset["epochs"] * automata // preset["batch_size"])
    return preset["steps"]


def run_config(preset: dict, name: str, n: int, lr: float, out: Path, seed: int = 0) -> RunConfig:
    """The run of one model on N = n training automata at learning rate `lr`; `seed` draws the training and
    test automata and the initialisation."""
    steps = steps_for(preset, n)
    train_config = TrainConfig(steps=steps, batch_size=preset["batch_size"], lr=lr,
                               weight_decay=preset["weight_decay"], warmup_steps=steps // 10,
                               schedule="cosine", final_lr_fraction=0.1, grad_clip=1.0,
                               eval_every=0, eval_batches=2, log_every=max(1, steps // 20))
    return RunConfig(task=RegularLanguagesConfig(train_automata=n, eval_automata=preset["eval_automata"]),
                     model=model_config(name, preset), train=train_config,
                     seed=seed, out=str(Path(out) / "runs"), name=f"{name}-N{n}" + (f"-seed{seed}" if seed else ""))


def tuning_runs(preset: dict) -> dict:
    """For `python -m figures.tune`: each model's run at the preset's middle N, as a function of its lr."""
    n = preset["automata"][len(preset["automata"]) // 2]
    return {name: (lambda lr, name=name: run_config(preset, name, n, lr, Path("."))) for name in ("mosaic", "gpt")}


def test_scores(model, task, batch_size: int, device) -> dict:
    """Test metrics (accuracy, TVD, loss) over every test sequence of `task`, in batches of `batch_size`."""
    every_test_sequence = math.ceil(len(task.sets["test"].automata) / batch_size)
    return evaluate(model, task, TrainConfig(batch_size=batch_size, eval_batches=every_test_sequence), device, split="test")


def one_run(preset: dict, name: str, n: int, seed: int, out: Path, progress: bool | None = None) -> dict:
    """Train model `name` on N = n automata with `seed` and score it on the test automata."""
    lr = model_lr(preset, name, preset["lr"])
    start = time.perf_counter()
    result = train(run_config(preset, name, n, lr, Path(out), seed), progress=progress, overwrite=True)
    test = test_scores(result.model, result.task, preset["batch_size"], next(result.model.parameters()).device)
    print(f"  {name} N={n} seed {seed}: test accuracy {test['accuracy']:.3f}, TVD {test['tvd']:.3f}")
    return {"model": name, "automata": n, "seed": seed, "steps": steps_for(preset, n), "lr": lr,
            "accuracy": test["accuracy"], "tvd": test["tvd"], "wall_seconds": time.perf_counter() - start}


def compute(preset: dict, out: Path, progress: bool | None = None) -> dict:
    """Every (N, model, seed) run, then the n-gram baselines. The runs stay in one process: on 2 cores two
    one-thread processes were slower than one two-thread process (about 175 s against 130 s a run)."""
    out = Path(out)
    seeds = preset.get("seeds", [0])
    runs = [one_run(preset, name, n, seed, out, progress)
            for n, name, seed in itertools.product(preset["automata"], ("mosaic", "gpt"), seeds)]
    # Each seed has its own test automata: the baselines are averaged over the seeds' test sets.
    tasks = [RegularLanguagesConfig(train_automata=1, eval_automata=preset["eval_automata"]).build(s) for s in seeds]
    baselines = {}
    for k in (2, 3):
        scores = [ngram_baseline(t, "test", k) for t in tasks]
        baselines[f"{k}-gram"] = {m: statistics.fmean(score[m] for score in scores) for m in scores[0]}
    results = {"preset": preset, "runs": runs, "baselines": baselines,
               "paper": {m: {str(n): v for n, v in rows.items()} for m, rows in PAPER.items()},
               "paper_baselines": PAPER_NGRAM}
    write_json(out / "results.json", results)
    return results


def per_seed(runs: list[dict], name: str, metric: str) -> tuple[list[int], list[list[float]]]:
    """The training-automata counts N of model `name` and its `metric` as seeds × N (saved runs before
    seeds existed count as seed 0)."""
    automata = sorted({r["automata"] for r in runs if r["model"] == name})
    seeds = sorted({r.get("seed", 0) for r in runs if r["model"] == name})
    value = {(r["automata"], r.get("seed", 0)): r[metric] for r in runs if r["model"] == name}
    return automata, [[value[n, s] for n in automata] for s in seeds]


def plot(out: Path) -> list[Path]:
    from sandbox.plotting import mean_band, plt, save_figure

    out = Path(out)
    results = json.loads((out / "results.json").read_text())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"mosaic": "C0", "gpt": "C1"}
    for col, metric in enumerate(("accuracy", "tvd")):
        ax = axes[col]
        for name, colour in colours.items():
            automata, values = per_seed(results["runs"], name, metric)
            mean_band(ax, automata, values, label=f"{name} (ours)", color=colour, bars=True, marker="o")
            paper = sorted((int(n), v[col]) for n, v in results["paper"][name].items())
            ax.plot(*zip(*paper), marker="x", ls=":", color=colour, alpha=0.5, label=f"{name} (paper)")
        for (label, scores), style in zip(results["baselines"].items(), ("--", "-.")):
            ax.axhline(scores[metric], color="0.4", ls=style, lw=1, label=f"in-context {label}")
        ax.set(xscale="log", xlabel="training automata N", ylabel="test accuracy" if col == 0 else "test TVD = ½ Σ|p − q|",
               title="accuracy (higher is better)" if col == 0 else "total variation distance (lower is better)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return [save_figure(fig, out / "regular_languages", {"runs": results["runs"], "baselines": results["baselines"],
                                                          "paper": results["paper"]})["png"]]


def summary(results: dict) -> list[tuple[str, str, str, str]]:
    """Gallery rows (quantity, ours, published, our target) from the saved results: accuracy / TVD."""
    rows = []
    for model, n in sorted({(r["model"], r["automata"]) for r in results["runs"]}, key=lambda k: (k[0], k[1])):
        paper = results["paper"][model].get(str(n))
        group = [r for r in results["runs"] if (r["model"], r["automata"]) == (model, n)]
        run = {"model": model, "automata": n}
        rows.append((f"{run['model']}, {run['automata']} training automata (accuracy / TVD)",
                     mean_spread([r["accuracy"] for r in group], count=False) + " / "
                     + mean_spread([r["tvd"] for r in group]),
                     "—" if paper is None else f"{paper[0]:.3f} / {paper[1]:.3f}",
                     "mosaic above GPT at small N" if run["model"] == "mosaic" else "—"))
    for name, scores in results["baselines"].items():
        paper = results["paper_baselines"][name]
        rows.append((f"in-context {name} baseline (accuracy / TVD = ½ L1)", f"{scores['accuracy']:.3f} / {scores['tvd']:.3f}",
                     f"{paper[0]:.3f} / {paper[1]:.3f}", "published ± .01 / ± .015"))
    return rows
