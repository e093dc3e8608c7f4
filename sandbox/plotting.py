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
