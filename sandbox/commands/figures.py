"""`sandbox figures {all,three-moons,...} --preset {quick,paper} --out DIR`: reproduce the figures.

Computing writes results (JSON) first; plotting reads only those files. `--plot-only` redraws from
results already on disk. The wall time of each family is written beside its results.
`--seeds 0,1,2` (or 0-4) replaces the preset's seeds in every family that takes them (see
`figures/__init__.py`); its figures then show the spread over seeds.
"""

from __future__ import annotations

import importlib
import inspect
import time
from pathlib import Path

from sandbox.io import write_json
from sandbox.validation import check_choice


def _families() -> dict:
    from figures import FAMILIES

    return FAMILIES


def machine() -> str:
    """The machine a figure was computed on, as the gallery prints it: CPU, cores, Python, torch, GPU."""
    import os
    import platform

    import torch

    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}{gpu}")


def add_arguments(parser) -> None:
    names = ["all", *_families()]
    parser.add_argument("family", choices=names, help="which figure family (all = every one)")
    parser.add_argument("--preset", default="quick",
                        help="tiny (tests), quick (a 2-core CPU, default) or paper (published settings)")
    parser.add_argument("--out", default="figures/out", help="output directory (default: figures/out)")
    parser.add_argument("--plot-only", action="store_true", help="redraw from saved results, no training")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--seeds", help="seeds to run and show the spread over: 0,1,2 or 0-4 (default: the preset's)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train a family's independent runs on this many processes, where the family's "
                             "compute takes `jobs` (default: 1, one after the other)")


def _plot_saved(module, out: Path) -> list[Path]:
    """Redraw from the results in `out`; missing or damaged results are an error naming the directory."""
    if not out.is_dir():
        raise ValueError(f"--plot-only needs saved results in {out}; run without --plot-only first")
    try:
        return module.plot(out)
    except (OSError, ValueError, TypeError, KeyError, IndexError) as err:
        what = f"{type(err).__name__}: {err}" if isinstance(err, (KeyError, IndexError)) else err
        raise ValueError(f"--plot-only: the results in {out} are missing or damaged ({what}); "
                         "run without --plot-only to compute them again") from err


def run(args) -> int:
    families = _families()
    from sandbox.commands.sweep import parse_seeds

    chosen = list(families) if args.family == "all" else [args.family]
    seeds = parse_seeds(args.seeds) if args.seeds else None
    if seeds is not None and (len(set(seeds)) != len(seeds) or min(seeds) < 0):
        raise ValueError(f"--seeds must be distinct integers >= 0, got {args.seeds!r}")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be a positive integer, got {args.jobs}")
    for name in chosen:
        module = importlib.import_module(families[name])
        check_choice(args.preset, "--preset", module.PRESETS)
        preset = module.PRESETS[args.preset]
        if seeds is not None:
            if "seeds" in preset:
                preset = {**preset, "seeds": seeds}
            elif args.family != "all":
                raise ValueError(f"--seeds: the {name} family does not take seeds (its presets have no 'seeds')")
            else:
                print(f"[{name}] does not take --seeds: one seed")
        out = Path(args.out) / name
        if not args.plot_only and hasattr(module, "tuning_runs"):
            from figures.tune import warn_if_changed

            warn_if_changed(name, args.preset, module, preset)
        if not args.plot_only:
            start = time.perf_counter()
            print(f"[{name}] computing with the {args.preset!r} preset -> {out}")
            progress = False if args.no_progress else None
            if "jobs" in inspect.signature(module.compute).parameters:
                module.compute(preset, out, progress=progress, jobs=args.jobs)
            else:
                if args.jobs > 1:
                    print(f"[{name}] runs its models one after the other (its compute takes no --jobs)")
                module.compute(preset, out, progress=progress)
            write_json(out / "timing.json", {"preset": args.preset, "wall_seconds": time.perf_counter() - start,
                                             "machine": machine(), "jobs": args.jobs})
            paths = module.plot(out)
        else:
            paths = _plot_saved(module, out)
        for path in paths:
            print(f"[{name}] wrote {path}")
    return 0
