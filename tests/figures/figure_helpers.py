"""Shared by the figure tests: run a family's tiny preset once; check numbers are finite."""

import math

import torch

from sandbox.checkpoints import list_checkpoints
from sandbox.cli import main
from sandbox.config import RunConfig
from sandbox.train import build


_TINY: dict[str, object] = {}  # family -> its tiny output directory, computed once per test session


def run_tiny(tmp_path_factory, family: str):
    """Compute and plot `family` with the tiny preset, once per test session (the family's tests and the
    gallery's share it; each family's output directory holds that family alone); return its directory."""
    if family not in _TINY:
        out = tmp_path_factory.mktemp("figures")
        assert main(["figures", family, "--preset", "tiny", "--out", str(out), "--no-progress"]) == 0
        _TINY[family] = out / family
    return _TINY[family]


def load_run(run_dir):
    """(task, model) of a finished run, rebuilt on the CPU from its config.json and newest checkpoint."""
    task, model = build(RunConfig.load(run_dir / "config.json"), torch.device("cpu"))
    (_, newest), *_ = list_checkpoints(run_dir)
    model.load_state_dict(torch.load(newest, map_location="cpu", weights_only=True)["model"])
    return task, model.eval()


def redraw(results_dir, stem: str) -> None:
    """Delete one picture and redraw the family from its saved results alone."""
    (results_dir / f"{stem}.png").unlink()
    assert main(["figures", results_dir.name, "--out", str(results_dir.parent), "--plot-only"]) == 0
    assert (results_dir / f"{stem}.png").exists()


def finite(value) -> bool:
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)
