"""`sandbox sample RUN_DIR --prompt "ROMEO:" --tokens 500`: print text from a model trained on text.

    sandbox train task=text model=mosaic train.steps=2000 name=mosaic-plays
    sandbox sample runs/mosaic-plays --prompt "ROMEO:" --tokens 500 --temperature 0.8 --top-k 20 --seed 0

Loads the run's resolved config and its checkpoint, encodes the prompt with the run's tokenisation
and continues it through the model's cached generation (`Generating.generate`), drawing each token
from softmax(logits / temperature) over the `--top-k` most likely. The same arguments always print
the same text.
"""

from __future__ import annotations

import math
from pathlib import Path

from sandbox.validation import check_int


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of `sandbox train` on task=text")
    parser.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    parser.add_argument("--tokens", type=int, default=500, help="how many tokens to generate (default 500)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="softmax temperature, > 0 (default 1; lower is more conservative)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="sample among the k most likely tokens only (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling generator (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")


def load_run(run_dir):
    """The task and the trained model of a run directory (weights from its checkpoint)."""
    import torch

    from sandbox.config import RunConfig
    from sandbox.train import build

    from sandbox.checkpoints import list_checkpoints, load_newest_intact

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"RUN_DIR {str(run_dir)!r} has no config.json: give a directory written by `sandbox train`")
    if not list_checkpoints(run_dir):
        raise ValueError(f"RUN_DIR {str(run_dir)!r} has no checkpoint: give a directory written by `sandbox train`")
    config = RunConfig.load(run_dir / "config.json")
    task, model = build(config, torch.device("cpu"))
    state = load_newest_intact(run_dir, map_location="cpu")
    if state is None:
        raise ValueError(f"RUN_DIR {str(run_dir)!r}: every checkpoint is damaged")
    model.load_state_dict(state["model"])
    return task, model


def check_arguments(prompt: str, tokens: int, temperature: float, top_k: int | None, seed: int) -> None:
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("--prompt must be a non-empty string")
    check_int(tokens, "--tokens", low=0, high=1_000_000)
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"--temperature must be a finite number > 0, got {temperature}")
    if top_k is not None:
        check_int(top_k, "--top-k", low=1)
    check_int(seed, "--seed", low=0)


def sample_text(task, model, prompt: str, tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
                seed: int = 0, device="cpu") -> str:
    """`prompt` followed by `tokens` sampled tokens, decoded."""
    import torch

    check_arguments(prompt, tokens, temperature, top_k, seed)
    if not hasattr(task, "decode"):
        raise ValueError(f"sampling needs a run on a text task (task=text), this run's task is {task.name!r}")
    if top_k is not None:
        check_int(top_k, "--top-k", low=1, high=task.vocab_size)
    ids = task.encode(prompt).long()[None]  # (1, T0)
    model = model.to(device)
    out = model.generate(ids.to(device), tokens, sample=True, temperature=temperature, top_k=top_k,
                         generator=torch.Generator(device).manual_seed(seed))  # (1, T0 + tokens)
    return task.decode(out[0].tolist())


def run(args) -> int:
    from sandbox.device import resolve_device

    check_arguments(args.prompt, args.tokens, args.temperature, args.top_k, args.seed)
    task, model = load_run(args.run_dir)
    print(sample_text(task, model, args.prompt, args.tokens, temperature=args.temperature, top_k=args.top_k,
                      seed=args.seed, device=resolve_device(args.device)))
    return 0
