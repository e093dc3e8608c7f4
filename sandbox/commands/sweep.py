"""`sandbox sweep KEY=VALUE... --grid KEY=V1,V2 --seeds 0,1,2 --out DIR`: a grid of runs × seeds.

    sandbox sweep task=bigram model=mosaic train.steps=300 --grid model.d=32,64 --seeds 0,1,2 --out runs/d
    sandbox sweep task=bigram --grid model=mosaic,gpt --seeds 0-4 --launcher submitit \\
        --cluster slurm --slurm-partition gpu --gpus-per-node 1 --timeout-min 60 --out runs/cmp

Plain KEY=VALUE arguments apply to every run; each `--grid` adds an axis (a tuple field's values are
separated by ';', e.g. "train.betas=0.9,0.99;0.9,0.95"). Runs land in DIR/runs/<point>_seed=<s>;
finished ones are skipped, so running the same command again completes an interrupted sweep. At the
end: DIR/table.md (mean ± std [confidence interval] over seeds), DIR/sweep.json, DIR/sweep.png/.pdf.
The exit status is 1 when a run failed (each failure is listed), 0 otherwise.
"""

from __future__ import annotations

import os


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' (inclusive) or a mix: '0-2,7'."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            seeds += list(range(int(low), int(high) + 1)) if dash else [int(part)]
        except ValueError:
            raise ValueError(f"--seeds must look like 0,1,2 or 0-4, got {text!r}") from None
    return seeds


def add_arguments(parser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides applied to every run")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="one axis of the grid (repeat for more axes)")
    parser.add_argument("--seeds", default="0", help="seeds of every grid point: 0,1,2 or 0-4 (default: 0)")
    parser.add_argument("--out", default="runs/sweep", help="sweep directory (default: runs/sweep)")
    parser.add_argument("--launcher", default="pool", choices=["pool", "submitit"],
                        help="pool: local processes (default); submitit: SLURM array or submitit's local executor")
    parser.add_argument("--jobs", type=int, help=f"pool workers (default and maximum: the core count, {os.cpu_count()})")
    parser.add_argument("--metrics", help="comma-separated metrics for the table and plot (default: all)")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level of the interval (default 0.95)")
    group = parser.add_argument_group("submitit launcher")
    group.add_argument("--cluster", default="auto", choices=["auto", "slurm", "local", "debug"],
                       help="auto: SLURM where sbatch exists, else local processes")
    group.add_argument("--timeout-min", type=int, default=60, help="time limit of each run in minutes")
    group.add_argument("--slurm-partition", help="SLURM partition")
    group.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per run")
    group.add_argument("--cpus-per-task", type=int, default=1, help="CPU cores per run (torch threads)")
    group.add_argument("--array-parallelism", type=int, default=32, help="most array tasks running at once on SLURM")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    from sandbox.sweep import parse_grid, sweep

    parameters = {"timeout_min": args.timeout_min, "gpus_per_node": args.gpus_per_node,
                  "cpus_per_task": args.cpus_per_task, "slurm_array_parallelism": args.array_parallelism}
    if args.slurm_partition:
        parameters["slurm_partition"] = args.slurm_partition
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    summary = sweep(args.overrides, parse_grid(args.grid), parse_seeds(args.seeds), args.out,
                    launcher=args.launcher, jobs=args.jobs, cluster=args.cluster, parameters=parameters,
                    confidence=args.confidence, metrics=metrics, progress=False if args.no_progress else None)
    return 1 if summary["failed"] else 0
