"""Memory variants compared: Memory Mosaics v1 and v2, kernel variants and a same-size GPT on
multi-query associative recall, at growing numbers of pairs and on length extrapolation (trained with
up to P pairs, a sequence of length T; evaluated with 2P and 4P pairs, lengths about 2T and 4T).

Every model trains through the shared engine with its own learning rate, chosen from a small grid by
a separate tuning run on the validation split (`python -m figures.variants --tune --preset quick`,
saved to `figures/variants_lr.json` and read by the preset), so that no model is a straw man. The
test split is used only for the reported numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from sandbox.config import RunConfig, TrainConfig
from sandbox.io import write_json
from sandbox.models import GPTConfig, MosaicConfig, num_parameters
from sandbox.train import evaluate, train
from tasks.recall import RecallConfig

HERE = Path(__file__).resolve().parent
TUNED = HERE / "variants_lr.json"  # {preset: {model: lr}}, written by the tuning run
LR_GRID = (1e-3, 3e-3, 1e-2, 3e-2)

# name -> the mosaic options that make it (None: the GPT baseline)
MODELS = {
    "mosaic v1": {},
    "mosaic v2": {"version": 2},
    "fixed β": {"beta": 3.7},  # the learned β's starting value, never trained
    "laplace": {"kernel": "laplace"},
    "top-k": {"kernel": "top_k"},
    "linear attention": {"kernel": "linear_attention"},
    "gpt": None,
}

PRESETS = {
    "tiny": dict(models=["mosaic v1", "mosaic v2", "laplace", "gpt"], pairs=(2, 4), queries=4, vocab=16,
                 d=16, layers=1, units=2, steps=10, batch_size=8, eval_batches=1, seeds=[0]),
    "quick": dict(models=["mosaic v1", "mosaic v2", "fixed β", "laplace", "linear attention", "gpt"], pairs=(2, 8),
                  queries=8, vocab=32, d=32, layers=2, units=4, steps=200, batch_size=16, eval_batches=8, seeds=[0]),
    "paper": dict(models=[*MODELS, "epanechnikov"], pairs=(4, 32), queries=16, vocab=128, d=128, layers=2,
                  units=8, steps=5000, batch_size=64, eval_batches=16, seeds=[0, 1, 2]),
}
MODELS["epanechnikov"] = {"kernel": "epanechnikov"}
LENGTHS = (1, 2, 4)  # evaluation with up to 1, 2, 4 times the training pairs


def tuned(preset_name: str) -> dict[str, float]:
    """The learning rate the tuning run chose for each model (3e-3 for one it has not tuned)."""
    table = json.loads(TUNED.read_text()) if TUNED.exists() else {}
    return {name: table.get(preset_name, {}).get(name, 3e-3) for name in PRESETS[preset_name]["models"]}


for _name, _preset in PRESETS.items():  # the tuning run's choice is part of each preset
    _preset.update(name=_name, lr=tuned(_name))


def task_config(preset: dict, scale: int = 1) -> RecallConfig:
    low, high = preset["pairs"]
    # One vocabulary for every length: enough keys for the longest evaluation's distinct pairs.
    return RecallConfig(min_pairs=low, max_pairs=high * scale, queries=preset["queries"],
                        key_vocab=max(preset["vocab"], high * max(LENGTHS)), value_vocab=preset["vocab"])


def model_config(name: str, preset: dict):
    options = MODELS[name]
    if options is None:  # learned positions up to the longest evaluation: those past T are never trained
        longest = task_config(preset, max(LENGTHS)).build(0).seq_len
        return GPTConfig(d=preset["d"], layers=preset["layers"], heads=preset["units"], max_len=longest)
    return MosaicConfig(d=preset["d"], layers=preset["layers"], units=preset["units"], **options)


def run(name: str, preset: dict, lr: float, seed: int, out: Path, progress):
    steps = preset["steps"]
    config = RunConfig(task=task_config(preset), model=model_config(name, preset),
                       train=TrainConfig(steps=steps, batch_size=preset["batch_size"], lr=lr, weight_decay=0.0,
                                         warmup_steps=steps // 10, schedule="cosine", grad_clip=1.0,
                                         eval_every=0, eval_batches=preset["eval_batches"],
                                         log_every=max(1, steps // 20)),
                       seed=seed, out=str(out / "runs"), name=f"{name.replace(' ', '_')}-lr{lr:g}-seed{seed}")
    return train(config, progress=progress, overwrite=True)  # computing again replaces the run


def compute(preset: dict, out: Path, progress: bool | None = None) -> dict:
    out = Path(out)
    runs = []
    for name in preset["models"]:
        lr = preset["lr"][name]
        for seed in preset["seeds"]:
            start = time.perf_counter()
            result = run(name, preset, lr, seed, out, progress)
            device = next(result.model.parameters()).device
            row = {"model": name, "seed": seed, "lr": lr,
                   "parameters": num_parameters(result.model, embeddings=False)}
            for scale in LENGTHS:
                task = task_config(preset, scale).build(seed)
                metrics = evaluate(result.model, task, TrainConfig(batch_size=preset["batch_size"],
                                   eval_batches=preset["eval_batches"]), device, split="test")
                row[f"accuracy_x{scale}"] = metrics["accuracy"]
                if scale == 1:
                    row["accuracy_by_pairs"] = accuracy_by_pairs(result.model, task, preset, device)
            row["wall_seconds"] = time.perf_counter() - start
            runs.append(row)
            print(f"  {name} (lr {lr:g}, seed {seed}, {row['parameters']} parameters): recall accuracy "
                  + ", ".join(f"{row[f'accuracy_x{s}']:.3f} at {s}x" for s in LENGTHS))
    results = {"preset": preset, "runs": runs, "lengths": list(LENGTHS)}
    write_json(out / "results.json", results)
    return results


@torch.no_grad()
def accuracy_by_pairs(model, task, preset: dict, device) -> dict[str, float]:
    """Test accuracy per number of pairs, pooled over every evaluation batch (each count weighs by the
    queries it has, so a count missing from a batch does not pull its mean down)."""
    was_training = model.training
    model.eval()
    correct: dict[int, float] = {}
    total: dict[int, float] = {}
    for index in range(preset["eval_batches"]):
        batch = task.batch("test", index, preset["batch_size"], device)
        scored = batch.targets != -100  # (B, T)
        hits = ((model(batch.inputs).argmax(-1) == batch.targets) & scored).sum(1)  # (B,)
        for n, hit, count in zip(batch.extras["pairs"].tolist(), hits.tolist(), scored.sum(1).tolist()):
            correct[n], total[n] = correct.get(n, 0) + hit, total.get(n, 0) + count
    model.train(was_training)
    return {str(n): correct[n] / total[n] for n in sorted(total)}


def mean_by_model(results: dict, key: str) -> dict[str, float]:
    table: dict[str, list[float]] = {}
    for run in results["runs"]:
        table.setdefault(run["model"], []).append(run[key])
    return {name: sum(v) / len(v) for name, v in table.items()}


def plot(out: Path) -> list[Path]:
    from sandbox.plotting import plt, save_figure

    out = Path(out)
    results = json.loads((out / "results.json").read_text())
    names = list(dict.fromkeys(r["model"] for r in results["runs"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    plotted = {"by_pairs": {}, "by_length": {}}
    for i, name in enumerate(names):
        rows = [r for r in results["runs"] if r["model"] == name]
        pairs = sorted({int(n) for r in rows for n in r["accuracy_by_pairs"]})
        by_pairs = [sum(r["accuracy_by_pairs"].get(str(n), 0.0) for r in rows) / len(rows) for n in pairs]
        by_length = [sum(r[f"accuracy_x{s}"] for r in rows) / len(rows) for s in results["lengths"]]
        style = dict(marker="o", color=f"C{i}", ls="--" if name == "gpt" else "-", label=name)
        axes[0].plot(pairs, by_pairs, **style)
        axes[1].plot(results["lengths"], by_length, **style)
        plotted["by_pairs"][name], plotted["by_length"][name] = dict(zip(pairs, by_pairs)), by_length
    axes[0].set(xlabel="pairs in the context", ylabel="recall accuracy (test)", title="associative recall",
                ylim=(0, 1.02))
    axes[1].set(xlabel="evaluation length / training length", ylabel="recall accuracy (test)",
                title="length extrapolation", ylim=(0, 1.02), xticks=results["lengths"],
                xticklabels=[f"{s}T" for s in results["lengths"]])
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return [save_figure(fig, out / "variants", plotted)["png"]]


def summary(results: dict) -> list[tuple[str, str, str]]:
    """Gallery rows (quantity, ours, paper): no published numbers exist for this comparison."""
    rows = []
    params, lr = mean_by_model(results, "parameters"), {r["model"]: r["lr"] for r in results["runs"]}
    accuracy = {s: mean_by_model(results, f"accuracy_x{s}") for s in results["lengths"]}
    for name in params:
        cells = " / ".join(f"{accuracy[s][name]:.3f}" for s in results["lengths"])
        lengths = " / ".join(f"{s}T" for s in results["lengths"])
        rows.append((f"{name}: recall accuracy at {lengths} ({params[name]:.0f} parameters, lr {lr[name]:g})",
                     cells, "—"))
    return rows


def tune(preset_name: str, out: Path, progress: bool | None = None) -> dict[str, float]:
    """Train every model of the preset at each learning rate of `LR_GRID` (first seed) and keep, per
    model, the one with the lowest validation loss (accuracy saturates at the training length, the
    loss still tells the rates apart); saved to `figures/variants_lr.json`."""
    preset = PRESETS[preset_name]
    record = Path(out) / "tuning" / f"scores-{preset_name}.json"
    scores = json.loads(record.read_text()) if record.exists() else {}  # a rerun keeps what it has
    chosen = {}
    for name in preset["models"]:
        for lr in LR_GRID:
            if f"{name} @ {lr:g}" not in scores:
                result = run(name, preset, lr, preset["seeds"][0], Path(out) / "tuning", progress)
                device = next(result.model.parameters()).device
                scores[f"{name} @ {lr:g}"] = evaluate(result.model, result.task, TrainConfig(
                    batch_size=preset["batch_size"], eval_batches=preset["eval_batches"]), device, split="val")["loss"]
                write_json(record, scores)
            print(f"  {name} lr {lr:g}: validation loss {scores[f'{name} @ {lr:g}']:.4f}")
        chosen[name] = min(LR_GRID, key=lambda lr: scores[f"{name} @ {lr:g}"])
    table = json.loads(TUNED.read_text()) if TUNED.exists() else {}
    table[preset_name] = chosen
    write_json(TUNED, table)
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="tune the learning rates of the variants figure")
    parser.add_argument("--tune", action="store_true", required=True)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--out", default="figures/out/variants-tuning")
    args = parser.parse_args(argv)
    print(tune(args.preset, Path(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
