"""Independent runs on a local process pool: a figure family's seeds, a tuning grid.

`map_processes(fn, calls, jobs)` gives `[fn(*call) for call in calls]`, in order. With `jobs == 1` the
calls run here, one after the other; otherwise on `jobs` spawned processes (no more than there are
calls), each with its share of the cores as torch threads (so that the processes do not each start one
thread per core). `fn` and the
arguments must be picklable: a module-level function and plain data (a config as a dict, not a lambda).
"""

from __future__ import annotations

import os


def _use_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def map_processes(fn, calls: list[tuple], jobs: int = 1) -> list:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    if jobs == 1:
        return [fn(*call) for call in calls]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = min(jobs, max(len(calls), 1))
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_use_threads, initargs=(threads,)) as pool:
        return list(pool.map(fn, *zip(*calls))) if calls else []
