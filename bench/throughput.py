"""Training throughput and memory: Memory Mosaic against GPT at equal parameter count (issue 3).

    python -m bench.throughput            # d=256, 4 layers, T=256 and 1024; forward memory at 4096, 16384
    python -m bench.throughput --quick    # a fast sanity run
    python -m bench.throughput --amp --results-dir OUT   # on CUDA: bfloat16 autocast, results elsewhere

Training tokens/s of both models are measured in this one process, alternating model by model and
repetition by repetition, and reported as a ratio (absolute numbers on a shared CPU swing with load).
Peak memory is measured in a fresh subprocess per measurement: on CPU the growth of the peak resident
set over the process's size just before the pass; on CUDA torch.cuda.max_memory_allocated.
Targets: mosaic >= 0.9x GPT tokens/s; a T=16384 mosaic forward (d=256, batch 1) under 2 GB.
At the first length it also profiles both models' training step operator by operator (self time, top
operators, matrix products against the rest) and measures them through `torch.compile` (compile time
apart from steady tokens/s); `--no-compile` / `--no-profile` skip those. The device (and its name) the
numbers come from is recorded; results on CUDA go to `throughput_cuda.json`.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.common import RESULTS, save
from bench.step_profile import compiled_throughput, operator_profile
from sandbox.device import resolve_device
from sandbox.models import GPTConfig, MosaicConfig, num_parameters

VOCAB = 65


def make(name: str, d: int, layers: int, max_len: int, device):
    torch.manual_seed(0)
    config = MosaicConfig(d=d, layers=layers) if name == "mosaic" else GPTConfig(d=d, layers=layers, max_len=max_len)
    return config.build(vocab_size=VOCAB, max_len=max_len).to(device)


def train_step_seconds(model, optimizer, tokens: torch.Tensor, amp: bool = False) -> float:
    """One AdamW training step on next-token prediction; bfloat16 autocast when `amp` (CUDA only)."""
    start = time.perf_counter()
    with torch.autocast(tokens.device.type, dtype=torch.bfloat16, enabled=amp and tokens.is_cuda):
        logits = model(tokens[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if tokens.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def models_and_optimizers(d: int, layers: int, length: int, device) -> tuple[dict, dict]:
    models = {name: make(name, d, layers, length, device) for name in ("mosaic", "gpt")}
    return models, {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}


def batch_of(length: int, tokens_per_batch: int, device) -> torch.Tensor:
    batch = max(1, tokens_per_batch // length)
    return torch.randint(VOCAB, (batch, length + 1), generator=torch.Generator().manual_seed(0)).to(device)


def throughput(d: int, layers: int, length: int, tokens_per_batch: int, repeats: int, device, amp: bool = False,
               profile: bool = False) -> dict:
    data = batch_of(length, tokens_per_batch, device)
    batch = data.shape[0]
    models, optimizers = models_and_optimizers(d, layers, length, device)
    times: dict[str, list[float]] = {name: [] for name in models}
    for name in models:  # warm-up
        train_step_seconds(models[name], optimizers[name], data, amp)
    for r in range(repeats):
        order = ("mosaic", "gpt") if r % 2 == 0 else ("gpt", "mosaic")
        for name in order:
            times[name].append(train_step_seconds(models[name], optimizers[name], data, amp))
    result = {"T": length, "batch": batch, "parameters": {n: num_parameters(m) for n, m in models.items()},
              "non_embedding_parameters": {n: num_parameters(m, embeddings=False) for n, m in models.items()}}
    for name, ts in times.items():
        result[f"{name}_tokens_per_second"] = batch * length / statistics.median(ts)
    result["ratio_mosaic_over_gpt"] = result["mosaic_tokens_per_second"] / result["gpt_tokens_per_second"]
    # Pairwise ratios per repetition show how stable the comparison is under load.
    pairs = [g / m for m, g in zip(times["mosaic"], times["gpt"])]
    result["ratio_per_repeat"] = pairs
    if profile:
        result["profile"] = {name: operator_profile(lambda m=models[name], o=optimizers[name]: train_step_seconds(m, o, data, amp),
                                                    cuda=device.type == "cuda") for name in models}
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
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA only; ignored on the CPU)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    parser.add_argument("--no-profile", action="store_true", help="skip the per-operator profile")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument("--results-dir", default=str(RESULTS), help="where the JSON goes (default: bench/results)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(peak_memory_child(*json.loads(args.child))))
        return {}
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1, got {args.repeats}")
    device = resolve_device("auto")
    amp = args.amp and device.type == "cuda"
    d, layers = (64, 2) if args.quick else (256, 4)
    lengths = (64, 128) if args.quick else (256, 1024)
    long_lengths = (512, 1024) if args.quick else (4096, 16384)
    repeats = 2 if args.quick else args.repeats
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    results = {"device": device.type, "device_name": name, "amp": amp, "d": d, "layers": layers,
               "throughput": [], "memory": []}
    print(f"device: {device.type} ({name}){', bfloat16 autocast' if amp else ''}")
    for index, length in enumerate(lengths):
        row = throughput(d, layers, length, 4096, repeats, device, amp, profile=index == 0 and not args.no_profile)
        print(f"T={length}: mosaic {row['mosaic_tokens_per_second']:.0f} tok/s, gpt {row['gpt_tokens_per_second']:.0f} "
              f"tok/s, ratio {row['ratio_mosaic_over_gpt']:.2f}")
        for model, prof in row.get("profile", {}).items():
            top = ", ".join(f"{r['op']} {r['share']:.0%}" for r in prof["top"][:5])
            shares = ", ".join(f"{k.replace('_', ' ')} {v:.0%}" for k, v in prof["shares"].items())
            print(f"  {model} step profile: {shares}; top: {top}")
        results["throughput"].append(row)
        for model in () if args.no_memory else ("mosaic", "gpt"):
            mem = peak_memory("train", model, d, layers, length, row["batch"])
            print(f"  train step peak memory {model}: {mem['peak_bytes_above_baseline'] / 2**20:.0f} MiB")
            results["memory"].append(mem)
    if not args.no_compile:
        results["compiled"] = compiled(d, layers, lengths[0], repeats, device, amp)
    for length in () if args.no_memory else long_lengths:
        mem = peak_memory("forward", "mosaic", d, layers, length, 1)
        print(f"mosaic forward T={length}: {mem['peak_bytes_above_baseline'] / 2**20:.0f} MiB above baseline")
        results["memory"].append(mem)
    results["targets"] = {
        "mosaic_over_gpt_tokens_per_second": {"target": 0.9, "measured": [r["ratio_mosaic_over_gpt"] for r in results["throughput"]]}}
    if results["memory"]:
        longest = results["memory"][-1]
        results["targets"]["forward_memory_longest_bytes"] = {"target": 2 * 2**30, "T": longest["T"],
                                                              "measured": longest["peak_bytes_above_baseline"]}
    stem = "throughput_quick" if args.quick else "throughput"
    save(stem + ("_cuda" if device.type == "cuda" else ""), results, Path(args.results_dir))
    return results


def compiled(d: int, layers: int, length: int, repeats: int, device, amp: bool) -> dict:
    """torch.compile against eager at one length; a compiler failure is recorded, not fatal."""
    data = batch_of(length, 4096, device)
    try:
        result = compiled_throughput(lambda: models_and_optimizers(d, layers, length, device),
                                     lambda m, o, x: train_step_seconds(m, o, x, amp), data, ("mosaic", "gpt"), repeats)
    except Exception as err:  # noqa: BLE001 - e.g. no C++ compiler or Triton on this machine
        print(f"torch.compile measurement failed: {type(err).__name__}: {err}".splitlines()[0])
        return {"T": length, "error": f"{type(err).__name__}: {err}"[:2000]}
    print(f"T={length} compiled: mosaic {result['compiled_tokens_per_second']['mosaic']:.0f} tok/s "
          f"({result['compiled_over_eager']['mosaic']:.2f}x eager, compile {result['compile_seconds']['mosaic']:.0f} s), "
          f"gpt {result['compiled_tokens_per_second']['gpt']:.0f} tok/s ({result['compiled_over_eager']['gpt']:.2f}x eager, "
          f"compile {result['compile_seconds']['gpt']:.0f} s); mosaic/gpt compiled "
          f"{result['ratio_mosaic_over_gpt']['compiled']:.2f}, eager {result['ratio_mosaic_over_gpt']['eager']:.2f}")
    return {"T": length, "batch": data.shape[0], **result}

if __name__ == "__main__":
    main()
