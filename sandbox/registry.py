"""Kernels (the retrieval rule of every memory) plug in by name or by dotted path.

    @register_kernel("epanechnikov")
    class Epanechnikov(Kernel):
        gives_up = {1: "compact support: no answer far from every key", ...}
        def log_kernel(self, sq_dist, beta):
            return torch.log(torch.clamp(1 - beta * sq_dist, min=0))

A registered kernel is a `Kernel` subclass constructible without arguments. Every module in
`sandbox/memories/` is imported on the first lookup, so a file dropped there registers its kernels;
modules named in the environment variable SANDBOX_MEMORY_MODULES (comma-separated) are imported too.
The property suite (`tests/property/`) runs every claim on every registered kernel (those it gives up
as strict expected failures), so a new variant is tested as soon as it registers. Code outside the
package can also be used without registering, by dotted path: `get_kernel("pkg.mod:Class")`.
"""

from __future__ import annotations

import importlib
import os
import pkgutil

class Registry:
    """Named classes of one kind (memories, tasks, models): `@registry.register("name")`, lookup, listing.

    Behaves as a read-only mapping from names to classes; `attribute` is set on each registered class
    to its name.
    """

    def __init__(self, kind: str, attribute: str = "name"):
        self.kind, self.attribute, self.entries = kind, attribute, {}

    def register(self, name: str):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{self.kind} name must be a Python identifier, got {name!r}")

        def decorate(cls):
            if name in self.entries and self.entries[name] is not cls:
                raise ValueError(f"{self.kind} name {name!r} is already registered by {self.entries[name].__qualname__}")
            self.entries[name] = cls
            setattr(cls, self.attribute, name)
            return cls

        return decorate

    def __getitem__(self, name: str) -> type:
        if name not in self.entries:
            raise ValueError(f"unknown {self.kind} {name!r}; registered {self.kind}s are {sorted(self.entries)}")
        return self.entries[name]

    def __contains__(self, name) -> bool:
        return name in self.entries

    def __iter__(self):
        return iter(sorted(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def pop(self, name: str, default=None):
        return self.entries.pop(name, default)


_KERNELS = Registry("kernel", attribute="registry_name")
_MEMORIES = _KERNELS  # the earlier name


def register_kernel(name: str):
    """Class decorator: make the kernel available as `name` (in configs: `model.kernel=name`)."""
    return _KERNELS.register(name)


def _load_builtins() -> None:
    """Import every module of sandbox.memories and those named in SANDBOX_MEMORY_MODULES."""
    import sandbox.memories as package

    names = [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    names += [m.strip() for m in os.environ.get("SANDBOX_MEMORY_MODULES", "").split(",") if m.strip()]
    for module in names:
        importlib.import_module(module)


def list_kernels() -> list[str]:
    """Names of the registered kernels, sorted."""
    _load_builtins()
    return list(_KERNELS)


def get_kernel(name_or_path: str) -> type:
    """The kernel class registered as `name_or_path`, or importable from that dotted path."""
    if not isinstance(name_or_path, str):
        raise TypeError(f"kernel must be a name or a dotted path, got {type(name_or_path).__name__}")
    _load_builtins()
    if name_or_path in _KERNELS:
        return _KERNELS[name_or_path]
    module_name, sep, attr = name_or_path.replace(":", ".").rpartition(".")
    if sep:
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError):
            pass
    raise ValueError(
        f"unknown kernel {name_or_path!r}: registered kernels are {list_kernels()}; "
        "or give a dotted path such as 'mypackage.module:MyKernel'"
    )


# The earlier names (a kernel was called a "memory"), kept so that existing variants still register.
register_memory, list_memories, get_memory = register_kernel, list_kernels, get_kernel
