"""Memory variants compared: Memory Mosaics v1 and v2, kernel variants and a GPT of the same width and
depth on three in-context tasks — trigger bigrams with the triggers drawn per sequence (in-context
accuracy), multi-query associative recall at growing numbers of pairs (accuracy) and regular languages
(accuracy and TVD, as in docs/regular-languages.md) — and on length extrapolation: trained at length T,
evaluated at 2T and 4T (bigrams: longer sequences; recall: up to 2 and 4 times the pairs).

v2 has its SwiGLU persistent memory narrowed so that its parameter count matches v1's (two contextual
memories per layer cost it more); its short-term window is h = T/4 of the training length T and its
long-term lag m is drawn in [h/4, h] in training (the published ratio m_high/m_low = 4; m <= h, so every
past position is seen by one of the two memories).

Every (task, model) pair trains through the shared engine at its own learning rate, chosen on the
validation loss over `TUNING`'s grid by a separate tuning run (`python -m figures.tune variants --preset
quick`, saved in figures/tuned/variants.json and read by the presets), so that no model is a straw
man. The test split is used only for the reported numbers.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from sandbox.analysis.seeds import mean_spread
from sandbox.config import RunConfig, TrainConfig
from sandbox.io import write_json
from sandbox.models import GPTConfig, MosaicConfig, num_parameters
from sandbox.pool import map_processes
from sandbox.train import train
from tasks.bigram import BigramConfig
from tasks.recall import RecallConfig
from tasks.regular_languages import RegularLanguagesConfig

from figures.regular_languages import test_scores as regular_language_scores
from figures.tune import model_lr, with_tuned

# model -> the mosaic options that make it (None: the GPT baseline); names are run-directory safe
MODELS = {
    "mosaic_v1": {},
    "mosaic_v2": {"version": 2},
    "fixed_beta": {"beta": 3.7},  # the learned β's starting value, never trained
    "laplace": {"kernel": "laplace"},
    "top_k": {"kernel": "top_k"},
    "epanechnikov": {"kernel": "epanechnikov"},
    "linear_attention": {"kernel": "linear_attention"},
    "gpt": None,
}
LABELS = {"mosaic_v1": "mosaic v1", "mosaic_v2": "mosaic v2", "fixed_beta": "fixed β", "laplace": "laplace",
          "top_k": "top-k", "epanechnikov": "epanechnikov", "linear_attention": "linear attention", "gpt": "GPT"}
TASKS = ("bigram", "recall", "regular_languages")
TASK_TITLES = {"bigram": "trigger bigrams, triggers drawn per sequence", "recall": "multi-query associative recall",
               "regular_languages": "regular languages"}
LENGTHS = (1, 2, 4)  # evaluation at 1, 2, 4 times the training length (bigrams, recall)

# Each (task, model)'s Adam learning rate comes from `python -m figures.tune variants` (chosen on its
# validation loss, the one metric every task has, over this grid; saved in figures/tuned/variants.json).
TUNING = {"grid": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "metric": "loss", "higher_is_better": False}
DEFAULT_LR = 3e-3  # for a (task, model) the tuning run has not seen

# Each task's settings; `steps` and `batch_size` there override the preset's (regular languages'
# sequences are about 10 times longer than the others'). Quick: 8 units of width 4, so that the recall of
# up to 64 pairs at 4T strains a unit's key space (with units of width 8 and pairs (2, 8) every softmax
# mosaic recalled 1.000 at every length; at width 4 the fixed β falls behind the learned one at 4T).
PRESETS = with_tuned("variants", {
    "tiny": dict(models=["mosaic_v1", "mosaic_v2", "linear_attention", "gpt"], d=16, layers=1, units=2, steps=8,
                 batch_size=4, eval_batches=2, seeds=[0],
                 bigram=dict(seq_len=24, triggers=2), recall=dict(pairs=(2, 4), queries=4, vocab=16),
                 regular_languages=dict(automata=8, eval_automata=4, batch_size=2)),
    "quick": dict(models=["mosaic_v1", "mosaic_v2", "fixed_beta", "linear_attention", "gpt"],
                  d=32, layers=2, units=8, steps=150, batch_size=16, eval_batches=6, seeds=[0],
                  bigram=dict(seq_len=64, triggers=5), recall=dict(pairs=(4, 16), queries=8, vocab=64),
                  regular_languages=dict(automata=500, eval_automata=64, steps=70, batch_size=8)),
    "paper": dict(models=list(MODELS), d=128, layers=2, units=8, steps=5000, batch_size=64, eval_batches=16,
                  seeds=[0, 1, 2], bigram=dict(seq_len=256, triggers=5), recall=dict(pairs=(4, 32), queries=16, vocab=128),
                  regular_languages=dict(automata=2500, eval_automata=500, batch_size=32)),
})


def setting(preset: dict, task: str, key: str):
    """A training setting of `task`: its own if it has one, else the preset's."""
    return preset[task].get(key, preset[key])


def task_config(task: str, preset: dict, scale: int = 1):
    """The task at `scale` times the training length (regular languages: their own fixed lengths)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    settings = preset[task]
    if task == "bigram":
        return BigramConfig(seq_len=settings["seq_len"] * scale, triggers=settings["triggers"], random_triggers=True,
                            loss_on="predictable")
    if task == "recall":
        low, high = settings["pairs"]
        # One vocabulary for every length: enough keys for the longest evaluation's distinct pairs.
        return RecallConfig(min_pairs=low, max_pairs=high * scale, queries=settings["queries"],
                            key_vocab=max(settings["vocab"], high * max(LENGTHS)), value_vocab=settings["vocab"])
    return RegularLanguagesConfig(train_automata=settings["automata"], eval_automata=settings["eval_automata"])


def scales(task: str) -> tuple[int, ...]:
    return (1,) if task == "regular_languages" else LENGTHS


def training_length(task: str, preset: dict) -> int:
    return task_config(task, preset).build(0).seq_len


def model_config(name: str, preset: dict, task: str):
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    options = MODELS[name]
    if options is None:  # learned positions up to the longest evaluation: those past T are never trained
        longest = task_config(task, preset, max(scales(task))).build(0).seq_len
        return GPTConfig(d=preset["d"], layers=preset["layers"], heads=preset["units"], max_len=longest)
    config = MosaicConfig(d=preset["d"], layers=preset["layers"], units=preset["units"], **options)
    if config.version == 2:
        window = max(4, training_length(task, preset) // 4)  # h = T/4, m ∈ [h/4, h]
        config = replace(config, window=window, lag_range=(window // 4, window), persistent_slots=v2_slots(preset))
    return config


def v2_slots(preset: dict) -> int:
    """The persistent-memory size that gives v2 the parameter count of v1 (two contextual memories per
    layer cost it more, so its SwiGLU layer is narrower): the count grows with the size, so bisect for
    the first size at or above v1's count and keep it or the one below, whichever is closer."""
    def count(slots):
        config = MosaicConfig(d=preset["d"], layers=preset["layers"], units=preset["units"], version=2,
                              persistent_slots=slots)
        return num_parameters(config.build(vocab_size=2), embeddings=False)

    v1 = MosaicConfig(d=preset["d"], layers=preset["layers"], units=preset["units"])
    target = num_parameters(v1.build(vocab_size=2), embeddings=False)
    low, high = 0, v1.slots  # v2 at v1's size has more parameters than v1
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if count(middle) < target else (low, middle)
    return min((low, max(0, low - 1)), key=lambda slots: abs(count(slots) - target))


def run_config(preset: dict, task: str, name: str, lr: float, out: Path, seed: int = 0) -> RunConfig:
    """The run of model `name` on `task` at learning rate `lr`, initialised and fed by `seed`."""
    steps = setting(preset, task, "steps")
    return RunConfig(task=task_config(task, preset), model=model_config(name, preset, task),
                     train=TrainConfig(steps=steps, batch_size=setting(preset, task, "batch_size"), lr=lr,
                                       weight_decay=0.0, warmup_steps=steps // 10, schedule="cosine", grad_clip=1.0,
                                       eval_every=0, eval_batches=preset["eval_batches"],
                                       log_every=max(1, steps // 20)),
                     seed=seed, out=str(Path(out) / "runs"), name=f"{task}.{name}-seed{seed}")


def tuning_key(task: str, name: str) -> str:
    return f"{task}.{name}"


def tuning_runs(preset: dict) -> dict:
    """For `python -m figures.tune`: every (task, model)'s run as a function of its learning rate (first
    seed); each pair gets its own learning rate, so none is held to a rate chosen on another task."""
    return {tuning_key(task, name): (lambda lr, task=task, name=name: run_config(preset, task, name, lr, Path(".")))
            for task in TASKS for name in preset["models"]}


@torch.no_grad()
def pooled_accuracy(model, task, batches: int, batch_size: int, device, groups) -> dict[str, list[int]]:
    """{group: [correct, scored]} over `batches` test batches, pooled (each group weighs by its scored
    positions, so a group missing from a batch does not pull its mean down); `groups(batch)` gives each
    group's (B, T) mask of scored positions."""
    was_training = model.training
    model.eval()
    counts: dict[str, list[int]] = {}
    for index in range(batches):
        batch = task.batch("test", index, batch_size, device)
        hits = model(batch.inputs).argmax(-1) == batch.targets  # (B, T)
        for group, where in groups(batch).items():
            tally = counts.setdefault(group, [0, 0])
            tally[0] += int((hits & where).sum())
            tally[1] += int(where.sum())
    model.train(was_training)
    return counts


def bigram_groups(batch) -> dict:
    return {"in_context": batch.labels >= 2}  # repeats of a trigger: predictable from the context


def recall_groups(batch) -> dict:
    scored = batch.targets != -100  # (B, T) the answers
    pairs = batch.extras["pairs"]  # (B,)
    return {"all": scored, **{f"pairs_{n}": scored & (pairs == n)[:, None] for n in pairs.unique().tolist()}}


def test_scores(task: str, model, preset: dict, seed: int, device) -> dict:
    """The reported numbers of one model trained on `task` with `seed`, on that seed's test split at
    every length."""
    if task == "regular_languages":
        scores = regular_language_scores(model, task_config(task, preset).build(seed), setting(preset, task, "batch_size"),
                                         device)
        return {"accuracy": scores["accuracy"], "tvd": scores["tvd"]}
    scores, by_pairs = {}, {}
    for scale in scales(task):
        built = task_config(task, preset, scale).build(seed)
        counts = pooled_accuracy(model, built, preset["eval_batches"], setting(preset, task, "batch_size"), device,
                                 bigram_groups if task == "bigram" else recall_groups)
        main = counts["in_context" if task == "bigram" else "all"]
        scores[f"accuracy_x{scale}"] = main[0] / main[1]
        for group, (correct, total) in counts.items():  # recall: pooled over every length's evaluation
            if group.startswith("pairs_"):
                tally = by_pairs.setdefault(int(group[6:]), [0, 0])
                tally[0], tally[1] = tally[0] + correct, tally[1] + total
    if by_pairs:
        scores["accuracy_by_pairs"] = {str(n): c / t for n, (c, t) in sorted(by_pairs.items())}
    return scores


def one_run(preset: dict, task: str, name: str, seed: int, out: Path, progress: bool | None = None) -> dict:
    """Train model `name` on `task` with `seed` and score it on the test split (a worker's job with --jobs)."""
    lr = model_lr(preset, tuning_key(task, name), DEFAULT_LR)
    start = time.perf_counter()
    result = train(run_config(preset, task, name, lr, out, seed), progress=progress, overwrite=True)
    device = next(result.model.parameters()).device
    row = {"task": task, "model": name, "seed": seed, "lr": lr, "run": result.run_dir.name,
           "parameters": num_parameters(result.model, embeddings=False),
           **test_scores(task, result.model, preset, seed, device)}
    row["wall_seconds"] = time.perf_counter() - start
    shown = (f"accuracy {row['accuracy']:.3f}, TVD {row['tvd']:.3f}" if task == "regular_languages"
             else ", ".join(f"{row[f'accuracy_x{s}']:.3f} at {s}T" for s in scales(task)))
    print(f"  {task} {name} (lr {lr:g}, seed {seed}, {row['parameters']} parameters): {shown} [{row['wall_seconds']:.0f} s]")
    return row


def compute(preset: dict, out: Path, progress: bool | None = None, jobs: int = 1) -> dict:
    """Every (task, model, seed) run, on `jobs` processes (`sandbox.pool`)."""
    out = Path(out)
    calls = [(preset, task, name, seed, out, progress if jobs == 1 else False)
             for task in TASKS for name in preset["models"] for seed in preset["seeds"]]
    runs = map_processes(one_run, calls, jobs)
    results = {"preset": preset, "runs": runs, "lengths": list(LENGTHS), "tasks": list(TASKS)}
    write_json(out / "results.json", results)
    return results


def values(results: dict, task: str, name: str, key: str) -> list:
    return [r[key] for r in results["runs"] if (r["task"], r["model"]) == (task, name)]


def mean(numbers: list[float]) -> float:
    return sum(numbers) / len(numbers)


def plot(out: Path) -> list[Path]:
    from sandbox.plotting import plt, save_figure

    out = Path(out)
    results = json.loads((out / "results.json").read_text())
    names = list(dict.fromkeys(r["model"] for r in results["runs"]))
    fig, axes = plt.subplots(1, 5, figsize=(24, 4.4))
    plotted: dict = {"bigram_by_length": {}, "recall_by_length": {}, "recall_by_pairs": {}, "regular_languages": {}}
    lengths = results["lengths"]
    for i, name in enumerate(names):
        style = dict(marker="o", color=f"C{i}", ls="--" if name == "gpt" else "-", label=LABELS.get(name, name))
        for ax, task in zip(axes[:2], ("bigram", "recall")):
            by_length = [mean(values(results, task, name, f"accuracy_x{s}")) for s in lengths]
            ax.plot(lengths, by_length, **style)
            plotted[f"{task}_by_length"][name] = by_length
        tables = values(results, "recall", name, "accuracy_by_pairs")
        pairs = sorted({int(n) for table in tables for n in table})
        by_pairs = [mean([table[str(n)] for table in tables if str(n) in table]) for n in pairs]
        axes[2].plot(pairs, by_pairs, **{**style, "marker": None})
        plotted["recall_by_pairs"][name] = dict(zip(pairs, by_pairs))
        scores = [mean(values(results, "regular_languages", name, key)) for key in ("accuracy", "tvd")]
        axes[3].bar(i, scores[0], color=f"C{i}")
        axes[4].bar(i, scores[1], color=f"C{i}")
        plotted["regular_languages"][name] = dict(zip(("accuracy", "tvd"), scores))
    for ax, task in zip(axes[:2], ("bigram", "recall")):
        ax.set(xlabel="evaluation length / training length T", ylabel="test accuracy" + (" (in context)" if task == "bigram" else ""),
               title=TASK_TITLES[task], ylim=(0, 1.02), xticks=lengths, xticklabels=[f"{s}T" for s in lengths])
    trained = results["preset"]["recall"]["pairs"][1]
    axes[2].axvline(trained, color="0.5", ls=":", lw=1)
    axes[2].set(xlabel=f"pairs in the context (trained up to {trained}, dotted)", ylabel="recall accuracy (test)",
                title="recall at growing numbers of pairs", ylim=(0, 1.02))
    for ax, metric in zip(axes[3:], ("test accuracy (higher is better)", "test TVD = ½ Σ|p − q| (lower is better)")):
        ax.set(xticks=range(len(names)), title=f"regular languages, {results['preset']['regular_languages']['automata']} "
               "training automata", ylabel=metric)
        ax.set_xticklabels([LABELS.get(n, n) for n in names], rotation=30, ha="right", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return [save_figure(fig, out / "variants", plotted)["png"]]


def summary(results: dict) -> list[tuple[str, str, str, str]]:
    """Gallery rows (quantity, ours, published, our target): every model's numbers per task and length,
    with its parameter count and learning rate. No published numbers exist for this comparison."""
    rows = []
    names = list(dict.fromkeys(r["model"] for r in results["runs"]))
    for task in results["tasks"]:
        for name in names:
            lr = values(results, task, name, "lr")[0]
            params = values(results, task, name, "parameters")[0]
            about = f"{LABELS.get(name, name)} ({params:,} parameters, lr {lr:g})"
            if task == "regular_languages":
                ours = (mean_spread(values(results, task, name, "accuracy"), count=False) + " / "
                        + mean_spread(values(results, task, name, "tvd")))
                rows.append((f"{TASK_TITLES[task]}: accuracy / TVD, {about}", ours, "—", "—"))
                continue
            ours = " / ".join(mean_spread(values(results, task, name, f"accuracy_x{s}"), count=s == results["lengths"][-1])
                              for s in results["lengths"])
            what = "in-context accuracy" if task == "bigram" else "accuracy"
            target = "mosaics above the GPT at 2T and 4T" if name == "mosaic_v1" else "—"
            rows.append((f"{TASK_TITLES[task]}: {what} at " + " / ".join(f"{s}T" for s in results["lengths"])
                         + f", {about}", ours, "—", target))
    return rows
