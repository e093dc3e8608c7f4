"""The training engine: one loop for every task and model.

    result = train(RunConfig(task=BigramConfig(), model=MosaicConfig(d=64)))

Batches come from `task.batch("train", step, ...)`, a pure function of the step, so a checkpoint
(model, optimiser, schedule, step, RNG state) is all that resuming needs: on CPU a resumed run is
bit-for-bit the uninterrupted one. The run directory holds `config.json` (the resolved config),
`metrics.jsonl` (a line per log or evaluation) and `checkpoint.pt` (written atomically).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from sandbox.config import RunConfig, TrainConfig
from sandbox.device import resolve_device, set_deterministic
from sandbox.io import atomic_write

Callback = Callable[[torch.nn.Module, object, int], dict]


@dataclass
class RunResult:
    run_dir: Path
    model: torch.nn.Module
    task: object
    final_metrics: dict
    history: list[dict] = field(default_factory=list)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of the base lr at `step`: linear warm-up, then cosine/linear/constant decay."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    span = max(config.steps - config.warmup_steps - 1, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    floor = config.final_lr_fraction
    if config.schedule == "linear":
        return 1.0 - (1.0 - floor) * progress
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


def build(config: RunConfig, device: torch.device):
    """The task and a freshly initialised model (initialisation seeded by config.seed)."""
    task = config.task.build(config.seed)
    torch.manual_seed(config.seed)
    model = config.model.build(vocab_size=task.vocab_size, input_dim=task.input_dim,
                               output_dim=task.output_dim, max_len=task.seq_len)
    return task, model.to(device)


@torch.no_grad()
def evaluate(model, task, config: TrainConfig, device, split: str = "val") -> dict:
    """Task metrics averaged over `eval_batches` fixed batches of `split`."""
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    for index in range(config.eval_batches):
        batch = task.batch(split, index, config.batch_size, device)
        for key, value in task.metrics(model(batch.inputs), batch).items():
            totals[key] = totals.get(key, 0.0) + value / config.eval_batches
    model.train(was_training)
    return totals


def _save_checkpoint(path: Path, model, optimizer, scheduler, step: int) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "step": step, "rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def train(config: RunConfig, *, resume: bool = False, callbacks: tuple[Callback, ...] = (),
          progress: bool | None = None, stop_after: int | None = None) -> RunResult:
    """Train `config.model` on `config.task`; return the run directory, model and final metrics.

    resume=True continues from `run_dir/checkpoint.pt`. callbacks are called at each evaluation with
    (model, task, step) and return dicts merged into that evaluation's metrics line.
    progress: show a tqdm bar (default: only when stderr is a terminal).
    stop_after: checkpoint and return after this many steps, as an interruption would (resume later).
    """
    tc = config.train
    device = resolve_device(tc.device)
    set_deterministic(tc.deterministic)
    task, model = build(config, device)
    optimizer = make_optimizer(model, tc)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, tc))
    run_dir = config.run_dir
    checkpoint, metrics_path = run_dir / "checkpoint.pt", run_dir / "metrics.jsonl"
    start = 0
    if resume:
        if not checkpoint.exists():
            raise ValueError(f"cannot resume: no checkpoint at {checkpoint}")
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start = state["step"]
        _truncate_metrics(metrics_path, start)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        metrics_path.unlink(missing_ok=True)
    config.save(run_dir / "config.json")
    forward = torch.compile(model) if tc.compile else model
    autocast = tc.amp and device.type == "cuda"
    history: list[dict] = []

    def record(line: dict) -> None:
        history.append(line)
        with open(metrics_path, "a") as f:
            f.write(json.dumps(line) + "\n")

    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(range(start, tc.steps), initial=start, total=tc.steps, disable=not show, desc=run_dir.name,
               dynamic_ncols=True)
    model.train()
    tick, tokens = time.perf_counter(), 0
    final: dict = {}
    for step in bar:
        batch = task.batch("train", step, tc.batch_size, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = task.loss(forward(batch.inputs), batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the training loss became {loss.item()} at step {step}; "
                                     "lower train.lr or set train.grad_clip")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        scheduler.step()
        tokens += batch.inputs.shape[0] * batch.inputs.shape[1]
        done = step + 1
        if done % tc.log_every == 0 or done == tc.steps:
            elapsed = time.perf_counter() - tick
            record({"step": done, "split": "train", "loss": loss.item(), "lr": scheduler.get_last_lr()[0],
                    "tokens_per_second": tokens / max(elapsed, 1e-9)})
            tick, tokens = time.perf_counter(), 0
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if (tc.eval_every and done % tc.eval_every == 0) or done == tc.steps:
            final = {"step": done, "split": "val", **evaluate(model, task, tc, device)}
            for callback in callbacks:
                final.update(callback(model, task, done))
            record(final)
        if (tc.checkpoint_every and done % tc.checkpoint_every == 0) or done in (tc.steps, stop_after):
            _save_checkpoint(checkpoint, model, optimizer, scheduler, done)
        if done == stop_after:
            break
    bar.close()
    return RunResult(run_dir, model, task, final, history)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint's step (they will be written again)."""
    if path.exists():
        lines = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        atomic_write(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in lines)))
