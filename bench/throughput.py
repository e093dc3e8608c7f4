"""Training throughput and memory: Memory Mosaic against GPT at equal parameter count (issue 3).

    python -m bench.throughput            # d=256, 4 layers, T=256 and 1024; forward memory at 4096, 16384
    python -m bench.throughput --quick    # a fast sanity run

Training tokens/s of both models are measured in this one process, alternating model by model and
repetition by repetition, and reported as a ratio (absolute numbers on a shared CPU swing with load).
Peak memory is measured in a fresh subprocess per measurement: on CPU the growth of the peak resident
set over the process's size just before the pass; on CUDA torch.cuda.max_memory_allocated.
Targets: mosaic >= 0.9x GPT tokens/s; a T=16384 mosaic forward (d=256, batch 1) under 2 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from bench.common import save
from sandbox.device import resolve_device
from sandbox.models import GPTConfig, MosaicConfig, num_parameters

VOCAB = 65


def make(name: str, d: int, layers: int, max_len: int, device):
    torch.manual_seed(0)
    config = MosaicConfig(d=d, layers=layers) if name == "mosaic" else GPTConfig(d=d, layers=layers, max_len=max_len)
    return config.build(vocab_size=VOCAB, max_len=max_len).to(device)


def train_step_seconds(model, optimizer, tokens: torch.Tensor) -> float:
    start = time.perf_counter()
    logits = model(tokens[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if tokens.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def throughput(d: int, layers: int, length: int, tokens_per_batch: int, repeats: int, device) -> dict:
    batch = max(1, tokens_per_batch // length)
    data = torch.randint(VOCAB, (batch, length + 1), generator=torch.Generator().manual_seed(0)).to(device)
    models = {name: make(name, d, layers, length, device) for name in ("mosaic", "gpt")}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for name in models:  # warm-up
        train_step_seconds(models[name], optimizers[name], data)
    for r in range(repeats):
        order = ("mosaic", "gpt") if r % 2 == 0 else ("gpt", "mosaic")
        for name in order:
            times[name].append(train_step_seconds(models[name], optimizers[name], data))
    result = {"T": length, "batch": batch, "parameters": {n: num_parameters(m) for n, m in models.items()},
              "non_embedding_parameters": {n: num_parameters(m, embeddings=False) for n, m in models.items()}}
    for name, ts in times.items():
        result[f"{name}_tokens_per_second"] = batch * length / statistics.median(ts)
    result["ratio_mosaic_over_gpt"] = result["mosaic_tokens_per_second"] / result["gpt_tokens_per_second"]
    # Pairwise ratios per repetition show how stable the comparison is under load.
    pairs = [g / m for m, g in zip(times["mosaic"], times["gpt"])]
    result["ratio_per_repeat"] = pairs
    return result


def resident_bytes(field: str) -> int:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, from /proc (Linux)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # elsewhere: the lifetime peak


def reset_peak_resident() -> None:
    """Reset the kernel's high-water mark so that VmHWM measures only what follows (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_child(kind: str, name: str, d: int, layers: int, length: int, batch: int) -> dict:
    """Run in a fresh process: peak memory of one forward (or training step) above the baseline."""
    device = resolve_device("auto")
    model = make(name, d, layers, length, device)
    data = torch.randint(VOCAB, (batch, length + 1), generator=torch.Generator().manual_seed(0)).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resident_bytes("VmRSS")
        reset_peak_resident()
    if kind == "forward":
        with torch.no_grad():
            model(data[:, :-1])
    else:
        train_step_seconds(model, torch.optim.AdamW(model.parameters(), lr=1e-4), data)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resident_bytes("VmHWM")
    return {"kind": kind, "model": name, "T": length, "batch": batch, "device": device.type,
            "peak_bytes_above_baseline": max(peak - base, 0), "peak_bytes_total": peak}


def peak_memory(kind, name, d, layers, length, batch) -> dict:
    cmd = [sys.executable, "-m", "bench.throughput", "--child", json.dumps([kind, name, d, layers, length, batch])]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement {kind} {name} T={length} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats: a sanity run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(peak_memory_child(*json.loads(args.child))))
        return {}
    device = resolve_device("auto")
    d, layers = (64, 2) if args.quick else (256, 4)
    lengths = (64, 128) if args.quick else (256, 1024)
    long_lengths = (512, 1024) if args.quick else (4096, 16384)
    repeats = 2 if args.quick else args.repeats
    results = {"device": device.type, "d": d, "layers": layers, "throughput": [], "memory": []}
    for length in lengths:
        row = throughput(d, layers, length, 4096, repeats, device)
        print(f"T={length}: mosaic {row['mosaic_tokens_per_second']:.0f} tok/s, gpt {row['gpt_tokens_per_second']:.0f} "
              f"tok/s, ratio {row['ratio_mosaic_over_gpt']:.2f}")
        results["throughput"].append(row)
        for name in ("mosaic", "gpt"):
            mem = peak_memory("train", name, d, layers, length, row["batch"])
            print(f"  train step peak memory {name}: {mem['peak_bytes_above_baseline'] / 2**20:.0f} MiB")
            results["memory"].append(mem)
    for length in long_lengths:
        mem = peak_memory("forward", "mosaic", d, layers, length, 1)
        print(f"mosaic forward T={length}: {mem['peak_bytes_above_baseline'] / 2**20:.0f} MiB above baseline")
        results["memory"].append(mem)
    longest = results["memory"][-1]
    results["targets"] = {
        "mosaic_over_gpt_tokens_per_second": {"target": 0.9, "measured": [r["ratio_mosaic_over_gpt"] for r in results["throughput"]]},
        "forward_memory_longest_bytes": {"target": 2 * 2**30, "T": longest["T"], "measured": longest["peak_bytes_above_baseline"]},
    }
    save("throughput_quick" if args.quick else "throughput", results)
    return results


if __name__ == "__main__":
    main()
