"""Run a test module's functions where pytest is not installed (a borrowed GPU machine, for one).

    python3 bench/run_tests_plainly.py tests/test_device.py

Supports what the device tests use: `pytest.mark.skipif`, `pytest.raises(match=)`, and the `tmp_path`
and `monkeypatch` fixtures. Prints one line per test and `N passed, N failed, N skipped`; exits 1 on
any failure. Where pytest exists, use it instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import re
import sys
import tempfile
import traceback
import types
from pathlib import Path


class Skip(Exception):
    pass


class MonkeyPatch:
    def __init__(self):
        self.undo = []

    def setattr(self, target, name, value):
        self.undo.append((target, name, getattr(target, name)))
        setattr(target, name, value)

    def restore(self):
        for target, name, value in reversed(self.undo):
            setattr(target, name, value)


@contextlib.contextmanager
def raises(kind, match=None):
    try:
        yield
    except kind as err:
        if match is not None and not re.search(match, str(err)):
            raise AssertionError(f"{kind.__name__} raised, but {match!r} not found in {str(err)!r}") from err
    else:
        raise AssertionError(f"{kind.__name__} was not raised")


def stub_pytest() -> types.ModuleType:
    module = types.ModuleType("pytest")

    def skipif(condition, reason=""):
        def mark(fn):
            fn._skip = reason if condition else None
            return fn
        return mark

    module.mark = types.SimpleNamespace(skipif=skipif, slow=lambda fn: fn)
    module.raises = raises
    module.skip = lambda reason="": (_ for _ in ()).throw(Skip(reason))
    return module


def main(path: str) -> int:
    sys.modules.setdefault("pytest", stub_pytest())
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if not name.startswith("test_") or fn.__module__ != module.__name__:
            continue
        if getattr(fn, "_skip", None):
            print(f"SKIPPED {name}: {fn._skip}")
            counts["skipped"] += 1
            continue
        patch = MonkeyPatch()
        with tempfile.TemporaryDirectory() as tmp:
            fixtures = {"tmp_path": Path(tmp), "monkeypatch": patch}
            try:
                fn(**{p: fixtures[p] for p in inspect.signature(fn).parameters})
                print(f"PASSED {name}")
                counts["passed"] += 1
            except Skip as skip:
                print(f"SKIPPED {name}: {skip}")
                counts["skipped"] += 1
            except Exception:  # noqa: BLE001 - report and go on
                print(f"FAILED {name}\n{traceback.format_exc()}")
                counts["failed"] += 1
            finally:
                patch.restore()
    print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
