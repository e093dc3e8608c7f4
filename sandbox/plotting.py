"""Figures as files: every plot is saved as PNG and PDF beside the JSON of the numbers it shows.

Uses the non-interactive Agg backend; nothing here ever opens a window or blocks.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sandbox.io import atomic_write, write_json  # noqa: E402


def save_figure(fig, stem: str | os.PathLike, data: dict) -> dict[str, Path]:
    """Write `stem.png`, `stem.pdf` and `stem.json` (the plotted numbers); close the figure."""
    stem = Path(stem)
    paths = {"json": write_json(stem.with_suffix(".json"), data)}
    for fmt in ("png", "pdf"):
        paths[fmt] = atomic_write(stem.with_suffix(f".{fmt}"),
                                  lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight"))
    plt.close(fig)
    return paths


def mean_band(ax, x, per_seed, *, label: str, color=None, bars: bool = False, **style):
    """Plot the mean over seeds of `per_seed` (seeds × len(x)) with ±1 sample standard deviation.

    bars=False draws a shaded band (curves against steps), bars=True error bars (a few x values).
    With one seed it is the plain curve. Returns the mean and the standard deviation (None: one seed).
    """
    import numpy as np

    values = np.asarray(per_seed, dtype=float)  # (seeds, len(x))
    if values.ndim != 2 or values.shape[1] != len(x):
        raise ValueError(f"per_seed must have shape (seeds, {len(x)}), got {values.shape}")
    mean = values.mean(axis=0)
    std = values.std(axis=0, ddof=1) if values.shape[0] > 1 else None
    if std is not None and bars:
        ax.errorbar(x, mean, yerr=std, color=color, capsize=3, label=f"{label} (mean ± sd, {values.shape[0]} seeds)", **style)
    else:
        shown = f"{label} (mean ± sd, {values.shape[0]} seeds)" if std is not None else label
        line, = ax.plot(x, mean, color=color, label=shown, **style)
        if std is not None:
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    return mean, std
