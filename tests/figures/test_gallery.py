"""The gallery page: built from saved results, links copied PNGs, one table row per summary line."""

import json

import pytest

from figures import gallery, three_moons
from figure_helpers import run_tiny


@pytest.fixture(scope="module")
def results_root(tmp_path_factory):
    return run_tiny(tmp_path_factory, "three-moons").parent


def test_page_shows_each_picture_and_the_numbers_table(results_root, tmp_path):
    page, images = tmp_path / "README.md", tmp_path / "gallery"
    assert gallery.main(["--results", str(results_root), "--images", str(images), "--page", str(page)]) == 0
    text = page.read_text()
    pictures = sorted(p.name for p in (results_root / "three-moons").glob("*.png"))
    assert len(pictures) == 3
    for name in pictures:
        assert (images / "three-moons" / "tiny" / name).stat().st_size > 0
        assert f"(gallery/three-moons/tiny/{name})" in text
    rows = three_moons.summary(json.loads((results_root / "three-moons" / "results.json").read_text()))
    assert "| quantity | ours | published | our target |" in text
    for quantity, ours, published, target in rows:
        assert f"| {quantity} | {ours} | {published} | {target} |" in text
    assert "--preset tiny" in text and "min of wall time" in text
    from sandbox.commands.figures import machine

    timing = json.loads((results_root / "three-moons" / "timing.json").read_text())
    assert timing["machine"] == machine() and f"min of wall time on {machine()}." in text  # where it was computed
    assert "## induction-heads" not in text  # families without results are left out, and named as such
    from figures import FAMILIES

    others = ", ".join(name for name in FAMILIES if name != "three-moons")
    assert f"Not on this page (no saved results): {others};" in text


def test_no_results_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--results: no figure results"):
        gallery.build_page([tmp_path], tmp_path / "images", tmp_path / "README.md")


def test_rows_without_a_target_get_a_dash_and_bad_rows_are_refused():
    assert gallery.table_row(("q", "1", "2")) == "| q | 1 | 2 | — |"
    assert gallery.table_row(("q", "1", "—", "≥ 3")) == "| q | 1 | — | ≥ 3 |"
    with pytest.raises(ValueError, match="summary row"):
        gallery.table_row(("q", "1"))
