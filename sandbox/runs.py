"""Reading run directories back: the resolved config, the metric lines and the curves they make.

A run directory (written by `sandbox.train.train`) holds `config.json` and `metrics.jsonl`, one JSON
object per line with at least `step` and `split` ("train" or "val"). Everything downstream of
training — learning curves, sweep tables — reads runs through these functions alone.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

from sandbox.io import atomic_write


def check_run_dir(run_dir) -> Path:
    """`run_dir` as a Path, if it holds a metrics.jsonl; otherwise a ValueError naming what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist")
    if not (run_dir / "metrics.jsonl").exists():
        raise ValueError(f"{run_dir} is not a run directory: it has no metrics.jsonl")
    return run_dir


def read_metrics(run_dir, *, repair: bool = False, up_to_step: int | None = None) -> list[dict]:
    """The lines of `run_dir/metrics.jsonl` in order (those with step <= `up_to_step` if given).

    Each line is a JSON object with an integer `step` and a `split`; blank lines are skipped. A last line
    that is not JSON is a write in progress or cut short: left out with a warning. Any other damaged
    line is a ValueError naming the file and the line. The file is left as it is (the run may be live, as
    under `sandbox plot`) unless `repair=True`, which resume alone asks for: then the file is rewritten,
    atomically, to the lines returned.
    """
    path = check_run_dir(run_dir) / "metrics.jsonl"
    texts = path.read_text(encoding="utf-8", errors="replace").splitlines()
    kept, lines = [], []
    for number, text in enumerate(texts, start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as err:  # no proper prefix of a JSON object is JSON: a cut-short write
            if number == len(texts):
                warnings.warn(f"{path}, line {number}: " + ("torn (a write cut short); dropped it" if repair else
                              "incomplete (a write in progress or cut short); left out"), stacklevel=2)
                break
            raise ValueError(f"{path}, line {number}: not JSON ({err.msg}); repair or delete that line") from None
        if not (isinstance(line, dict) and "split" in line and type(line.get("step")) is int):
            raise ValueError(f"{path}, line {number}: a metrics line needs 'step' and 'split' (an integer step); "
                             "repair or delete that line")
        if up_to_step is None or line["step"] <= up_to_step:
            kept.append(text)
            lines.append(line)
    if repair and len(kept) != len(texts):
        atomic_write(path, lambda tmp: tmp.write_text("".join(text + "\n" for text in kept), encoding="utf-8"))
    return lines


def curves(run_dir) -> dict[str, dict[str, dict[str, list]]]:
    """{split: {metric: {"steps": [...], "values": [...]}}} for every finite numeric metric of the run."""
    out: dict[str, dict[str, dict[str, list]]] = {}
    for line in read_metrics(run_dir):
        for key, value in line.items():
            if key in ("step", "split") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            curve = out.setdefault(line["split"], {}).setdefault(key, {"steps": [], "values": []})
            curve["steps"].append(line["step"])
            curve["values"].append(float(value))
    return out


def final_metrics(run_dir, split: str = "val") -> dict:
    """The last `split` line of the run (its final evaluation), or {} if there is none."""
    rows = [line for line in read_metrics(run_dir) if line["split"] == split]
    return rows[-1] if rows else {}


def is_finished(run_dir, steps: int) -> bool:
    """True when the run reached `steps` and evaluated there (training ends with an evaluation)."""
    try:
        return final_metrics(run_dir).get("step") == steps
    except ValueError:
        return False
