"""Language modelling on Shakespeare's plays: memory mosaic against GPT at equal parameter
count, character level. Panels: (a) training and validation loss against depth, (b) validation loss
per token position (lower early = faster in-context learning), (c) loss on the out-of-distribution
text (the sonnets and poems) against the validation loss.

The published experiment (Memory Mosaics, ICLR 2025: BabiStories, 12 layers, d=768, T=512) is scaled
to a CPU: d=128, depth 1/2/4, T=256. The paper preset is the official nanoMosaics character-level
Shakespeare setting.
Learning rates come from a separate tuning run, one per model and depth (`python -m figures.tune
language-modelling --preset quick`), whose grid and choice are saved in `figures/tuned/`; the main job
never tunes. `python -m figures.language_modelling --sanity` trains the nanoGPT CPU recipe (4 layers,
d=128, T=64, batch 12, 2000 steps) for the known reference point.
With several seeds (`--seeds`), every model is trained once per seed; the panels show the mean with ± one
standard deviation (error bars against depth, bands per position) and the gallery rows mean ± sd.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import torch

from figures.tune import model_lr, with_tuned
from sandbox.analysis.positions import band_means, position_losses
from sandbox.analysis.seeds import by_seed, mean_spread
from sandbox.config import RunConfig, TrainConfig
from sandbox.io import write_json
from sandbox.models import GPTConfig, MosaicConfig, num_parameters
from sandbox.train import train
from tasks.text import TextConfig

PRESETS = with_tuned("language-modelling", {
    "tiny": dict(d=32, units=2, depths=[1, 2], seq_len=32, batch_size=4, steps=16, warmup=2,
                 lr={"mosaic": 3e-3, "gpt": 3e-3}, dropout=0.0, eval_batches=2, eval_batch_size=8,
                 bands=[4, 16, 32], sample_tokens=60, seeds=[0]),
    # A 2-core CPU in about 5 minutes. Learning rates: tuned for each model and depth (figures/tuned/),
    # `lr` is the fallback of an untuned preset.
    "quick": dict(d=128, units=4, depths=[1, 2, 4], seq_len=256, batch_size=8, steps=250, warmup=25,
                  lr={"mosaic": 1e-2, "gpt": 1e-2}, dropout=0.0, eval_batches=12, eval_batch_size=16,
                  bands=[8, 32, 128, 256], sample_tokens=500, seeds=[0]),
    # nanoMosaics' config/train_shakespeare_char.py: 6 heads/units, d=384, dropout 0.2, batch 64, T=256,
    # lr 1e-3 cosine to 1e-4 after 100 warm-up steps, 5000 steps, β₂ = 0.99; depths 1, 2, 4 and its 6.
    "paper": dict(d=384, units=6, depths=[1, 2, 4, 6], seq_len=256, batch_size=64, steps=5000, warmup=100,
                  lr={"mosaic": 1e-3, "gpt": 1e-3}, dropout=0.2, eval_batches=50, eval_batch_size=64,
                  bands=[8, 32, 128, 256], sample_tokens=500, seeds=[0]),
})
MODELS = ("mosaic", "gpt")
TUNING = {"grid": [3e-4, 1e-3, 3e-3, 1e-2, 3e-2], "metric": "loss", "higher_is_better": False}
SAMPLE = dict(prompt="ROMEO:", temperature=0.8, top_k=20, seed=0)
# nanoGPT's CPU recipe for tiny Shakespeare: val loss about 1.88 nats per character after 2000 steps.
NANOGPT_CPU = dict(d=128, units=4, depth=4, seq_len=64, batch_size=12, steps=2000, warmup=100, lr=1e-3,
                   dropout=0.0, eval_batches=200, eval_batch_size=12)
NANOGPT_CPU_VAL_LOSS = 1.88
LOSS_NAMES = {"train_loss": "training", "val_loss": "validation", "ood_loss": "out of distribution"}


def layers(depth: int) -> str:
    return f"{depth} layer" + ("s" if depth > 1 else "")


def tuning_key(name: str, depth: int) -> str:
    """The name under which model `name` at `depth` layers is tuned: each depth gets its own rate."""
    return f"{name}_{layers(depth).replace(' ', '_')}"


def tuning_runs(preset: dict) -> dict:
    """For `python -m figures.tune`: each (model, depth)'s run as a function of its learning rate (first seed)."""
    return {tuning_key(name, depth): (lambda lr, name=name, depth=depth: run_config(name, preset, depth, lr, Path(".")))
            for depth in preset["depths"] for name in MODELS}


def learning_rate(preset: dict, name: str, depth: int) -> float:
    """The tuned rate of `name` at `depth`, or the preset's `lr` where it was not tuned."""
    return model_lr(preset, tuning_key(name, depth), preset["lr"][name])


def model_config(name: str, preset: dict, depth: int):
    width = dict(d=preset["d"], layers=depth, dropout=preset["dropout"])
    if name == "mosaic":  # N = 3.5 d persistent slots: the parameter count of GPT's MLP
        return MosaicConfig(units=preset["units"], **width)
    return GPTConfig(heads=preset["units"], **width)


def run_config(name: str, preset: dict, depth: int, lr: float, out: Path, label: str = "", seed: int = 0) -> RunConfig:
    """The run of one model at one depth and learning rate; `seed` draws the initialisation and the batches."""
    steps = preset["steps"]
    # nanoGPT/nanoMosaics: AdamW β₂ = 0.99, cosine to lr/10, clip 1. No weight decay: the engine decays
    # every parameter, which would pull the mosaic's leak and β scalars towards 1.
    train_config = TrainConfig(steps=steps, batch_size=preset["batch_size"], lr=lr, betas=(0.9, 0.99),
                               warmup_steps=preset["warmup"], schedule="cosine", final_lr_fraction=0.1,
                               grad_clip=1.0, eval_every=max(1, steps // 10), eval_batches=2,
                               log_every=max(1, steps // 50))
    return RunConfig(task=TextConfig(seq_len=preset["seq_len"]), model=model_config(name, preset, depth),
                     train=train_config, seed=seed, out=str(out / "runs"),
                     name=label or f"{name}-{depth}-layers" + (f"-seed{seed}" if seed else ""))


def evaluate_run(result, preset: dict) -> dict:
    """Final losses on train, validation and out-of-distribution text, and validation loss per position."""
    device = next(result.model.parameters()).device
    args = (preset["eval_batches"], preset["eval_batch_size"], device)
    per_position = {split: position_losses(result.model, result.task, split, *args) for split in ("train", "val", "test")}
    return {"train_loss": float(per_position["train"].mean()), "val_loss": float(per_position["val"].mean()),
            "ood_loss": float(per_position["test"].mean()),
            "val_position_loss": per_position["val"].tolist(), "ood_position_loss": per_position["test"].tolist(),
            "val_bands": band_means(per_position["val"], preset["bands"]),
            "ood_bands": band_means(per_position["test"], preset["bands"])}


def draw_sample(result, tokens: int) -> str:
    from sandbox.commands.sample import sample_text

    return sample_text(result.task, result.model, SAMPLE["prompt"], tokens, temperature=SAMPLE["temperature"],
                       top_k=SAMPLE["top_k"], seed=SAMPLE["seed"], device=next(result.model.parameters()).device)


def compute(preset: dict, out: Path, progress: bool | None = None) -> dict:
    out = Path(out)
    runs, samples = [], {}
    load_before = os.getloadavg()
    seeds = preset.get("seeds", [0])
    for depth, name, seed in itertools.product(preset["depths"], MODELS, seeds):
        start = time.perf_counter()
        lr = learning_rate(preset, name, depth)
        result = train(run_config(name, preset, depth, lr, out, seed=seed), progress=progress)
        train_seconds = time.perf_counter() - start
        scores = evaluate_run(result, preset)
        curve = [(h["step"], h["loss"]) for h in result.history if h["split"] == "val"]
        runs.append({"model": name, "depth": depth, "seed": seed, "lr": lr,
                     "parameters": num_parameters(result.model, embeddings=False), **scores,
                     "val_curve": curve, "train_seconds": train_seconds,
                     "wall_seconds": time.perf_counter() - start})
        if depth == max(preset["depths"]) and seed == seeds[0]:
            samples[name] = draw_sample(result, preset["sample_tokens"])
        print(f"  {name} {layers(depth)} seed {seed}: train {scores['train_loss']:.3f}, val {scores['val_loss']:.3f}, "
              f"out-of-distribution {scores['ood_loss']:.3f} ({train_seconds:.0f} s)")
    task = TextConfig(seq_len=preset["seq_len"]).build(0)
    results = {"preset": preset, "runs": runs, "samples": samples, "sample_settings": SAMPLE,
               "data": task.describe(), "unigram_entropy": unigram_entropy(task),
               "load_average": {"before": load_before, "after": os.getloadavg()}, "cpu_count": os.cpu_count()}
    write_json(out / "results.json", results)
    return results


def unigram_entropy(task) -> float:
    """Entropy (nats) of the training text's character frequencies: the loss of a model with no context."""
    counts = torch.bincount(task.splits["train"].long(), minlength=task.vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def plot(out: Path) -> list[Path]:
    from sandbox.plotting import mean_band, plt, save_figure

    out = Path(out)
    results = json.loads((out / "results.json").read_text())
    runs, depths = results["runs"], results["preset"]["depths"]
    style = {"mosaic": dict(color="C0", marker="o"), "gpt": dict(color="C1", marker="s")}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))

    def against_depth(ax, solid: str, dotted: str, title: str) -> None:  # two losses per model against depth
        for name in MODELS:
            rows = [r for r in runs if r["model"] == name]
            for key, extra in ((solid, {}), (dotted, dict(ls=":", alpha=0.6))):
                mean_band(ax, *by_seed(rows, "depth", key), label=f"{name} {LOSS_NAMES[key]}", bars=True,
                          **style[name], **extra)
        ax.set(xlabel="layers", ylabel="loss (nats per character)", xticks=depths, title=title)
        ax.legend(fontsize=8)

    against_depth(axes[0], "val_loss", "train_loss", "(a) loss against depth, equal parameters")
    ax = axes[1]
    for name, depth in itertools.product(MODELS, depths):
        group = sorted((r for r in runs if (r["model"], r["depth"]) == (name, depth)), key=lambda r: r.get("seed", 0))
        binned = [log_binned(torch.tensor(r["val_position_loss"])) for r in group]  # seeds × (centres, means)
        mean_band(ax, binned[0][0], [means for _, means in binned], label=f"{name} {layers(depth)}",
                  color=style[name]["color"], alpha=0.35 + 0.65 * (depths.index(depth) + 1) / len(depths),
                  ls="-" if name == "mosaic" else "--")
    ax.set(xscale="log", xlabel="token position t (context length)", ylabel="validation loss",
           title="(b) validation loss per position")
    ax.legend(fontsize=7, ncol=2)
    against_depth(axes[2], "ood_loss", "val_loss", "(c) sonnets and poems (out of distribution)")
    fig.tight_layout()
    plotted = {"runs": [{k: v for k, v in r.items() if k != "val_curve"} for r in runs]}
    return [save_figure(fig, out / "language_modelling", plotted)["png"]]


def log_binned(curve: torch.Tensor, bins: int = 24):
    """Mean of a per-position curve over log-spaced position bins: (bin centres, means)."""
    edges = torch.unique(torch.logspace(0, math.log10(len(curve) + 1), bins + 1).long())
    centres, means = [], []
    for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist()):
        centres.append(math.sqrt(lo * (hi - 1)) if hi - 1 > lo else lo)
        means.append(float(curve[lo - 1:hi - 1].mean()))
    return centres, means


def summary(results: dict) -> list[tuple[str, str, str]]:
    """Gallery rows (quantity, ours, paper) from the saved results: mean ± sd where there are several seeds."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for run in results["runs"]:
        groups.setdefault((run["model"], run["depth"]), []).append(run)

    def spread(model: str, depth: int, value, count: bool = False, sign: bool = False) -> str:
        value = value if callable(value) else (lambda run, key=value: run[key])
        return mean_spread([value(run) for run in groups[model, depth]], count=count, sign=sign)

    def versus(depth: int, *values) -> str:  # mosaic's values vs GPT's, the number of seeds at the very end
        sides = [[spread(model, depth, v, count=(model, i) == (MODELS[-1], len(values) - 1)) for i, v in enumerate(values)]
                 for model in MODELS]
        return " vs ".join(" / ".join(side) for side in sides)

    rows = []
    depths = results["preset"]["depths"]
    for depth in depths:
        rows.append((f"{layers(depth)}: train / validation loss, mosaic vs GPT", versus(depth, "train_loss", "val_loss"),
                     "mosaic ≤ GPT, most at small depth"))
    deepest = max(depths)
    for band in groups["mosaic", deepest][0]["val_bands"]:
        rows.append((f"{layers(deepest)}: validation loss at positions {band}, mosaic vs GPT",
                     versus(deepest, lambda run, band=band: run["val_bands"][band]), "mosaic lower, most at early positions"))
    for depth in depths:
        m, g = (f"{spread(model, depth, 'ood_loss')} ("
                f"{spread(model, depth, lambda run: run['ood_loss'] - run['val_loss'], count=model == MODELS[-1], sign=True)})"
                for model in MODELS)
        rows.append((f"{layers(depth)}: out-of-distribution loss (minus validation), mosaic vs GPT", f"{m} vs {g}",
                     "mosaic degrades less"))
    rows.append(("non-embedding parameters per depth, mosaic / GPT",
                 ", ".join(f"{groups['mosaic', d][0]['parameters']:,} / {groups['gpt', d][0]['parameters']:,}"
                           for d in depths), "—", "equal"))
    rows.append(("learning rate per depth, mosaic / GPT",
                 ", ".join(f"{groups['mosaic', d][0]['lr']:g} / {groups['gpt', d][0]['lr']:g}" for d in depths), "—",
                 "each tuned on validation loss"))
    return rows


def details(results: dict) -> str:
    """Gallery text below the table: a sample from each model (the deepest)."""
    s = results["sample_settings"]
    lines = [f"Samples from the {max(results['preset']['depths'])}-layer models (prompt {s['prompt']!r}, "
             f"temperature {s['temperature']}, top-k {s['top_k']}, seed {s['seed']}; "
             f"`sandbox sample RUN_DIR --prompt {s['prompt']!r}` prints more):", ""]
    for name, text in results["samples"].items():
        lines += [f"**{name}**", "", "```text", text.rstrip("\n"), "```", ""]
    return "\n".join(lines)


def sanity(out: Path, recipe: dict = NANOGPT_CPU, models=("gpt", "mosaic"), progress: bool | None = None) -> dict:
    """The nanoGPT CPU recipe on our corpus (then the mosaic of equal size): validation loss beside 1.88.
    The results file is rewritten after each model, so an interrupted run keeps the GPT's number."""
    preset = dict(recipe, depths=[recipe["depth"]])
    results = {"recipe": recipe, "reference_val_loss_tiny_shakespeare": NANOGPT_CPU_VAL_LOSS, "runs": {}}
    for name in models:
        config = run_config(name, preset, recipe["depth"], recipe["lr"], Path(out), label=f"nanogpt-cpu-{name}")
        if name == "gpt":  # nanoGPT's weight decay, for the transformer
            config = replace(config, train=replace(config.train, weight_decay=0.1))
        start = time.perf_counter()
        result = train(config, progress=progress)
        seconds = time.perf_counter() - start
        val = position_losses(result.model, result.task, "val", recipe["eval_batches"], recipe["eval_batch_size"],
                              next(result.model.parameters()).device)
        results["runs"][name] = {"val_loss": float(val.mean()), "train_seconds": seconds,
                                 "device": str(next(result.model.parameters()).device),
                                 "parameters": num_parameters(result.model, embeddings=False),
                                 "load_average": os.getloadavg()}
        print(f"  {name}: validation loss {float(val.mean()):.3f} after {recipe['steps']} steps ({seconds:.0f} s)")
        write_json(Path(out) / "nanogpt_cpu_recipe.json", results)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="The nanoGPT CPU sanity point (learning rates are tuned by "
                                                 "`python -m figures.tune language-modelling`).")
    parser.add_argument("--sanity", action="store_true", help="train the nanoGPT CPU recipe on our corpus")
    parser.add_argument("--out", default="figures/out/language-modelling-sanity", help="where results go")
    args = parser.parse_args(argv)
    if not args.sanity:
        parser.error("give --sanity")
    sanity(Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
