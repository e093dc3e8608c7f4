"""Speed and memory measurements (`python -m bench.NAME`), written as JSON to `bench/results/`.

Targets live here, never in timed tests. Things compared are measured side by side in one process,
alternating, and reported as ratios: absolute times on a shared machine swing with its load.
"""
