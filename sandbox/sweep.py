"""Sweeps: a grid of overrides × seeds, each point a separate run, aggregated over seeds.

    sweep(["task=bigram", "train.steps=200"], {"model": ["mosaic", "gpt"]}, seeds=[0, 1, 2], out="runs/s")

Every run is planned (and its config validated) before any starts; runs whose directory already holds
a finished run of the same config are skipped, so an interrupted sweep is finished by running it again.
Runs go to a launcher: a local process pool (at most one worker per core) or, with the optional
`submitit` package, a SLURM array on a cluster (or submitit's local executor). A failed run does not
stop the others; failures are listed at the end. The final validation metrics of each point are
summarised over seeds as mean, sample standard deviation and a Student-t confidence interval.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from sandbox.analysis.seeds import t_interval
from sandbox.config import RunConfig, parse_overrides
from sandbox.validation import check_choice, check_int

LAUNCHERS = ("pool", "submitit")


@dataclass(frozen=True, eq=False)  # hashed by identity: one object per planned run
class PlannedRun:
    point: tuple[tuple[str, str], ...]  # the grid values of this run, ((key, value), ...)
    seed: int
    config: RunConfig

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.point) or "base"


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """`KEY=V1,V2,...` items -> {KEY: [V1, V2, ...]}. Values of a tuple field are separated by ';'."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, eq, values = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"--grid {item!r} must look like KEY=V1,V2 (e.g. model.d=32,64)")
        if key in ("seed", "out", "name"):
            raise ValueError(f"--grid cannot set {key!r}: seeds come from --seeds, directories from --out")
        if key in grid:
            raise ValueError(f"--grid names {key!r} twice")
        parts = [v.strip() for v in values.split(";" if ";" in values else ",")]
        if not all(parts):
            raise ValueError(f"--grid {item!r}: empty value")
        if len(set(parts)) != len(parts):
            raise ValueError(f"--grid {item!r}: a value is repeated")
        grid[key] = parts
    return grid


def expand_grid(grid: dict[str, list[str]]) -> list[tuple[tuple[str, str], ...]]:
    """Every combination of the grid's values, the first key varying slowest."""
    keys = list(grid)
    return [tuple(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def run_name(point, seed: int) -> str:
    parts = [f"{key}={value}".replace("/", "_").replace(",", "_").replace(" ", "") for key, value in point]
    return "_".join([*parts, f"seed={seed}"])


def plan(base: list[str], grid: dict[str, list[str]], seeds: list[int], out) -> list[PlannedRun]:
    """One validated RunConfig per (grid point, seed), each in its own directory under `out/runs`."""
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    for seed in seeds:
        check_int(seed, "--seeds", low=0)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: a seed is repeated in {seeds}")
    for item in base:
        if item.partition("=")[0].strip() in ("seed", "out", "name"):
            raise ValueError(f"override {item!r}: a sweep sets seed=, out= and name= itself (use --seeds, --out)")
    runs = []
    for point in expand_grid(grid):
        for seed in seeds:
            overrides = [*base, *(f"{k}={v}" for k, v in point), f"seed={seed}",
                         f"out={Path(out) / 'runs'}", f"name={run_name(point, seed)}"]
            try:
                config = parse_overrides(overrides)
            except (ValueError, TypeError) as err:
                where = ", ".join(f"{k}={v}" for k, v in point)
                raise type(err)(f"grid point {where or '(base)'}: {err}") from None
            runs.append(PlannedRun(point, seed, config))
    return runs


def is_done(run: PlannedRun) -> bool:
    """The run directory holds this exact config, trained to the end."""
    from sandbox.runs import is_finished

    saved = run.config.run_dir / "config.json"
    if not saved.exists():
        return False
    try:
        same = json.loads(saved.read_text()) == json.loads(json.dumps(run.config.to_dict()))
    except json.JSONDecodeError:
        return False
    return same and is_finished(run.config.run_dir, run.config.train.steps)


def train_one(config: dict, threads: int) -> dict:
    """Run one planned config (in a worker process); return its final validation metrics."""
    import torch

    from sandbox.train import train

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = train(RunConfig.from_dict(config), progress=False, overwrite=True)  # an unfinished run: again
    finally:
        torch.set_num_threads(before)  # run in this process (a serial sweep), it must not change the caller's
    return {k: v for k, v in result.final_metrics.items() if k != "split"}


def _failure(run: PlannedRun, err: BaseException) -> dict:
    lines = traceback.format_exception_only(type(err), err)
    return {"label": run.label, "seed": run.seed, "run_dir": str(run.config.run_dir), "error": "".join(lines).strip()}


def launch_pool(runs: list[PlannedRun], jobs: int, progress) -> tuple[dict, list]:
    """Run on a local process pool of `jobs` workers (spawned: each has its own torch threads)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // jobs)
    done, failed = {}, []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(train_one, run.config.to_dict(), threads): run for run in runs}
        for future in as_completed(futures):
            run = futures[future]
            try:
                done[run] = future.result()
            except Exception as err:  # noqa: BLE001 - one run's failure must not stop the sweep
                failed.append(_failure(run, err))
            progress(run)
    return done, failed


def launch_submitit(runs: list[PlannedRun], folder: Path, cluster: str, parameters: dict, progress) -> tuple[dict, list]:
    """Submit through submitit: a SLURM job array on a cluster, or its local/debug executors."""
    try:
        import submitit
    except ImportError:
        raise ValueError("--launcher submitit needs the submitit package: "
                         "pip install 'memory-mosaics-sandbox[cluster]'") from None
    executor = submitit.AutoExecutor(folder=str(folder), cluster=None if cluster == "auto" else cluster)
    executor.update_parameters(**parameters)
    threads = int(parameters.get("cpus_per_task", 1))
    with executor.batch():  # one array job on SLURM
        jobs = [(run, executor.submit(train_one, run.config.to_dict(), threads)) for run in runs]
    done, failed = {}, []
    for run, job in jobs:
        try:
            done[run] = job.result()
        except Exception as err:  # noqa: BLE001 - includes submitit's FailedJobError
            failed.append(_failure(run, err))
        progress(run)
    return done, failed


def aggregate(runs: list[PlannedRun], finals: dict, confidence: float = 0.95) -> list[dict]:
    """One row per grid point over its finished seeds:
    {"point", "label", "seeds", "metrics": {name: t_interval(...)}, "seed_values": {name: [value per seed]}}."""
    rows: dict[tuple, dict] = {}
    for run in runs:
        row = rows.setdefault(run.point, {"point": dict(run.point), "label": run.label, "seeds": [], "values": {}})
        if run not in finals:
            continue
        row["seeds"].append(run.seed)
        for metric, value in finals[run].items():
            if metric != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                row["values"].setdefault(metric, []).append(float(value))
    table = []
    for row in rows.values():
        row["seed_values"] = dict(sorted(row.pop("values").items()))
        row["metrics"] = {m: t_interval(v, confidence) for m, v in row["seed_values"].items()}
        table.append(row)
    return table


def format_stat(stat: dict) -> str:
    if stat["std"] is None:
        return f"{stat['mean']:.4g}"
    return f"{stat['mean']:.4g} ± {stat['std']:.2g} [{stat['ci_low']:.4g}, {stat['ci_high']:.4g}]"


def markdown_table(table: list[dict], metrics: list[str] | None = None) -> str:
    """The aggregated table as Markdown: mean ± std [confidence interval] per metric."""
    names = metrics or sorted({m for row in table for m in row["metrics"]})
    confidence = next((s["confidence"] for row in table for s in row["metrics"].values()), 0.95)
    head = ["grid point", "seeds", *names]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in table:
        cells = [format_stat(row["metrics"][m]) if m in row["metrics"] else "—" for m in names]
        lines.append("| " + " | ".join([row["label"], str(len(row["seeds"])), *cells]) + " |")
    lines.append(f"\nmean ± sample standard deviation [{confidence:.0%} Student-t interval of the mean] over seeds")
    return "\n".join(lines) + "\n"


def plot_sweep(table: list[dict], grid: dict[str, list[str]], stem, metrics: list[str] | None = None):
    """One panel per metric: each point's seeds as dots, the mean with its confidence interval as an error bar."""
    from sandbox.plotting import plt, save_figure

    names = metrics or sorted({m for row in table for m in row["metrics"]})
    numeric = len(grid) == 1 and all(_is_number(v) for v in next(iter(grid.values()), []))
    xs = [float(row["label"].split("=", 1)[1]) if numeric else i for i, row in enumerate(table)]
    columns = min(3, max(len(names), 1))
    rows = max(1, -(-len(names) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.6 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, names):
        for x, row in zip(xs, table):
            stat = row["metrics"].get(metric)
            if stat is None:
                continue
            if stat["std"] is not None:
                ax.errorbar([x], [stat["mean"]], yerr=[[stat["mean"] - stat["ci_low"]], [stat["ci_high"] - stat["mean"]]],
                            fmt="o", color="C0", capsize=4)
            else:
                ax.plot([x], [stat["mean"]], "o", color="C0")
        for x, row in zip(xs, table):  # every seed, drawn faint
            values = row["seed_values"].get(metric, [])
            ax.plot([x] * len(values), values, ".", color="0.5", alpha=0.6)
        if numeric:
            key = next(iter(grid))
            positive = [x for x in xs if x > 0]
            if len(positive) == len(xs) and max(xs) >= 10 * min(xs):
                ax.set_xscale("log")
            ax.set_xticks(xs, [row["label"].split("=", 1)[1] for row in table])
            ax.set_xlabel(key)
        else:
            ax.set_xticks(xs, [row["label"] for row in table], rotation=30, ha="right", fontsize=7)
        ax.set_title(metric)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.tight_layout()
    return save_figure(fig, stem, {"grid": grid, "table": table})


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def sweep(base: list[str], grid: dict[str, list[str]], seeds: list[int], out, *, launcher: str = "pool",
          jobs: int | None = None, cluster: str = "auto", parameters: dict | None = None,
          confidence: float = 0.95, metrics: list[str] | None = None, progress: bool | None = None) -> dict:
    """Plan, launch what is not finished, aggregate and plot. Returns the summary written to out/sweep.json."""
    from tqdm.auto import tqdm

    from sandbox.io import atomic_write, write_json
    from sandbox.runs import final_metrics

    check_choice(launcher, "--launcher", LAUNCHERS)
    cores = os.cpu_count() or 1
    jobs = cores if jobs is None else jobs
    check_int(jobs, "--jobs", low=1, high=cores)
    out = Path(out)
    runs = plan(base, grid, seeds, out)
    todo = [run for run in runs if not is_done(run)]
    skipped = len(runs) - len(todo)
    print(f"sweep: {len(runs)} runs ({len(expand_grid(grid))} grid points × {len(seeds)} seeds), "
          f"{skipped} already finished, {len(todo)} to run with the {launcher} launcher")
    bar = tqdm(total=len(todo), desc="sweep", disable=not (sys.stderr.isatty() if progress is None else progress))
    if not todo:
        failed = []
    elif launcher == "pool":
        _, failed = launch_pool(todo, min(jobs, len(todo)), lambda run: bar.update())
    else:
        _, failed = launch_submitit(todo, out / "submitit", cluster, parameters or {}, lambda run: bar.update())
    bar.close()
    failed_dirs = {f["run_dir"] for f in failed}
    finals = {run: final_metrics(run.config.run_dir) for run in runs
              if str(run.config.run_dir) not in failed_dirs and is_done(run)}
    table = aggregate(runs, finals, confidence)
    summary = {"base": base, "grid": grid, "seeds": seeds, "launcher": launcher, "confidence": confidence,
               "runs": [{"label": r.label, "seed": r.seed, "run_dir": str(r.config.run_dir),
                         "status": "finished" if r in finals else "failed"} for r in runs],
               "skipped": skipped, "failed": failed, "table": table}
    write_json(out / "sweep.json", summary)
    text = markdown_table(table, metrics)
    atomic_write(out / "table.md", lambda tmp: tmp.write_text(text))
    if finals:
        plot_sweep(table, grid, out / "sweep", metrics)
    print(text)
    if failed:
        print(f"{len(failed)} of {len(runs)} runs failed:")
        for f in failed:
            print(f"  {f['label']} seed {f['seed']} ({f['run_dir']}): {f['error']}")
    return summary
