"""The documentation is self-contained: no file cites a document outside the repository, and every
`docs/` page the code or the docs name exists (so a reader who clones the project can follow them)."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Built from pieces so that this file does not match itself.
FORBIDDEN = ["SPEC" + ".md", "SPEC" + " §", "../" + "shared", "/work/" + "shared"]
SKIP_DIRS = {".git", ".venv", "out", "__pycache__", ".pytest_cache", ".hypothesis", "build"}
DOC_REFERENCE = re.compile(r"docs/([\w.-]+\.md)")
LINK = re.compile(r"\]\(([\w.-]+\.md)(?:#[\w-]*)?\)")


def tracked_text_files() -> list[Path]:
    """Files git tracks or would track (every file outside the build and cache folders when there is no git)."""
    try:
        names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True).stdout
        paths = [ROOT / name for name in names.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in ROOT.rglob("*") if not SKIP_DIRS & set(p.relative_to(ROOT).parts)]
    texts = []
    for path in paths:
        if path.is_file() and path.suffix not in {".png", ".pdf", ".pt"}:
            try:
                path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            texts.append(path)
    return texts


FILES = tracked_text_files()


def test_files_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in FILES}
    assert {"README.md", "docs/README.md", "sandbox/memories/kernel_regression.py"} <= names


def test_no_file_cites_a_document_outside_the_repository():
    offenders = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
                 for p in FILES for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if any(word in line for word in FORBIDDEN)]
    assert not offenders, "cite docs/ or the papers instead:\n" + "\n".join(offenders)


def test_every_cited_docs_page_exists():
    missing = sorted({f"{p.relative_to(ROOT)} -> docs/{name}" for p in FILES
                      for name in DOC_REFERENCE.findall(p.read_text(encoding="utf-8"))
                      if not (ROOT / "docs" / name).is_file()})
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_links_between_docs_pages_resolve(page):
    broken = [name for name in LINK.findall(page.read_text(encoding="utf-8")) if not (page.parent / name).is_file()]
    assert not broken, f"{page.name} links to missing pages: {broken}"


def test_docs_index_lists_every_page():
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert pages and all(f"({name})" in index for name in pages)
