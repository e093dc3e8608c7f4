"""Memories plug in by name or by dotted path.

    @register_memory("epanechnikov")
    class Epanechnikov(KernelMemory):
        def log_kernel(self, sq_dist, beta):
            return torch.log(torch.clamp(1 - beta * sq_dist, min=0))

A registered memory is a `KernelMemory` subclass constructible without arguments. The property suite
(`tests/property/`) runs every claim of SPEC.md §1 on every registered memory, so a new variant is
tested as soon as it registers. Code outside the package plugs in with `get_memory("pkg.mod:Class")`
(or `"pkg.mod.Class"`) without registering.
"""

from __future__ import annotations

import importlib

_MEMORIES: dict[str, type] = {}
# Modules whose import registers the built-in memories; imported on first lookup.
_BUILTIN_MODULES = (
    "sandbox.memories.kernel_regression",
    "sandbox.memories.contextual",
    "sandbox.memories.persistent",
)


def register_memory(name: str):
    """Class decorator: make the memory available as `name`."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"memory name must be a Python identifier, got {name!r}")

    def decorate(cls):
        if name in _MEMORIES and _MEMORIES[name] is not cls:
            raise ValueError(f"memory name {name!r} is already registered by {_MEMORIES[name].__qualname__}")
        _MEMORIES[name] = cls
        cls.registry_name = name
        return cls

    return decorate


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:  # a real import error inside an existing module
                raise


def list_memories() -> list[str]:
    """Names of the registered memories, sorted."""
    _load_builtins()
    return sorted(_MEMORIES)


def get_memory(name_or_path: str) -> type:
    """The memory class registered as `name_or_path`, or importable from that dotted path."""
    if not isinstance(name_or_path, str):
        raise TypeError(f"memory must be a name or a dotted path, got {type(name_or_path).__name__}")
    _load_builtins()
    if name_or_path in _MEMORIES:
        return _MEMORIES[name_or_path]
    module_name, sep, attr = name_or_path.replace(":", ".").rpartition(".")
    if sep:
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError):
            pass
    raise ValueError(
        f"unknown memory {name_or_path!r}: registered memories are {list_memories()}; "
        "or give a dotted path such as 'mypackage.module:MyMemory'"
    )
