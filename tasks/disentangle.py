"""More disentanglement toys (docs/three-moons.md), each stating its ground-truth factorisation.

`oscillators`: K independent oscillators with chosen periods and independent random phases per
sequence; observation noise and a random orthogonal mixing (which a model must undo) on request.
`markov_sources`: K independent Markov chains, either interleaved in one token stream (source k speaks
at steps t ≡ k mod K, with its own ids) or summed as continuous observations x_t = Σ_k U_k e(s_k,t),
each source writing through its own random map U_k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from sandbox.validation import check_choice, check_int, check_positive
from tasks.base import Batch, Task
from tasks.registry import register_task


def parse_periods(text: str) -> tuple[float, ...]:
    try:
        periods = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ValueError(f"periods must be comma-separated numbers such as '0.5,1.3,2.1', got {text!r}") from None
    if not periods:
        raise ValueError("periods must name at least one period")
    for p in periods:
        check_positive(p, "periods")
    return periods


def check_noise(noise: float) -> None:
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")


def orthogonal(dim: int, seed: int) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]


def squared_error(outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
    return (outputs - batch.targets).pow(2).mean()


class ContinuousTask(Task):
    """Next-observation prediction with a squared-error loss."""

    kind = "continuous"

    def loss(self, outputs, batch) -> torch.Tensor:
        return squared_error(outputs, batch)

    def metrics(self, outputs, batch) -> dict[str, float]:
        return {"loss": float(self.loss(outputs, batch))}


@register_task("oscillators")
@dataclass
class OscillatorsConfig:
    """periods: one per oscillator (time units); dt: time step; length: steps; noise: observation noise
    std; mixing: random orthogonal mixing of the 2K-d observation (fixed by the task seed)."""

    periods: str = "0.5,1.3,2.1"
    dt: float = 0.0225
    length: int = 400
    noise: float = 0.0
    mixing: bool = False

    def __post_init__(self):
        parse_periods(self.periods)
        check_positive(self.dt, "dt")
        check_int(self.length, "length", low=2)
        check_noise(self.noise)

    def build(self, seed: int) -> "Oscillators":
        return Oscillators(self, seed)


class Oscillators(ContinuousTask):
    def __init__(self, config: OscillatorsConfig, seed: int):
        super().__init__(seed)
        self.config, self.name = config, "oscillators"
        self.periods = torch.tensor(parse_periods(config.periods), dtype=torch.float64)  # (K,)
        self.input_dim = self.output_dim = 2 * len(self.periods)
        self.seq_len = config.length
        self.mixing = orthogonal(self.input_dim, seed) if config.mixing else None

    def sample(self, gen, split, index, batch_size) -> Batch:
        phases = 2 * math.pi * torch.rand(batch_size, len(self.periods), generator=gen, dtype=torch.float64)  # (B, K)
        time = self.config.dt * torch.arange(self.seq_len + 1, dtype=torch.float64)  # (T+1,)
        angle = 2 * math.pi * time[None, :, None] / self.periods + phases[:, None, :]  # (B, T+1, K)
        obs = torch.stack([torch.sin(angle), torch.cos(angle)], -1).flatten(-2)  # (B, T+1, 2K)
        if self.config.noise:
            obs = obs + self.config.noise * torch.randn(obs.shape, generator=gen, dtype=torch.float64)
        if self.mixing is not None:
            obs = obs @ self.mixing.T
        obs = obs.float()
        return Batch(obs[:, :-1], obs[:, 1:], extras={"phases": phases.float()})

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "periods": self.periods.tolist(), "dt": self.config.dt,
                "periods_in_steps": (self.periods / self.config.dt).tolist(),
                "factors": [[2 * k, 2 * k + 1] for k in range(len(self.periods))],
                "mixing": None if self.mixing is None else self.mixing.tolist()}


@register_task("markov_sources")
@dataclass
class MarkovSourcesConfig:
    """sources: K independent chains of `states` states each; mode: 'interleaved' (tokens) or 'summed'
    (continuous); concentration: Dirichlet concentration of the transition rows (small = nearly
    deterministic chains); source_seed: draws the chains, shared by all splits; length: steps."""

    sources: int = 2
    states: int = 4
    mode: str = "interleaved"
    concentration: float = 0.3
    source_seed: int = 0
    length: int = 256
    noise: float = 0.0

    def __post_init__(self):
        check_int(self.sources, "sources", low=1, high=16)
        check_int(self.states, "states", low=2, high=64)
        check_choice(self.mode, "mode", {"interleaved", "summed"})
        check_positive(self.concentration, "concentration")
        check_int(self.source_seed, "source_seed", low=0)
        check_int(self.length, "length", low=2)
        check_noise(self.noise)
        if self.noise and self.mode == "interleaved":
            raise ValueError("noise applies to mode='summed' (continuous observations) only")

    def build(self, seed: int) -> "MarkovSources":
        return MarkovSources(self, seed)


class MarkovSources(Task):
    def __init__(self, config: MarkovSourcesConfig, seed: int):
        super().__init__(seed)
        self.config, self.name = config, "markov_sources"
        rng = np.random.default_rng(config.source_seed)
        K, S = config.sources, config.states
        self.transitions = torch.tensor(rng.dirichlet(np.full(S, config.concentration), size=(K, S)))  # (K, S, S)
        self.seq_len = config.length
        if config.mode == "interleaved":
            self.kind, self.vocab_size = "tokens", K * S
        else:
            self.kind = "continuous"
            self.input_dim = self.output_dim = K * S
            self.maps = torch.tensor(rng.standard_normal((K, S, K * S)) / math.sqrt(K * S))  # (K, S, D): U_k e_s

    def chains(self, gen: torch.Generator, batch_size: int, steps: int) -> torch.Tensor:
        """(B, K, steps) states of K independent chains, uniform start, vectorised over B and K."""
        K, S = self.config.sources, self.config.states
        cdf = torch.cumsum(self.transitions, -1)  # (K, S, S)
        states = torch.empty(batch_size, K, steps, dtype=torch.long)
        states[..., 0] = torch.randint(S, (batch_size, K), generator=gen)
        u = torch.rand(steps, batch_size, K, 1, generator=gen, dtype=torch.float64)  # time-major: contiguous rows
        source = torch.arange(K)
        for t in range(1, steps):
            rows = cdf[source, states[..., t - 1]]  # (B, K, S)
            states[..., t] = torch.searchsorted(rows, u[t])[..., 0].clamp_max(S - 1)
        return states

    def sample(self, gen, split, index, batch_size) -> Batch:
        K, S, T = self.config.sources, self.config.states, self.seq_len
        if self.config.mode == "interleaved":
            per_source = T // K + 2
            states = self.chains(gen, batch_size, per_source)  # (B, K, n)
            ids = states + (torch.arange(K) * S)[:, None]  # source k uses ids k·S .. k·S + S - 1
            tokens = ids.transpose(1, 2).flatten(1)[:, : T + 1]  # step t belongs to source t mod K
            return Batch(tokens[:, :-1], tokens[:, 1:], extras={"states": states})
        states = self.chains(gen, batch_size, T + 1)  # (B, K, T+1)
        obs = sum(self.maps[k][states[:, k]] for k in range(K))  # (B, T+1, D)
        if self.config.noise:
            obs = obs + self.config.noise * torch.randn(obs.shape, generator=gen, dtype=torch.float64)
        obs = obs.float()
        return Batch(obs[:, :-1], obs[:, 1:], extras={"states": states})

    def loss(self, outputs, batch) -> torch.Tensor:
        return super().loss(outputs, batch) if self.kind == "tokens" else squared_error(outputs, batch)

    def describe(self) -> dict:
        K, S = self.config.sources, self.config.states
        info = {"name": self.name, "kind": self.kind, "mode": self.config.mode, "transitions": self.transitions.tolist()}
        if self.kind == "tokens":
            info["factors"] = {"source_of_step": f"t mod {K}", "ids_of_source": [[k * S, (k + 1) * S - 1] for k in range(K)]}
        else:
            info["factors"] = {"maps": self.maps.tolist(), "observation": "x_t = sum_k maps[k][s_k,t]"}
        return info
