"""`sandbox notebooks`: rebuild the teaching notebooks from their sources and execute them.

    sandbox notebooks              # every notebooks/NN_*.py -> NN_*.ipynb, executed, outputs stored
    sandbox notebooks 01 03        # only these lessons
    sandbox notebooks --check      # only compare: exit 1 if a notebook's cells differ from its source

A lesson is written as `notebooks/NN_name.py` in the percent format (`# %%` cells: clean diffs, easy
review) and stored beside it as `notebooks/NN_name.ipynb` with its outputs (plots inline, numbers
printed), so it reads on GitHub without running and opens in Jupyter, VS Code or a hosted service.
Execution goes through a real Jupyter kernel (nbclient + ipykernel, matplotlib's inline backend), in
the notebooks folder. Needs the `notebooks` extra (`pip install -e '.[notebooks]'`, which
`python3.11 bootstrap.py test` installs); it is imported only when this command runs.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
CELL_TIMEOUT_S = 600


def _jupyter():
    try:
        import jupytext
        import nbclient
        import nbformat
    except ImportError as err:
        raise ImportError(f"{err.name} is missing: install the notebooks extra, "
                          "pip install -e '.[notebooks]' (python3.11 bootstrap.py test installs it)") from err
    return jupytext, nbclient, nbformat


def sources(directory: Path, names: list[str] | None = None) -> list[Path]:
    """The lesson sources `NN_*.py` in `directory`, all or those whose name starts with one of `names`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"notebooks directory {str(directory)!r} does not exist")
    found = sorted(directory.glob("[0-9][0-9]_*.py"))
    if names:
        unknown = [n for n in names if not any(p.stem.startswith(n) for p in found)]
        if unknown:
            raise ValueError(f"no notebook source starts with {unknown}; have {[p.stem for p in found]}")
        found = [p for p in found if any(p.stem.startswith(n) for n in names)]
    return found


def read_source(path: Path):
    """The notebook (cells without outputs) that a percent-format source describes."""
    jupytext, _, _ = _jupyter()
    nb = jupytext.read(path, fmt="py:percent")
    nb.metadata = {"kernelspec": dict(KERNEL), "language_info": {"name": "python"}}
    return nb


def cells(nb) -> list[tuple[str, str]]:
    """(cell type, source) of every cell: what a notebook and its source must agree on."""
    return [(cell.cell_type, cell.source.strip()) for cell in nb.cells]


def differences(source: Path) -> list[str]:
    """Why `source` and its stored notebook disagree (empty when they agree)."""
    _, _, nbformat = _jupyter()
    stored_path = source.with_suffix(".ipynb")
    if not stored_path.is_file():
        return [f"{stored_path.name} is missing"]
    want, have = cells(read_source(source)), cells(nbformat.read(stored_path, as_version=4))
    if len(want) != len(have):
        return [f"{stored_path.name} has {len(have)} cells, {source.name} has {len(want)}"]
    return [f"{stored_path.name} cell {i}: differs from {source.name}" for i, (w, h) in enumerate(zip(want, have)) if w != h]


def kernel_env() -> dict:
    """The kernel's environment: without MPLBACKEND (bootstrap sets Agg), so plots show inline."""
    return {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}


def execute(nb, cwd: Path, *, timeout: int = CELL_TIMEOUT_S):
    """Run every cell of `nb` in place through a fresh Jupyter kernel; a failing cell raises
    nbclient's CellExecutionError naming the cell."""
    _, nbclient, _ = _jupyter()
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name=KERNEL["name"], record_timing=False,
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute(env=kernel_env())
    return nb


def build(source: Path) -> tuple[float, float]:
    """Execute `source` and store it as a notebook with outputs beside it; (wall seconds, CPU seconds
    of the kernel): the CPU time is the fairer measure on a loaded machine."""
    _, _, nbformat = _jupyter()
    nb = read_source(source)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    execute(nb, source.parent)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel has exited and been waited for
    nbformat.write(nb, source.with_suffix(".ipynb"))
    return seconds, (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime)


def add_arguments(parser) -> None:
    parser.add_argument("names", nargs="*", help="lesson numbers or name prefixes (default: all)")
    parser.add_argument("--dir", default="notebooks", help="folder of the notebook sources (default: notebooks)")
    parser.add_argument("--check", action="store_true",
                        help="do not execute: exit 1 if a stored notebook's cells differ from its source")


def run(args) -> int:
    found = sources(Path(args.dir), args.names)
    if args.check:
        problems = [line for source in found for line in differences(source)]
        print("\n".join(problems) if problems else f"{len(found)} notebooks agree with their sources")
        return 1 if problems else 0
    for source in found:
        wall, cpu = build(source)
        print(f"{source.with_suffix('.ipynb')}: executed in {wall:.1f} s (kernel CPU {cpu:.1f} s)", flush=True)
    return 0
