"""Atomic files: a failed write leaves the old file intact and no temporary behind."""

import math

import pytest

from sandbox.io import atomic_write, write_json


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("old")

    def half_write(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_write)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.txt"]


def test_write_json_refuses_non_finite_numbers(tmp_path):
    with pytest.raises(ValueError, match="non-finite"):
        write_json(tmp_path / "x.json", {"a": [1.0, math.nan]})
    assert not (tmp_path / "x.json").exists()


def test_write_json_converts_arrays(tmp_path):
    import numpy as np

    path = write_json(tmp_path / "sub" / "x.json", {"a": np.arange(3), "b": np.float64(0.5)})
    assert path.read_text().replace(" ", "").replace("\n", "") == '{"a":[0,1,2],"b":0.5}'
