"""Tasks by name: `register_task("bigram")` on a config dataclass; `get_task("bigram")` finds it."""

from __future__ import annotations

_TASKS: dict[str, type] = {}


def register_task(name: str):
    def decorate(cls):
        if name in _TASKS and _TASKS[name] is not cls:
            raise ValueError(f"task name {name!r} is already registered by {_TASKS[name].__qualname__}")
        _TASKS[name] = cls
        cls.name = name
        return cls

    return decorate


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str) -> type:
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; registered tasks are {list_tasks()}")
    return _TASKS[name]
