"""Trigger-bigram generation: the vectorised generator against the per-sequence reference loop.

    python -m bench.bigram_throughput [--repeats 7]

Target (issue 4): a 512×256 batch in under 35 ms on the CPU. The reference loop is timed on a few
sequences and scaled to 512 (it is linear in the batch size).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bench.common import save
from tasks.bigram import BigramConfig, reference_sequences


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--reference-sequences", type=int, default=16)
    args = parser.parse_args(argv)
    task = BigramConfig().build(0)
    task.batch("train", 0, 512)  # warm-up
    fast, reference = [], []
    for i in range(args.repeats):  # alternate the two, so that load changes hit both
        start = time.perf_counter()
        task.batch("train", i, 512)
        fast.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference_sequences(task, np.random.default_rng(i), args.reference_sequences)
        reference.append((time.perf_counter() - start) * 512 / args.reference_sequences)
    results = {
        "batch": [512, 256],
        "vectorised_seconds_median": statistics.median(fast), "vectorised_seconds_min": min(fast),
        "reference_seconds_median_scaled": statistics.median(reference),
        "speedup_median": statistics.median(reference) / statistics.median(fast),
        "target_seconds": 0.035, "meets_target": statistics.median(fast) < 0.035,
    }
    for k, v in results.items():
        print(f"{k:>34}: {v}")
    save("bigram_throughput", results)
    return results


if __name__ == "__main__":
    main()
