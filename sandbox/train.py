"""The training engine: one loop for every task and model.

    result = train(RunConfig(task=BigramConfig(), model=MosaicConfig(d=64)))

Batches come from `task.batch("train", step, ...)`, a pure function of the step, so a checkpoint
(model, optimiser, schedule, step, RNG state) is all that resuming needs: on CPU a resumed run is
bit-for-bit the uninterrupted one. The run directory (laid out in `sandbox/checkpoints.py`) is locked
while a run works in it, and a new run never replaces an old one unless told to (`overwrite=True`).

Under `torchrun` the same call trains data-parallel (`sandbox/distributed.py`): `train.batch_size` is
the global batch, each rank trains on its slice of it, gradients are averaged by
DistributedDataParallel, and rank 0 alone evaluates and writes the run directory.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from sandbox import checkpoints, distributed, runs
from sandbox.config import SCHEDULE_KEYS, RunConfig, TrainConfig
from sandbox.device import resolve_device, set_deterministic
from sandbox.io import DirectoryLock

Callback = Callable[[torch.nn.Module, object, int], dict]


class DivergedError(FloatingPointError):
    """The training loss or the weights became NaN or infinite."""


@dataclass
class RunResult:
    run_dir: Path
    model: torch.nn.Module
    task: object
    final_metrics: dict  # the last validation line ({} if there was none)
    history: list[dict] = field(default_factory=list)  # every metrics line of the run, resumed ones too
    steps_trained: int = 0  # by this call (0: a resumed run that had already finished)


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
    """Task metrics over `eval_batches` fixed batches of `split`, each key averaged (one weight per batch)
    over the batches that report it: a batch without, say, a 5-pair sequence has no `accuracy_pairs_5`."""
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for index in range(config.eval_batches):
        batch = task.batch(split, index, config.batch_size, device)
        for key, value in task.metrics(model(batch.inputs), batch).items():
            totals[key] = totals.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    model.train(was_training)
    return {key: total / counts[key] for key, total in totals.items()}


def _check_finite_weights(model, step: int) -> None:
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise DivergedError(f"the weights became NaN or infinite at step {step}")


def _save_checkpoint(run_dir: Path, model, optimizer, scheduler, step: int, keep: int, rank_rng: list | None = None) -> None:
    _check_finite_weights(model, step)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "step": step, "rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    if rank_rng is not None:  # data parallel: every rank's generator (dropout masks differ by rank)
        state["rank_rng"] = rank_rng
    checkpoints.save_checkpoint(run_dir, state, keep)


def _open_run_dir(run_dir: Path, out: str) -> DirectoryLock:
    """Create `run_dir` and lock it; a path that cannot be a directory is an error naming `out`."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        return DirectoryLock(run_dir).__enter__()
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"out={out}: cannot make the run directory {run_dir}: a file is in the way") from None
    except PermissionError as err:
        raise ValueError(f"out={out}: cannot write the run directory {run_dir} (permission denied: "
                         f"{err.filename})") from None


def _check_resumable(run_dir: Path, config: RunConfig) -> list[str]:
    """The schedule keys `config` changes from the run's saved config; other changes are errors."""
    saved = RunConfig.load(run_dir / checkpoints.CONFIG).to_dict()
    given = config.to_dict()
    changed = []
    for group in ("task", "model", "train"):
        for key in sorted(set(saved[group]) | set(given[group])):
            if saved[group].get(key) != given[group].get(key):
                changed.append(f"{group}.{key}")
    changed += [key for key in ("seed",) if saved[key] != given[key]]
    fixed = [key for key in changed if key.removeprefix("train.") not in SCHEDULE_KEYS]
    if fixed:
        raise ValueError(f"cannot resume {run_dir} with {', '.join(fixed)} changed: a resumed run may change only "
                         f"train.{{{','.join(SCHEDULE_KEYS)}}}; start a new run for the rest "
                         f"(--config {run_dir / checkpoints.CONFIG} KEY=VALUE)")
    return [f"{key}: {_dotted(saved, key)} -> {_dotted(given, key)}" for key in changed]


def _dotted(data: dict, key: str):
    group, _, name = key.partition(".")
    return data[group][name]


def _start(run_dir: Path, config: RunConfig, resume: bool, overwrite: bool) -> tuple[bool, dict | None, list[str]]:
    """Under the lock: check the directory; if resuming, the newest intact checkpoint and what changed."""
    if not resume:
        held = sorted(p.name for p in run_dir.iterdir() if p.name != DirectoryLock.NAME)
        if held and not overwrite:
            raise ValueError(f"{run_dir} already holds a run ({', '.join(held)}); continue it with --resume "
                             f"{run_dir}, choose another name=, or replace it with --overwrite")
        checkpoints.remove_run_files(run_dir)
        return False, None, []
    if not (run_dir / checkpoints.CONFIG).exists():
        raise ValueError(f"cannot resume {run_dir}: it holds no run (no {checkpoints.CONFIG})")
    changes = _check_resumable(run_dir, config)
    checkpoints.remove_temporaries(run_dir)
    return True, checkpoints.load_newest_intact(run_dir, map_location="cpu"), changes


def train(config: RunConfig, *, resume: bool = False, overwrite: bool = False, callbacks: tuple[Callback, ...] = (),
          progress: bool | None = None, stop_after: int | None = None) -> RunResult:
    """Train `config.model` on `config.task`; return the run directory, model and final metrics.

    A new run needs an empty (or absent) run directory; overwrite=True deletes the run files there
    first. resume=True continues from the newest intact checkpoint in the run directory (from step 0
    if there is none, which the seed reproduces); `config` may then differ from the saved one only in the schedule keys (`sandbox.config.SCHEDULE_KEYS`).
    callbacks are called at each evaluation with (model, task, step) and return dicts merged into that
    evaluation's metrics line. progress: show a tqdm bar (default: only when stderr is a terminal).
    stop_after: checkpoint and return after this many steps, as an interruption would (resume later).
    A non-finite loss or weight raises `DivergedError`, naming the step and the checkpoint to resume.
    """
    run_dir = config.run_dir
    context = distributed.setup(config.train.device)
    if context.active:
        distributed.check_batch_size(config.train.batch_size, context.world)
    if not context.active:
        lock = _open_run_dir(run_dir, config.out)
        try:
            return _train(config, run_dir, *_start(run_dir, config, resume, overwrite), callbacks, progress, stop_after)
        finally:
            lock.release()
    # Data parallel: rank 0 locks and checks the directory, then hands every rank the outcome (the
    # checkpoint to resume included, so other machines need not share the file system).
    lock, outcome = None, None
    if context.is_main:
        try:
            lock = _open_run_dir(run_dir, config.out)
            outcome = ("ok", _start(run_dir, config, resume, overwrite))
        except Exception as err:  # noqa: BLE001 - re-raised on every rank below
            outcome = ("error", err)
    outcome = distributed.broadcast(outcome, context)
    try:
        if outcome[0] == "error":
            raise outcome[1]
        return _train(config, run_dir, *outcome[1], callbacks, progress, stop_after, context)
    finally:
        if lock is not None:
            lock.release()


def _train(config: RunConfig, run_dir: Path, resume: bool, state: dict | None, changes: list[str], callbacks,
           progress, stop_after, context: distributed.Context = distributed.Context()) -> RunResult:
    tc = config.train
    device = context.device if context.active else resolve_device(tc.device)
    set_deterministic(tc.deterministic)
    task, model = build(config, device)
    if context.active and context.rank > 0:  # each rank its own dropout stream; rank 0 keeps the seed's
        torch.manual_seed(distributed.rank_seed(config.seed, context.rank))
    optimizer = make_optimizer(model, tc)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, tc))
    metrics_path = run_dir / checkpoints.METRICS
    start, history = 0, []
    if state is not None:
        start = state["step"]
        if start > tc.steps:
            raise ValueError(f"train.steps={tc.steps} is below the step of the checkpoint to resume ({start})")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if changes:  # the new schedule from here on (unchanged keys give back the saved rates exactly)
            scheduler.base_lrs = [tc.lr for _ in optimizer.param_groups]
            for group in optimizer.param_groups:
                group["initial_lr"], group["lr"] = tc.lr, tc.lr * lr_factor(start, tc)
            scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
            warnings.warn(f"{run_dir}: resuming at step {start} with {'; '.join(changes)}", stacklevel=3)
        torch.set_rng_state(state["rng"].cpu())
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        if context.active and len(state.get("rank_rng", [])) == context.world:
            torch.set_rng_state(state["rank_rng"][context.rank].cpu())
    writes = context.is_main  # data parallel: rank 0 alone writes, evaluates and shows progress
    if resume and writes:
        history = runs.read_metrics(run_dir, repair=True, up_to_step=start) if metrics_path.exists() else []
    if writes:
        config.save(run_dir / checkpoints.CONFIG)
    wrapped = distributed.wrap(model, context)
    forward = torch.compile(wrapped) if tc.compile else wrapped
    autocast = tc.amp and device.type == "cuda"

    def record(line: dict) -> None:
        if not writes:
            return
        history.append(line)
        with open(metrics_path, "a") as f:
            f.write(json.dumps(line) + "\n")

    show = (sys.stderr.isatty() if progress is None else progress) and writes
    bar = tqdm(range(start, tc.steps), initial=start, total=tc.steps, disable=not show, desc=run_dir.name,
               dynamic_ncols=True)
    model.train()
    tick, tokens = time.perf_counter(), 0
    if changes:
        record({"step": start, "split": "resume", "changed": changes})
    final = next((line for line in reversed(history) if line.get("split") == "val"), {})
    done = start
    for step in bar:
        batch = task.batch("train", step, tc.batch_size, device)
        loss, reported = _loss(task, forward, batch, context, autocast)
        if not torch.isfinite(reported):  # the weights of step `step` give it: a checkpoint of them is no use
            bar.close()
            if writes:
                checkpoints.set_aside(run_dir, step, "diverged")
            raise DivergedError(_diverged(run_dir, tc, f"the training loss became {reported.item()} at step {step}"))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        scheduler.step()
        tokens += batch.inputs.shape[0] * batch.inputs.shape[1]  # the global batch
        done = step + 1
        if done % tc.log_every == 0 or done == tc.steps:
            elapsed = time.perf_counter() - tick
            record({"step": done, "split": "train", "loss": reported.item(), "lr": scheduler.get_last_lr()[0],
                    "tokens_per_second": tokens / max(elapsed, 1e-9)})
            tick, tokens = time.perf_counter(), 0
            bar.set_postfix(loss=f"{reported.item():.4f}")
        if writes and ((tc.eval_every and done % tc.eval_every == 0) or done == tc.steps):
            final = {"step": done, "split": "val", **evaluate(model, task, tc, device)}
            for callback in callbacks:
                final.update(callback(model, task, done))
            record(final)
        if (tc.checkpoint_every and done % tc.checkpoint_every == 0) or done in (tc.steps, stop_after):
            try:
                if not context.active:
                    _save_checkpoint(run_dir, model, optimizer, scheduler, done, tc.keep_checkpoints)
                else:  # every rank checks the (identical) weights, so every rank stops together
                    _check_finite_weights(model, done)
                    rank_rng = distributed.gather(torch.get_rng_state(), context)
                    if writes:
                        _save_checkpoint(run_dir, model, optimizer, scheduler, done, tc.keep_checkpoints, rank_rng)
            except DivergedError as err:
                bar.close()
                raise DivergedError(_diverged(run_dir, tc, str(err))) from None
        if done == stop_after:
            break
    bar.close()
    return RunResult(run_dir, model, task, final, history, steps_trained=done - start)


def _loss(task, forward, batch, context: distributed.Context, autocast: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss to differentiate and the loss to report (the global batch's mean loss, on every rank).

    Without data parallelism both are the task's loss on the batch. With it, each rank keeps its
    slice and weights its slice-mean loss by its share of the loss terms, so that DDP's average of
    the gradients over ranks is the gradient of the global mean loss.
    """
    if not context.active:
        with torch.autocast(batch.inputs.device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = task.loss(forward(batch.inputs), batch)
        return loss, loss.detach()
    batch = distributed.shard(batch, context.rank, context.world)
    weight = distributed.global_slice_weight(task.loss_terms(batch), context)
    with torch.autocast(batch.inputs.device.type, dtype=torch.bfloat16, enabled=autocast):
        outputs = forward(batch.inputs)
        # A slice with no loss term adds no gradient (its mean loss would be 0/0).
        loss = task.loss(outputs, batch) * weight if weight > 0 else outputs.float().sum() * 0.0
    return loss, distributed.mean_over_ranks(loss, context)


def _diverged(run_dir: Path, tc: TrainConfig, what: str) -> str:
    """The divergence message: the step, the newest (finite) checkpoint and the command to go on from it."""
    kept = checkpoints.list_checkpoints(run_dir)
    where = (f"the newest checkpoint before it (step {kept[0][0]}) is kept" if kept else
             f"no checkpoint from before it (train.checkpoint_every={tc.checkpoint_every}): a resumed run starts "
             "again from step 0")
    return (f"training diverged: {what}; {where}. Resume with a lower learning rate: "
            f"sandbox train --resume {run_dir} train.lr={tc.lr / 10:.3g}")
