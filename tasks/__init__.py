"""Task generators, one file each (docs/): seeded, vectorised batch streams and their metrics."""

from tasks import bigram, disentangle, recall, regular_languages, text, three_moons  # noqa: F401  (importing a task module registers it)
from tasks.base import Batch, Task
from tasks.registry import get_task, list_tasks, register_task

__all__ = ["Batch", "Task", "get_task", "list_tasks", "register_task"]
