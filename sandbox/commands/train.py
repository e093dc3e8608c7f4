"""`sandbox train key=value ...`: train a model on a task; prints the run directory.

    sandbox train task=bigram model=mosaic model.d=128 train.steps=500
    sandbox train --config runs/x/config.json train.steps=2000     # a new run (a new default name)
    sandbox train --resume runs/x                                   # continue where it stopped
    sandbox train --resume runs/x train.lr=1e-4 train.steps=2000    # ... with a new schedule

A new run refuses a run directory that already holds one (unless --overwrite); --resume may change
only the schedule keys (sandbox.config.SCHEDULE_KEYS).
"""

from __future__ import annotations

from pathlib import Path

from sandbox.config import RunConfig, parse_overrides


def add_arguments(parser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="task=NAME, model=NAME, task.FIELD=, model.FIELD=, train.FIELD=, seed=, out=, name=")
    parser.add_argument("--config", help="start from a saved config.json")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its newest intact checkpoint (train.FIELD= "
                             "overrides may change its schedule: steps, lr, warm-up, decay, clipping, logging)")
    parser.add_argument("--out", help="parent directory for the run (same as out=DIR)")
    parser.add_argument("--overwrite", action="store_true", help="replace the run already in the run directory")


def resume_config(run_dir: Path, overrides: list[str]) -> RunConfig:
    """The saved config of `run_dir` with schedule overrides applied (train() checks which changed)."""
    if not run_dir.is_dir():
        raise ValueError(f"--resume {run_dir}: no such run directory")
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"--resume {run_dir}: not a run directory (it has no config.json)")
    moved = [item for item in overrides if item.partition("=")[0].strip() in ("out", "name")]
    if moved:
        raise ValueError(f"--resume continues the run in {run_dir}: {moved[0]} cannot move it")
    config = RunConfig.load(run_dir / "config.json")
    return parse_overrides([*overrides, f"out={run_dir.parent}", f"name={run_dir.name}"], config)


def _load(path: str) -> RunConfig:
    try:
        return RunConfig.load(path)
    except (ValueError, TypeError) as err:
        raise type(err)(f"--config {err}") from None


def run(args) -> int:
    from sandbox.train import train

    if args.resume:
        if args.config or args.out or args.overwrite:
            raise ValueError("--resume continues a run in place: give no --config, --out or --overwrite with it")
        config = resume_config(Path(args.resume), list(args.overrides))
    else:
        base = _load(args.config) if args.config else None
        config = parse_overrides(list(args.overrides) + ([f"out={args.out}"] if args.out else []), base)
    from sandbox import distributed

    try:
        result = train(config, resume=bool(args.resume), overwrite=args.overwrite)
    finally:
        distributed.teardown()
    if not distributed.is_main_process():  # torchrun: rank 0 reports
        return 0
    metrics = result.final_metrics
    summary = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
    print(f"run directory: {result.run_dir}")
    if args.resume and result.steps_trained == 0:
        print(f"the run had already finished at step {config.train.steps}: nothing to train "
              f"(resume with train.steps=N, N > {config.train.steps}, to train further)")
    if metrics:
        print(f"final validation metrics at step {metrics['step']}: {summary}")
    return 0
