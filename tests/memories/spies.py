"""Spies for the path tests: which function or kernel method a memory really called, in order."""

from __future__ import annotations


def record_calls(owner, names, set_attribute=setattr) -> list[str]:
    """Wrap each `owner.NAME` (a module's function or an object's method) so that a call appends NAME to
    the returned list, then runs the original. Pass `monkeypatch.setattr` as `set_attribute` for a module,
    so that the originals come back after the test."""
    calls: list[str] = []
    for name in names:
        def recorded(*args, _name=name, _original=getattr(owner, name), **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)
        set_attribute(owner, name, recorded)
    return calls
