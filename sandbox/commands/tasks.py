"""`sandbox tasks`: the registered tasks, their fields and defaults."""

import dataclasses

from tasks import get_task, list_tasks


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    for name in list_tasks():
        config = get_task(name)
        fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(config))
        print(f"{name:<18} {fields}")
    return 0
