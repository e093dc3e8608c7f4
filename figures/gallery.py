"""Write the gallery page `figures/README.md` from saved figure results.

    sandbox figures all --preset quick --out figures/out    # compute and draw (15.8 minutes measured on 2 cores)
    python -m figures.gallery --results figures/out          # copy the PNGs to figures/gallery/, rewrite the page
    python -m figures.gallery --results figures/out figures/out-paper   # several runs, e.g. quick and paper

For every family with results, the page shows its PNGs, the command that made them, the wall time
recorded beside the results, and a table of our numbers next to the published ones and, where the paper
gives no number, the target we hold the reproduction to (each module's `summary`).
The page is generated: edit this script or the modules, not the README.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
from pathlib import Path

from figures import FAMILIES
from sandbox.io import atomic_write

HERE = Path(__file__).resolve().parent


def family_section(name: str, results_dir: Path, images_dir: Path, page_dir: Path) -> str:
    module = importlib.import_module(FAMILIES[name])
    results = json.loads((results_dir / "results.json").read_text())
    timing = json.loads((results_dir / "timing.json").read_text())
    target = images_dir / name / timing["preset"]
    target.mkdir(parents=True, exist_ok=True)
    where = f"on {timing['machine']}" if "machine" in timing else "on the machine named above"
    jobs = f" --jobs {timing['jobs']}" if timing.get("jobs", 1) > 1 else ""
    lines = [f"## {name} ({timing['preset']} preset)", "", " ".join(module.__doc__.strip().split("\n\n")[0].split()), "",
             f"Made by `sandbox figures {name} --preset {timing['preset']}{jobs}` in "
             f"{timing['wall_seconds'] / 60:.1f} min of wall time {where}. Preset settings: "
             f"`{json.dumps(results['preset'], separators=(', ', ': '))}`.", ""]
    for png in sorted(results_dir.glob("*.png")):
        shutil.copyfile(png, target / png.name)
        lines += [f"![{png.stem}]({Path(os.path.relpath(target / png.name, page_dir)).as_posix()})", ""]
    lines += ["| quantity | ours | published | our target |", "| --- | --- | --- | --- |"]
    lines += [table_row(row) for row in module.summary(results)]
    if hasattr(module, "details"):  # a family's own text below its table (e.g. text samples)
        lines += ["", module.details(results)]
    return "\n".join(lines) + "\n"


def table_row(row: tuple) -> str:
    """A summary row (quantity, ours, published, our target) as a table line; a 3-tuple has no target."""
    if len(row) not in (3, 4):
        raise ValueError(f"a summary row is (quantity, ours, published[, our target]), got {row!r}")
    quantity, ours, published, target = (*row, "—") if len(row) == 3 else row
    return f"| {quantity} | {ours} | {published} | {target} |"


def build_page(results_roots: list[Path], images_dir: Path, page: Path) -> str:
    present = [root / name for name in FAMILIES for root in results_roots if (root / name / "results.json").exists()]
    if not present:
        shown = ", ".join(str(r) for r in results_roots)
        raise ValueError(f"--results: no figure results under {shown}; run `sandbox figures all` first")
    from sandbox.commands.figures import machine

    machine = machine()
    header = [
        "# Figures", "",
        "One script per published figure family (docs/), all training through the shared engine.",
        "Each figure is saved as PNG and PDF with the plotted numbers beside it as JSON; plotting reads only",
        "the saved results, so `sandbox figures all --plot-only --out figures/out` redraws without training.", "",
        "Presets: `tiny` (the tests, seconds), `quick` (a 2-core CPU), `paper` (the published settings; use a GPU).",
        "This page is written by `python -m figures.gallery --results figures/out ...` from saved results;",
        f"the images below are copies kept in `figures/gallery/`. This page was written on: {machine}; each",
        "section names the machine its results were computed on.", "",
        "In the tables, *published* quotes the papers' figures and numbers (docs/); *our target* is what",
        "we hold the reproduction to where the paper states no number; *ours* comes from the preset named in",
        "each section. The quick preset trains smaller",
        "models for fewer steps than the paper did: read its agreement in direction and ordering, not to the decimal.", "",
    ]
    missing = [name for name in FAMILIES if not any(path.name == name for path in present)]
    if missing:
        header += [f"Not on this page (no saved results): {', '.join(missing)}; `sandbox figures NAME --preset quick`",
                   "computes them, then run this script again.", ""]
    sections = [family_section(path.name, path, images_dir, page.parent) for path in present]
    return "\n".join(header) + "\n" + "\n".join(sections)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", nargs="+", default=["figures/out"],
                        help="--out directories of `sandbox figures` (each family's sections in this order)")
    parser.add_argument("--images", default=str(HERE / "gallery"), help="where the page's PNG copies go")
    parser.add_argument("--page", default=str(HERE / "README.md"), help="the page to write")
    args = parser.parse_args(argv)
    page = Path(args.page)
    text = build_page([Path(r) for r in args.results], Path(args.images), page)
    atomic_write(page, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
