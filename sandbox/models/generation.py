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
                 temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue `prompt` (B, T0) tokens or (B, T0, input_dim) observations by `steps` positions.

        Tokens: greedy (argmax) unless `sample`, then drawn from softmax(logits / temperature) with the
        given generator. Observations: free-running, each prediction is the next input.
        Returns the prompt followed by the generated positions.
        """
        check_int(steps, "steps", low=0)
        check_positive(temperature, "temperature")
        tokens = self.vocab_size is not None
        if prompt.dim() != (2 if tokens else 3) or prompt.shape[1] < 1:
            want = "(B, T0) token ids" if tokens else "(B, T0, input_dim) observations"
            raise ValueError(f"prompt must have shape {want} with T0 >= 1, got {tuple(prompt.shape)}")
        was_training = self.training
        self.eval()
        cache: dict = {}
        if prompt.shape[1] > 1:
            self.prefill(prompt[:, :-1], cache)
        sequence = [prompt[:, t] for t in range(prompt.shape[1])]
        x = sequence[-1]
        for _ in range(steps):
            out = self.step(x, cache)  # (B, V) or (B, output_dim)
            if not tokens:
                x = out
            elif sample:
                x = torch.multinomial(torch.softmax(out / temperature, -1), 1, generator=generator)[:, 0]
            else:
                x = out.argmax(-1)
            sequence.append(x)
        self.train(was_training)
        return torch.stack(sequence, 1)
