"""Memory-recall and attention probes of the induction-head transformer (docs/metrics.md).

A trained matrix W is read as an associative memory between random embeddings: its recall score is

    R(W) = mean_i 1[ argmax_j v_jᵀ W u_i = target(i) ]

for the input vectors u_i it should map and the output vectors v_j it should map them to.
- W_O²: u_i = W_V² w_E(i) (the value of token i), v_j = w_U(j), target i: copy the attended token out.
- W_K²: the query w_E(i) of a trigger i should score highest the layer-1 image W_O¹ W_V¹ w_E(j) of j = i,
  which layer 1 wrote into the position after each occurrence of i: argmax_j w_E(i)ᵀ W_K² W_O¹ W_V¹ w_E(j) = i.
  Only triggers have outputs to recall, so the score is over the triggers (all tokens when triggers are
  drawn per sequence): averaged over the whole vocabulary it could not exceed K/V plus chance.
- W_K¹: the query p_t should score the key p_{t-1} highest: argmax_s p_tᵀ W_K¹ p_s = t - 1 (also for
  t < 64, which the paper reports separately: early positions are learned first).
"""

from __future__ import annotations

import torch


def recall(W: torch.Tensor, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """R(W) for inputs u_i (n, d), outputs v_j (m, d) and targets (n,) indices into the outputs."""
    scores = (inputs @ W.T) @ outputs.T  # (n, m): v_jᵀ W u_i
    return float((scores.argmax(-1) == targets).double().mean())


@torch.no_grad()
def memory_probes(model, triggers: torch.Tensor | None = None) -> dict[str, float]:
    """The four recall probes of an InductionTransformer; `triggers` (K,) are the tokens whose induction
    key W_K² must store (default: every token, as when triggers are drawn per sequence)."""
    E, U, P = model.token_embedding, model.unembedding, model.positions
    tokens = torch.arange(len(E), device=E.device)
    positions = torch.arange(1, len(P), device=P.device)
    early = positions[positions < 64]
    def previous_position(ts):  # argmax_s p_tᵀ W_K¹ p_s = t - 1
        return float(((P[ts] @ model.W_K1 @ P.T).argmax(-1) == ts - 1).double().mean())

    images = E @ (model.W_O1 @ model.W_V1).T  # (V, d): what layer 1 writes after each token
    queries = tokens if triggers is None else triggers.to(E.device)
    induction_key = float(((E[queries] @ model.W_K2 @ images.T).argmax(-1) == queries).double().mean())
    return {
        "W_O2": recall(model.W_O2, E @ model.W_V2.T, U, tokens),
        "W_K2": induction_key,
        "W_K1": previous_position(positions),
        "W_K1_t<64": previous_position(early),
    }


@torch.no_grad()
def attention_probes(model, tokens: torch.Tensor) -> dict[str, float]:
    """Layer 1: attention mass on the previous token. Layer 2: mass on the token that followed the
    previous occurrence of the current token (at positions whose token occurred before). `tokens` may
    live on any device: they are moved to the model's."""
    tokens = tokens.to(model.W_K1.device)
    _, cache = model.run_with_cache(tokens, ["layer1.weights", "layer2.weights"])
    first, second = cache["layer1.weights"], cache["layer2.weights"]  # (B, T, T)
    B, T = tokens.shape
    t = torch.arange(1, T)
    previous_token = float(first[:, t, t - 1].mean())
    same = tokens[:, :, None] == tokens[:, None, :]  # (B, T, T): z_t == z_s
    earlier = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril(-1)
    last = torch.where(same & earlier, torch.arange(T, device=tokens.device), -1).amax(-1)  # (B, T) previous occurrence
    has = (last >= 0) & (last + 1 < torch.arange(T, device=tokens.device))  # the follower is in the strict past
    rows, cols = has.nonzero(as_tuple=True)
    induction = float(second[rows, cols, last[rows, cols] + 1].mean()) if len(rows) else 0.0
    return {"layer1_previous_token": previous_token, "layer2_induction": induction}


def memory_capacity(d: int, n: int, seed: int = 0) -> float:
    """Recall accuracy of W = Σ_i v_{f(i)} u_iᵀ with u, v ~ N(0, I/d) and a random map f (docs/trigger-bigrams.md)."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(n, d, generator=gen, dtype=torch.float64) / d**0.5
    v = torch.randn(n, d, generator=gen, dtype=torch.float64) / d**0.5
    f = torch.randint(n, (n,), generator=gen)
    W = v[f].T @ u  # (d, d) = Σ_i v_{f(i)} u_iᵀ
    return recall(W, u, v, f)
