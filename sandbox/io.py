"""Files written whole or not at all, with the permissions the umask asks for; one writer per directory.

`atomic_write` writes a temporary file beside the target and renames it over the target, so a reader
(or a run killed mid-write) never sees a half-written result, checkpoint or figure. `DirectoryLock`
keeps a second process out of a run directory while the first works in it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import socket
import time
import warnings
from pathlib import Path
from typing import Callable

try:
    import fcntl
except ImportError:  # Windows: the lock file alone records the holder; the OS does not enforce it
    fcntl = None


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, flush it to disk, then rename it over `path`.

    The temporary file is created with mode 0666 less the umask, like any file `open` creates, so the
    result has the permissions the user asked for (not the 0600 of `tempfile.mkstemp`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _finite_json(value):
    """JSON has no NaN or infinity: refuse them rather than write a file other tools cannot read."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"cannot write the non-finite number {value} to JSON")
    if isinstance(value, dict):
        return {str(k): _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return _finite_json(value.tolist())
    return value


def write_json(path: str | os.PathLike, data) -> Path:
    text = json.dumps(_finite_json(data), indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


class DirectoryLockedError(BlockingIOError):
    """Another live process holds the lock of a directory."""


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, it is someone else's
        return True
    except (OverflowError, ValueError):
        return False
    return True


class DirectoryLock:
    """An exclusive lock on `directory`, held in `directory/.lock` while the `with` block runs.

        with DirectoryLock(run_dir):
            ...  # no other process can enter this block for run_dir

    The lock file records the holder (pid, host, start time), so a second process is refused with a
    message naming it. Where `fcntl` exists the kernel holds the lock and drops it when the holder dies,
    however it dies; a lock file left behind by a dead process is then taken over with a warning. The
    file is removed on release. Without `fcntl`, a lock file whose process is alive on this host is
    respected and one whose process is gone is taken over, with the same warning.
    """

    NAME = ".lock"

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / self.NAME
        self._file = None

    def __enter__(self) -> "DirectoryLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        while True:  # the file may be unlinked by a releasing holder between our open and our lock
            f = open(self.path, "a+")
            try:
                if fcntl is not None:
                    try:
                        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        raise DirectoryLockedError(self._refusal(self._holder(f))) from None
                    if not self._still_linked(f):
                        f.close()
                        continue
                previous = self._holder(f)
                if previous and fcntl is None and previous.get("host") == socket.gethostname() \
                        and _process_alive(int(previous.get("pid", -1))):
                    raise DirectoryLockedError(self._refusal(previous))
            except BaseException:
                f.close()
                raise
            break
        if previous:
            warnings.warn(f"{self.path.parent}: taking over the stale lock of process {previous.get('pid')} on "
                          f"{previous.get('host')} (started {previous.get('started')}), which is no longer running",
                          stacklevel=3)
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "started": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is None:
            return
        self.path.unlink(missing_ok=True)  # before unlocking, so a waiter never locks a file we delete
        self._file.close()
        self._file = None

    def _still_linked(self, f) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            return False

    @staticmethod
    def _holder(f) -> dict:
        f.seek(0)
        try:
            holder = json.loads(f.read() or "{}")
        except json.JSONDecodeError:
            return {"pid": "?", "host": "?", "started": "?"}
        return holder if isinstance(holder, dict) else {}

    def _refusal(self, holder: dict) -> str:
        return (f"{self.path.parent} is in use by process {holder.get('pid', '?')} on {holder.get('host', '?')} "
                f"(since {holder.get('started', '?')}); wait for it to finish, or stop it, then try again")
