"""Devices: `train.device=auto` and `train.amp` on CUDA where it exists; what they mean on the CPU.

The CUDA tests run wherever CUDA is present (a GPU machine: `bash bench/device_check.sh`) and are
skipped with the reason elsewhere; the CPU tests run everywhere.
"""

import math

import pytest
import torch

import sandbox.train
from sandbox.config import parse_overrides
from sandbox.device import resolve_device
from sandbox.train import train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA; this machine has none")
TINY = ["task=bigram", "task.seq_len=32", "model=mosaic", "model.d=16", "model.units=2",
        "model.layers=1", "train.steps=8", "train.batch_size=8", "train.log_every=4", "train.eval_every=0",
        "train.eval_batches=1", "train.lr=3e-3"]


def run(tmp_path, *extra):
    return train(parse_overrides([*TINY, f"out={tmp_path}", *extra]), progress=False)


def record_linear_dtypes(monkeypatch) -> set:
    """Make `train` hook its model's linear maps; return the set their training-step outputs' dtypes go into."""
    seen: set = set()
    build = sandbox.train.build

    def hooked(config, device):
        task, model = build(config, device)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.register_forward_hook(lambda m, args, out: seen.add(out.dtype) if m.training else None)
        return task, model

    monkeypatch.setattr(sandbox.train, "build", hooked)
    return seen


def test_auto_is_the_cpu_without_an_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_cuda_asked_for_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available here"):
        resolve_device("cuda:0")


def test_amp_is_a_no_op_on_the_cpu(tmp_path, monkeypatch):
    seen = record_linear_dtypes(monkeypatch)
    plain = run(tmp_path / "a", "train.device=cpu")
    amp = run(tmp_path / "b", "train.device=cpu", "train.amp=true")
    assert seen == {torch.float32}
    assert plain.final_metrics == amp.final_metrics


@cuda
def test_auto_trains_on_cuda(tmp_path):
    assert resolve_device("auto").type == "cuda"
    result = run(tmp_path, "train.device=auto")
    assert all(p.device.type == "cuda" for p in result.model.parameters())
    assert math.isfinite(result.final_metrics["loss"])
    assert result.history[-2]["loss"] < math.log(result.task.vocab_size)  # it learns (the loss starts near ln V)


@cuda
def test_amp_computes_in_bfloat16_and_stays_near_float32(tmp_path, monkeypatch):
    seen = record_linear_dtypes(monkeypatch)
    amp = run(tmp_path / "amp", "train.device=cuda", "train.amp=true")
    assert torch.bfloat16 in seen
    seen.clear()
    full = run(tmp_path / "fp32", "train.device=cuda")
    assert seen == {torch.float32}
    # bfloat16 keeps 8 bits of mantissa: after 8 steps the validation loss agrees to about a percent.
    assert abs(amp.final_metrics["loss"] - full.final_metrics["loss"]) <= 0.03 * full.final_metrics["loss"]


@cuda
def test_cuda_matches_the_cpu_within_float_tolerance(tmp_path):
    # Plain SGD: its update is linear in the gradient, so float rounding differences stay small
    # (Adam's normalised step can turn a rounding difference of a near-zero gradient into a full step).
    sgd = ("train.optimizer=sgd", "train.momentum=0.9", "train.lr=0.1")
    on_cpu = run(tmp_path / "cpu", "train.device=cpu", *sgd)
    on_cuda = run(tmp_path / "cuda", "train.device=cuda", *sgd)
    for key, value in on_cpu.model.state_dict().items():
        torch.testing.assert_close(on_cuda.model.state_dict()[key].cpu(), value, rtol=1e-3, atol=1e-5, msg=key)
