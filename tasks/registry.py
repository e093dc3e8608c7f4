"""Tasks by name: `register_task("bigram")` on a config dataclass; `get_task("bigram")` finds it."""

from __future__ import annotations

from sandbox.registry import Registry

TASKS = Registry("task")


def register_task(name: str):
    return TASKS.register(name)


def list_tasks() -> list[str]:
    return list(TASKS)


def get_task(name: str) -> type:
    return TASKS[name]
