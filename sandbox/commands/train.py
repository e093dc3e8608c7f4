"""`sandbox train key=value ...`: train a model on a task; prints the run directory.

    sandbox train task=bigram model=mosaic model.d=128 train.steps=500
    sandbox train --config runs/x/config.json train.steps=2000
    sandbox train --resume runs/x
"""

from __future__ import annotations

from pathlib import Path

from sandbox.config import RunConfig, parse_overrides


def add_arguments(parser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="task=NAME, model=NAME, task.FIELD=, model.FIELD=, train.FIELD=, seed=, out=, name=")
    parser.add_argument("--config", help="start from a saved config.json")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its checkpoint")
    parser.add_argument("--out", help="parent directory for the run (same as out=DIR)")


def run(args) -> int:
    from sandbox.train import train

    overrides = list(args.overrides) + ([f"out={args.out}"] if args.out else [])
    if args.resume:
        if args.config or args.overrides:
            raise ValueError("--resume continues a run exactly as configured: give no --config or overrides")
        run_dir = Path(args.resume)
        config = RunConfig.load(run_dir / "config.json")
        config = parse_overrides([f"out={run_dir.parent}", f"name={run_dir.name}"], config)
    else:
        base = RunConfig.load(args.config) if args.config else None
        config = parse_overrides(overrides, base)
    result = train(config, resume=bool(args.resume))
    summary = ", ".join(f"{k} {v:.4g}" for k, v in result.final_metrics.items() if isinstance(v, float))
    print(f"run directory: {result.run_dir}")
    print(f"final validation metrics at step {result.final_metrics.get('step')}: {summary}")
    return 0
