"""Where a training step's time goes, and what `torch.compile` changes: helpers of bench/throughput.py.

`operator_profile` runs torch.profiler over a few training steps and returns the operators ranked by
their own (self) time, with each one's share of the step and a split of the step into matrix
products, fused attention kernels, and everything else (element-wise passes, reductions, copies, the
optimiser).
`compiled_throughput` measures the same steps through `torch.compile`, its compile time (the first
step, minus a steady step) reported apart from the steady-state tokens/s.
"""

from __future__ import annotations

import statistics
from typing import Callable

import torch

# Operators by kind of work (backward passes appear under the same names or a `_backward` suffix).
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear")
# Fused attention kernels: matrix products and the softmax's exponentials in one operator.
ATTENTION_PREFIX = ("aten::_scaled_dot_product", "aten::_flash_attention", "aten::_efficient_attention")
# Wrappers whose self time is near zero but whose name would double-count children: left out of shares.
WRAPPERS = ("ProfilerStep", "Optimizer.step", "Optimizer.zero_grad", "autograd::engine::evaluate_function")

Step = Callable[[], float]


def operator_profile(step: Step, steps: int = 3, top: int = 12, cuda: bool = False) -> dict:
    """Profile `steps` calls of `step` (a full training step, warmed up); rank operators by self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
    attribute = "self_device_time_total" if cuda else "self_cpu_time_total"
    rows = []
    for event in prof.key_averages():
        self_us = float(getattr(event, attribute, 0.0) or 0.0)
        if self_us <= 0 or event.key.startswith(WRAPPERS):
            continue
        rows.append({"op": event.key, "self_ms_per_step": self_us / 1000 / steps, "calls_per_step": event.count / steps})
    total = sum(r["self_ms_per_step"] for r in rows)
    rows.sort(key=lambda r: -r["self_ms_per_step"])
    for r in rows:
        r["share"] = r["self_ms_per_step"] / total if total else 0.0
    matmul = sum(r["share"] for r in rows if r["op"] in MATMUL_OPS)
    attention = sum(r["share"] for r in rows if r["op"].startswith(ATTENTION_PREFIX))
    return {"clock": "device" if cuda else "cpu", "steps": steps, "total_self_ms_per_step": total,
            "shares": {"matrix_products": matmul, "fused_attention": attention,
                       "elementwise_and_other": 1.0 - matmul - attention}, "top": rows[:top]}


def compiled_throughput(build: Callable[[], tuple], step_seconds: Callable, data: torch.Tensor,
                        names: tuple[str, ...], repeats: int) -> dict:
    """Tokens/s of `torch.compile`d models, compile time apart; eager is measured alongside for the ratio.

    build() -> ({name: model}, {name: optimizer}); step_seconds(model, optimizer, data) -> seconds.
    """
    models, optimizers = build()
    compiled = {name: torch.compile(models[name]) for name in names}
    result: dict = {"compile_seconds": {}, "eager_tokens_per_second": {}, "compiled_tokens_per_second": {}}
    tokens = data.shape[0] * (data.shape[1] - 1)
    for name in names:
        first = step_seconds(compiled[name], optimizers[name], data)  # traces and compiles
        steady = step_seconds(compiled[name], optimizers[name], data)
        step_seconds(models[name], optimizers[name], data)  # eager warm-up
        result["compile_seconds"][name] = max(first - steady, 0.0)
    times = {(name, kind): [] for name in names for kind in ("eager", "compiled")}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            for kind in (("eager", "compiled") if r % 2 == 0 else ("compiled", "eager")):
                model = models[name] if kind == "eager" else compiled[name]
                times[name, kind].append(step_seconds(model, optimizers[name], data))
    for (name, kind), ts in times.items():
        result[f"{kind}_tokens_per_second"][name] = tokens / statistics.median(ts)
    result["compiled_over_eager"] = {n: result["compiled_tokens_per_second"][n] / result["eager_tokens_per_second"][n]
                                     for n in names}
    if len(names) == 2:
        a, b = names
        result[f"ratio_{a}_over_{b}"] = {kind: result[f"{kind}_tokens_per_second"][a] / result[f"{kind}_tokens_per_second"][b]
                                         for kind in ("eager", "compiled")}
    return result
