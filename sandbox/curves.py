"""Learning curves of any runs, overlaid: one panel per metric, training solid, validation dashed.

    plot_curves(["runs/a", "runs/b"], "plots/curves")   # curves.png, curves.pdf, curves.json
    export_tensorboard(["runs/a"], "tb")                 # the same numbers as TensorBoard events

Everything is read from each run's `metrics.jsonl` (`sandbox.runs`), so it works on finished,
interrupted and still-running runs alike.
"""

from __future__ import annotations

import os
from pathlib import Path

from sandbox.runs import check_run_dir, curves

# Written by the training engine for every run; not metrics of the task.
ENGINE_KEYS = ("lr", "tokens_per_second")


def run_labels(run_dirs: list[Path]) -> list[str]:
    """Short distinct labels: the directory names, or the paths where two names collide."""
    names = [p.name for p in run_dirs]
    if len(set(names)) == len(names):
        return names
    common = os.path.commonpath([str(p.resolve()) for p in run_dirs])
    return [os.path.relpath(p.resolve(), common) for p in run_dirs]


def collect(run_dirs, metrics: list[str] | None = None) -> dict:
    """The plotted numbers: {"runs": {label: {split: {metric: {steps, values}}}}, "metrics": [...]}."""
    run_dirs = [check_run_dir(p) for p in run_dirs]
    if not run_dirs:
        raise ValueError("RUN_DIR: give at least one run directory")
    runs = dict(zip(run_labels(run_dirs), (curves(p) for p in run_dirs)))
    available = sorted({m for run in runs.values() for split in run.values() for m in split})
    if metrics is None:
        chosen = [m for m in available if m not in ENGINE_KEYS]
        chosen = sorted(chosen, key=lambda m: (m != "loss", m))  # the loss first
    else:
        unknown = [m for m in metrics if m not in available]
        if unknown:
            raise ValueError(f"--metrics: {unknown[0]!r} is in none of the runs; available: {', '.join(available)}")
        chosen = list(metrics)
    if not chosen:
        raise ValueError(f"the runs have no metrics to plot (found only {', '.join(available) or 'nothing'})")
    return {"metrics": chosen,
            "runs": {label: {split: {m: c for m, c in by_metric.items() if m in chosen}
                             for split, by_metric in run.items()} for label, run in runs.items()}}


def plot_curves(run_dirs, stem, metrics: list[str] | None = None) -> dict[str, Path]:
    """Draw the curves of `run_dirs`; write `stem`.png/.pdf/.json and return their paths."""
    from sandbox.plotting import plt, save_figure

    data = collect(run_dirs, metrics)
    chosen = data["metrics"]
    columns = min(3, len(chosen))
    rows = -(-len(chosen) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.4 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, chosen):
        for index, (label, run) in enumerate(data["runs"].items()):
            colour = f"C{index % 10}"
            for split, style in (("train", dict(ls="-")), ("val", dict(ls="--", marker="o", ms=3))):
                curve = run.get(split, {}).get(metric)
                if curve:
                    ax.plot(curve["steps"], curve["values"], color=colour, label=f"{label} ({split})", **style)
        values = [v for run in data["runs"].values() for s in run.values() for v in s.get(metric, {}).get("values", [])]
        if metric.endswith("loss") and values and min(values) > 0 and max(values) > 20 * min(values):
            ax.set_yscale("log")
        ax.set(title=metric, xlabel="training step")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(chosen):]:
        ax.set_visible(False)
    fig.tight_layout()
    return save_figure(fig, stem, data)


def export_tensorboard(run_dirs, log_dir) -> list[Path]:
    """Write each run's metrics as TensorBoard scalars under `log_dir/<label>` (needs `tensorboard`)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("--tensorboard needs the tensorboard package: "
                         "pip install 'memory-mosaics-sandbox[tensorboard]'") from None
    run_dirs = [check_run_dir(p) for p in run_dirs]
    written = []
    for label, run_dir in zip(run_labels(run_dirs), run_dirs):
        target = Path(log_dir) / label
        writer = SummaryWriter(log_dir=str(target))
        for split, by_metric in curves(run_dir).items():  # every metric, the engine's included
            for metric, curve in by_metric.items():
                for step, value in zip(curve["steps"], curve["values"]):
                    writer.add_scalar(f"{split}/{metric}", value, step)
        writer.close()
        written.append(target)
    return written
