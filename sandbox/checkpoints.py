"""What a run directory holds, and how a damaged one is recovered.

    run_dir/config.json       the resolved config
    run_dir/metrics.jsonl     one JSON object per log or evaluation line
    run_dir/checkpoints/      step-<step>.<digest>.pt, the newest `keep` of them

A checkpoint's name carries the first 16 hex digits of the SHA-256 of its bytes, so loading verifies it
(`torch.load` still reads the file as it is). Resuming takes the newest intact checkpoint, warning about
each damaged one it passes over (renamed `*.damaged`, kept for inspection), or starts again from step 0
if there is none, and drops the metric lines written after that step (`sandbox.runs.read_metrics` with
`repair=True`, which also drops a torn last line, a write cut short, with a warning naming the file and
the line).
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from pathlib import Path

import torch

from sandbox.io import atomic_write

CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
_NAME = re.compile(r"step-(\d+)\.([0-9a-f]{16})\.pt")
_KEYS = ("model", "optimizer", "scheduler", "step", "rng")


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint in `run_dir`, newest first."""
    folder = Path(run_dir) / CHECKPOINTS
    found = [(int(m.group(1)), p) for p in folder.glob("step-*.pt") if (m := _NAME.fullmatch(p.name))]
    return sorted(found, key=lambda item: (item[0], item[1].name), reverse=True)


def save_checkpoint(run_dir, state: dict, keep: int) -> Path:
    """Write `state` (with its "step") as a verified checkpoint; delete all but the newest `keep`."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    step = state["step"]
    path = Path(run_dir) / CHECKPOINTS / f"step-{step:08d}.{hashlib.sha256(data).hexdigest()[:16]}.pt"
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    for index, (old_step, old) in enumerate(list_checkpoints(run_dir)):
        if old != path and (old_step == step or index >= keep):
            old.unlink(missing_ok=True)
    return path


def set_aside(run_dir, from_step: int, why: str) -> None:
    """Rename the checkpoints at `from_step` and later to `*.<why>`: resuming will not take them."""
    for step, path in list_checkpoints(run_dir):
        if step >= from_step:
            path.rename(path.with_name(f"{path.name}.{why}"))


def _damage(path: Path, step: int, map_location) -> tuple[str | None, dict | None]:
    """(None, state) for an intact checkpoint, else (what is wrong with it, None)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return f"unreadable: {err.strerror}", None
    if hashlib.sha256(data).hexdigest()[:16] != _NAME.fullmatch(path.name).group(2):
        return f"its contents do not match its digest ({len(data)} bytes)", None
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever a damaged file raises, the answer is the same
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", None
    if not isinstance(state, dict) or any(key not in state for key in _KEYS) or state["step"] != step:
        return "not a checkpoint of this trainer", None
    return None, state


def load_newest_intact(run_dir, map_location=None) -> dict | None:
    """The state of the newest intact checkpoint; None (with a warning) if there is none: the run then
    starts again from step 0, which its seed reproduces exactly."""
    run_dir = Path(run_dir)
    passed = []
    for step, path in list_checkpoints(run_dir):
        problem, state = _damage(path, step, map_location)
        if problem is None:
            if passed:
                warnings.warn(f"{run_dir}: skipped damaged checkpoint(s) {'; '.join(passed)}; "
                              f"resuming from {path.name} (step {step})", stacklevel=3)
            return state
        passed.append(f"{path.name} ({problem})")
        path.rename(path.with_name(f"{path.name}.damaged"))
    what = f"every checkpoint is damaged ({'; '.join(passed)})" if passed else "it holds no checkpoint yet"
    warnings.warn(f"{run_dir}: {what}; starting again from step 0", stacklevel=3)
    return None


def remove_run_files(run_dir) -> None:
    """Delete what a run writes in `run_dir` (nothing else): config, metrics, checkpoints, temporaries."""
    run_dir = Path(run_dir)
    for name in (CONFIG, METRICS):
        (run_dir / name).unlink(missing_ok=True)
    folder = run_dir / CHECKPOINTS
    if folder.is_dir():
        for path in folder.iterdir():
            if _NAME.fullmatch(path.name) or path.name.endswith((".damaged", ".diverged", ".tmp")):
                path.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()
    remove_temporaries(run_dir)


def remove_temporaries(run_dir) -> None:
    """Delete temporary files left by a process killed mid-write (only ever called under the run lock)."""
    for folder in (Path(run_dir), Path(run_dir) / CHECKPOINTS):
        if folder.is_dir():
            for path in folder.glob(".*.tmp"):
                path.unlink(missing_ok=True)
