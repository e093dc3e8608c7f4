"""`sandbox figures {all,three-moons,...} --preset {quick,paper} --out DIR`: reproduce the figures.

Computing writes results (JSON) first; plotting reads only those files. `--plot-only` redraws from
results already on disk. The wall time of each family is written beside its results.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from sandbox.io import write_json
from sandbox.validation import check_choice


def _families() -> dict:
    from figures import FAMILIES

    return FAMILIES


def add_arguments(parser) -> None:
    names = ["all", *_families()]
    parser.add_argument("family", choices=names, help="which figure family (all = every one)")
    parser.add_argument("--preset", default="quick",
                        help="tiny (tests), quick (a 2-core CPU, default) or paper (published settings)")
    parser.add_argument("--out", default="figures/out", help="output directory (default: figures/out)")
    parser.add_argument("--plot-only", action="store_true", help="redraw from saved results, no training")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args) -> int:
    families = _families()
    chosen = list(families) if args.family == "all" else [args.family]
    for name in chosen:
        module = importlib.import_module(families[name])
        check_choice(args.preset, "--preset", module.PRESETS)
        out = Path(args.out) / name
        if not args.plot_only:
            start = time.perf_counter()
            print(f"[{name}] computing with the {args.preset!r} preset -> {out}")
            module.compute(module.PRESETS[args.preset], out, progress=False if args.no_progress else None)
            write_json(out / "timing.json", {"preset": args.preset, "wall_seconds": time.perf_counter() - start})
        elif not out.exists():
            raise ValueError(f"--plot-only needs saved results in {out}; run without --plot-only first")
        for path in module.plot(out):
            print(f"[{name}] wrote {path}")
    return 0
