"""`sandbox memories`: the registered memories and what each declares."""

from sandbox.registry import get_memory, list_memories


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    for name in list_memories():
        cls = get_memory(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        domain = "unit sphere" if cls.unit_sphere else "whole space"
        print(f"{name:<16} {cls.__module__}.{cls.__qualname__:<28} [{domain}] {doc}")
    return 0
