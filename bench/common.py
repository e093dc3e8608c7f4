"""Shared helpers for the benchmarks: machine facts and writing the results file."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

from sandbox.io import write_json

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def save(name: str, results: dict, directory: Path = RESULTS) -> Path:
    path = write_json(Path(directory) / f"{name}.json", {"machine": machine(), **results})
    print(f"wrote {path}")
    return path
