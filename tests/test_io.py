"""Atomic files: a failed write leaves the old file intact and no temporary behind; files follow the
umask; one process at a time holds a directory lock."""

import json
import math
import os
import signal
import socket
import stat
import subprocess
import sys

import pytest

from sandbox.io import DirectoryLock, DirectoryLockedError, atomic_write, write_json


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


@pytest.fixture
def umask():
    """Set the process umask for one test; restore it afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_follow_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    assert stat.S_IMODE(write_json(tmp_path / "a.json", {"a": 1}).stat().st_mode) == mode
    assert stat.S_IMODE(atomic_write(tmp_path / "b.bin", lambda tmp: tmp.write_bytes(b"x")).stat().st_mode) == mode


def test_lock_refuses_a_second_holder_naming_the_first(tmp_path):
    with DirectoryLock(tmp_path):
        holder = json.loads((tmp_path / ".lock").read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(DirectoryLockedError, match=rf"{tmp_path} is in use by process {os.getpid()} on "
                                                       rf"{socket.gethostname()} \(since .*\); wait for it"):
            DirectoryLock(tmp_path).acquire()
    assert not (tmp_path / ".lock").exists()  # released: removed
    with DirectoryLock(tmp_path):  # and free again
        pass


HOLD = """
import sys, time
from sandbox.io import DirectoryLock
lock = DirectoryLock(sys.argv[1]); lock.acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_live_process_holds_the_lock_and_a_killed_one_leaves_a_stale_lock_to_take_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DirectoryLockedError, match=rf"in use by process {holder.pid} on"):
            DirectoryLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid  # left behind by the dead process
    with pytest.warns(UserWarning, match=rf"taking over the stale lock of process {holder.pid} on .* no longer running"):
        lock = DirectoryLock(tmp_path)
        lock.acquire()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    lock.release()
