"""Incremental generation shared by every model: `model.step(x_t, cache)` gives the output at t.

A model implements `step(x, cache) -> output` for one position (x (B,) tokens or (B, input_dim)
observations; the cache is a dict the model fills as it likes). `generate` runs the prompt through
`step` and then feeds each new token (or prediction) back, so the cost per new position does not grow
with a recomputation of the whole prefix.
"""

from __future__ import annotations

import torch
from torch import nn

from sandbox.validation import check_int, check_positive


class Generating(nn.Module):
    """Mixin: `generate` from a model's `step`."""

    def step(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        raise NotImplementedError

    def prefill(self, inputs: torch.Tensor, cache: dict) -> torch.Tensor:
        """Outputs (B, T, ...) of a prompt, leaving `cache` ready for the next `step`. This default
        steps through the prompt; a model with a parallel form overrides it with one forward pass."""
        return torch.stack([self.step(inputs[:, t], cache) for t in range(inputs.shape[1])], 1)

    @torch.no_grad()
    def step_outputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Outputs (B, T, ...) computed one position at a time through the cache (for checking)."""
        return Generating.prefill(self, inputs, {})

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, steps: int, *, sample: bool = False,
                 temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue `prompt` (B, T0) tokens or (B, T0, input_dim) observations by `steps` positions.

        Tokens: greedy (argmax) unless `sample`, then drawn from softmax(logits / temperature), restricted
        to the `top_k` most likely tokens if given, with the given generator. Observations: free-running,
        each prediction is the next input. A model with a context limit (`max_len`, GPT's learned
        positions) keeps generating past it by refilling its cache from the last max_len // 2 positions.
        Returns the prompt followed by the generated positions.
        """
        check_int(steps, "steps", low=0)
        check_positive(temperature, "temperature")
        tokens = self.vocab_size is not None
        if top_k is not None:
            check_int(top_k, "top_k", low=1, high=self.vocab_size if tokens else None)
        if prompt.dim() != (2 if tokens else 3) or prompt.shape[1] < 1:
            want = "(B, T0) token ids" if tokens else "(B, T0, input_dim) observations"
            raise ValueError(f"prompt must have shape {want} with T0 >= 1, got {tuple(prompt.shape)}")
        was_training = self.training
        self.eval()
        limit = getattr(self, "max_len", None)  # positions the model can attend over; None = unbounded
        sequence = [prompt[:, t] for t in range(prompt.shape[1])]

        def refill(keep: int) -> dict:  # a cache of the `keep` - 1 positions before the last one
            cache: dict = {}
            if keep > 1:
                self.prefill(torch.stack(sequence[-keep:-1], 1), cache)
            return cache

        keep = len(sequence) if limit is None else min(len(sequence), limit)
        cache, filled = refill(keep), keep - 1  # filled: positions held in the cache
        x = sequence[-1]
        for _ in range(steps):
            if limit is not None and filled >= limit:  # full: keep the recent half
                keep = max(limit // 2, 1)
                cache, filled = refill(keep), keep - 1
            out = self.step(x, cache)  # (B, V) or (B, output_dim)
            filled += 1
            if not tokens:
                x = out
            elif sample:
                logits = out / temperature  # (B, V)
                if top_k is not None:
                    kth = torch.topk(logits, top_k, -1).values[:, -1:]  # (B, 1)
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                x = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
            else:
                x = out.argmax(-1)
            sequence.append(x)
        self.train(was_training)
        return torch.stack(sequence, 1)
