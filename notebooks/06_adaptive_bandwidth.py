# %% [markdown]
# # Lesson 6 — Memory Mosaics v2: the bandwidth should grow with the number of stored pairs
#
# A contextual memory fills up as a sequence goes on: at step t it holds t − 1 pairs. With few pairs,
# a narrow kernel (large β) finds almost nothing near the query and copies one noisy value; with many
# pairs, a wide kernel (small β) blurs away detail it could afford to keep. So the best β is not a
# constant: it grows with the number n of stored pairs. Kernel-regression theory says how fast — β
# like n^{2/(p+4)} for p-dimensional keys — and Memory Mosaics v2 builds it into every memory:
#
# $$\beta = \beta_1 n^{\alpha} + \beta_0, \qquad \beta_0 \ge 0,\ \beta_1 > 0,\ 0 < \alpha < 1.$$
#
# We measure the best β against n on the reference kernel regression, fit that rule, and compare a
# memory with a fixed β against one whose β grows.
#
# The maths: `docs/kernel-regression.md` (section "Consistency: the bandwidth should grow with n"),
# `docs/contextual-and-persistent-memory.md` (section "Memory Mosaics v2"). Paper: Zhang & Bottou,
# *Memory Mosaics at scale* (NeurIPS 2025), section "Memory Mosaics v2" (adaptive bandwidth).

# %%
# Set-up: makes `import sandbox` work, and does nothing when it already does. Opened from a clone of
# the repository, it installs that clone (editable); elsewhere (a hosted notebook service) it installs
# the pip requirement in the environment variable SANDBOX_REPOSITORY (e.g. git+https://...).
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

if importlib.util.find_spec("sandbox") is None:
    here = Path.cwd().resolve()
    clone = next((p for p in (here, *here.parents) if (p / "sandbox" / "teaching.py").is_file()), None)
    requirement = ["-e", str(clone)] if clone else [os.environ.get("SANDBOX_REPOSITORY", "")]
    if not requirement[-1]:
        raise RuntimeError("the sandbox is not installed and this folder is not a clone of it: open the "
                           "notebook inside a clone, or set SANDBOX_REPOSITORY to its pip requirement")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *requirement])
    if clone:
        sys.path.insert(0, str(clone))  # an editable install is seen by new processes only

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.optimize import curve_fit

from sandbox.memories import kernel_regression, kernel_weights
from sandbox.teaching import check

gen = torch.Generator().manual_seed(0)


def g(x):  # (..., p) -> (..., 1): a smooth function of the keys
    return torch.sin(2 * math.pi * x).sum(-1, keepdim=True)


def draw(draws, n, p, noise=0.5):
    """`draws` independent data sets of n pairs with p-dimensional keys: keys, values, clean g(keys)."""
    keys = torch.rand(draws, n, p, generator=gen, dtype=torch.float64)  # (draws, n, p)
    clean = g(keys)  # (draws, n, 1)
    return keys, clean + noise * torch.randn(clean.shape, generator=gen, dtype=torch.float64), clean


# %% [markdown]
# ## Step 1: the best β for each number of stored pairs
#
# For n stored pairs (1-dimensional keys, noisy values), the error to the true function g at fresh
# queries, for a grid of β, averaged over many data sets. Each curve has its minimum at the best β
# for that n (dots): it moves to the right as n grows.

# %%
ns = [10, 20, 40, 80, 160, 320, 640, 1280]
betas = torch.logspace(0, 4.5, 22, dtype=torch.float64)
queries = torch.rand(1, 200, 1, generator=gen, dtype=torch.float64)  # (1, 200, 1) fresh queries


def error_curve(n, p=1, draws=16, betas=betas, queries=queries):
    keys, values, _ = draw(draws, n, p)
    truth = g(queries)  # (1, Tq, 1)
    return torch.stack([(kernel_regression(queries, keys, values, float(b)) - truth).pow(2).mean() for b in betas])


errors = {n: error_curve(n) for n in ns}
best = {n: float(betas[errors[n].argmin()]) for n in ns}
fig, ax = plt.subplots(figsize=(7, 4))
for i, n in enumerate(ns):
    color = plt.cm.viridis(i / (len(ns) - 1))
    ax.plot(betas, errors[n], color=color, label=f"n = {n}")
    ax.plot(best[n], float(errors[n].min()), "o", color=color)
ax.set(xscale="log", yscale="log", xlabel="β", ylabel="mean squared error to g", title="1-D keys: error against β for each n")
ax.legend(fontsize=7, ncol=2)
fig.tight_layout()

# %% [markdown]
# ## Step 2: fit β = β₁ n^α + β₀
#
# The best β against n, on log-log axes, with the rule fitted to it (least squares on log β), and the
# slope the theory gives for 1-dimensional keys, α = 2/(1 + 4) = 0.4. The theory's rate is asymptotic
# (n → ∞); at these n the measured growth is usually steeper, and the fitted β₀ and β₁ absorb what the
# asymptotics leave out — which is why Memory Mosaics v2 learns β₀, β₁ and α rather than fixing them.

# %%
def rule(n, beta1, alpha, beta0):
    return beta1 * np.power(n, alpha) + beta0


n_arr, best_arr = np.array(ns, float), np.array([best[n] for n in ns])
(beta1, alpha, beta0), _ = curve_fit(lambda n, b1, a, b0: np.log(rule(n, b1, a, b0)), n_arr, np.log(best_arr),
                                     p0=(10.0, 0.4, 1.0), bounds=([1e-6, 0.0, 0.0], [1e6, 1.0, 1e4]))
fig, ax = plt.subplots(figsize=(6.5, 4))
ax.plot(n_arr, best_arr, "o", label="best β (Step 1)")
dense = np.logspace(1, math.log10(ns[-1]), 100)
ax.plot(dense, rule(dense, beta1, alpha, beta0), label=f"β = {beta1:.1f}·n^{alpha:.2f} + {beta0:.1f}")
ax.plot(dense, best_arr[0] * (dense / ns[0]) ** 0.4, "k:", label="slope 0.4 (theory, p = 1)")
ax.set(xscale="log", yscale="log", xlabel="stored pairs n", ylabel="β")
ax.legend(fontsize=8)
fig.tight_layout()
print(f"fitted rule: β₁ = {beta1:.2f}, α = {alpha:.3f}, β₀ = {beta0:.2f}")

# %% [markdown]
# ## Step 3: a memory that fills up along a sequence
#
# Now the pairs arrive one per step, as in a contextual memory, and at step t the memory answers the
# query x_t from the t − 1 pairs before it. With a fixed β, the memory is tuned for one n only; with the
# fitted rule, β_t = β₁ (t − 1)^α + β₀ follows the number of pairs. Below, the error to g at each step
# (averaged over sequences, smoothed), for two fixed β and for the rule.
#
# The weights with a per-step β are written out: the logits −β_t ‖x_t − x_s‖² for s < t, softmax over s.

# %%
def sequence_weights(keys, beta_t):
    """(..., T, T) strict-past weights with a β per query step: softmax_s(−β_t ‖k_t − k_s‖²), s < t."""
    sq = (keys[..., :, None, :] - keys[..., None, :, :]).pow(2).sum(-1)  # (..., T, T)
    logits = -beta_t[:, None] * sq
    past = torch.ones(keys.shape[-2], keys.shape[-2], dtype=torch.bool).tril(-1)
    weights = torch.softmax(logits.masked_fill(~past, float("-inf")), -1)
    return torch.nan_to_num(weights)  # the first step has no pair: its row is 0


T = 1024
keys, values, clean = draw(16, T, 1)
stored = torch.arange(T, dtype=torch.float64)  # pairs stored before step t
# The per-step form with a constant β is the reference kernel regression, step by step:
check_beta = torch.full((T,), 50.0, dtype=torch.float64)
mask = torch.ones(T, T, dtype=torch.bool).tril(-1)
assert torch.allclose(sequence_weights(keys[0], check_beta)[1:], kernel_weights(keys[0], keys[0], None, 50.0, mask=mask)[1:])

schedules = {f"fixed β = {best[20]:.0f} (best at n = 20)": torch.full((T,), best[20], dtype=torch.float64),
             f"fixed β = {best[1280]:.0f} (best at n = 1280)": torch.full((T,), best[1280], dtype=torch.float64),
             "β = β₁ n^α + β₀ (fitted)": torch.as_tensor(rule(stored.numpy(), beta1, alpha, beta0))}
smooth = lambda x: np.convolve(x, np.ones(32) / 32, mode="valid")  # noqa: E731
step_error = {}
fig, ax = plt.subplots(figsize=(7.5, 4))
for label, beta_t in schedules.items():
    f = sequence_weights(keys, beta_t) @ values  # (16, T, 1)
    step_error[label] = (f - clean).pow(2).mean((0, 2))[1:].numpy()  # (T - 1,) from step 1 on
    ax.plot(np.arange(1, T)[31:], smooth(step_error[label]), label=label)
ax.set(xscale="log", yscale="log", xlabel="step t (= pairs stored + 1)", ylabel="squared error to g (smoothed)")
ax.legend(fontsize=8)
fig.tight_layout()
for label, err in step_error.items():
    print(f"{label:>36}: mean error {err.mean():.4f} over the whole sequence, {err[:64].mean():.4f} over its first 64 steps, "
          f"{err[-256:].mean():.4f} over its last 256")

# %% [markdown]
# ## Step 4: the exponent depends on the key dimension
#
# In p dimensions a neighbourhood of radius h holds a fraction h^p of the pairs, so the bandwidth must
# shrink more slowly to keep enough of them: the theory's α = 2/(p + 4). Below, the best β against n for
# p = 1, 2, 4 (fewer data sets, so noisier). What shows most clearly is that the same n calls for a
# smaller β in more dimensions: the pairs cover the space more thinly. The measured slopes are, as in
# Step 2, above the asymptotic values at these small n.

# %%
slopes = {}
fig, ax = plt.subplots(figsize=(6.5, 4))
for p in (1, 2, 4):
    q = torch.rand(1, 200, p, generator=gen, dtype=torch.float64)
    ns_p = [20, 80, 320, 1280]
    best_p = [float(betas[error_curve(n, p=p, draws=8, queries=q).argmin()]) for n in ns_p]
    slopes[p] = float(np.polyfit(np.log(ns_p), np.log(best_p), 1)[0])
    ax.plot(ns_p, best_p, "o-", label=f"p = {p}: slope {slopes[p]:.2f} (theory {2 / (p + 4):.2f})")
ax.set(xscale="log", yscale="log", xlabel="stored pairs n", ylabel="best β")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Step 5: the same rule inside a Memory Mosaic
#
# In the sandbox's models the rule is one switch: `MosaicConfig(adaptive_beta=True)` (or
# `model.version=2`, which also turns on the other v2 changes). Each contextual memory unit then learns
# its own β₁, α and β₀, and a query that sees n stored pairs uses β₁ n^α + β₀. Below, the β of a freshly
# built memory against n, beside the rule fitted in Step 2: every unit starts on the same gentle curve
# (a small α), and training moves each unit's β₁, α and β₀ to suit what that unit remembers.

# %%
from sandbox.memories import MemoryOptions  # noqa: E402
from sandbox.memories.contextual import ContextualMemory  # noqa: E402

torch.manual_seed(0)
unit_memory = ContextualMemory(32, 4, options=MemoryOptions(adaptive_beta=True))
pairs = torch.arange(1, 2049)
with torch.no_grad():
    unit_beta = unit_memory.beta(pairs)  # (units, n)
slope = float(np.polyfit(np.log(pairs[512:].numpy()), np.log(unit_beta[0, 512:].numpy()), 1)[0])
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for u, curve in enumerate(unit_beta):
    ax.plot(pairs, curve, lw=3 - u * 0.6, label=f"unit {u} at initialisation")
ax.plot(pairs, rule(pairs.numpy().astype(float), beta1, alpha, beta0), "k--", label="the rule fitted in Step 2")
ax.set(xscale="log", yscale="log", xlabel="stored pairs n", ylabel="β", title=f"a v2 contextual memory (initial slope ≈ {slope:.2f})")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Exercises
#
# **6a.** What exponent α does the theory give for keys of dimension p = 6? (A number.)

# %%
answer_6a = None  # a number

# %%
check("6a", answer_6a, lambda a: abs(float(a) - 2 / (6 + 4)) < 1e-3,
      hint="α = 2/(p + 4).", why="2/(6 + 4) = 0.2: the higher the dimension, the slower the kernel may narrow.")

# %% [markdown]
# **6b.** Write `adaptive_beta(n, beta1, alpha, beta0)` that returns β for a tensor `n` of stored-pair
# counts, and rejects (with a `ValueError`) an α outside (0, 1).

# %%
answer_6b = None  # a function (n, beta1, alpha, beta0) -> tensor


# %%
def _adaptive_is_right(f):
    n = torch.arange(0, 50, dtype=torch.float64)
    right = torch.allclose(f(n, 2.0, 0.5, 1.0), 2.0 * n.sqrt() + 1.0)
    for bad in (0.0, 1.5):
        try:
            f(n, 2.0, bad, 1.0)
            return False
        except ValueError:
            pass
    return right


check("6b", answer_6b, _adaptive_is_right, hint="β₁·n**α + β₀, after checking 0 < α < 1.")

# %% [markdown]
# **6c.** In Step 3, which schedule has the smallest mean error over the whole sequence? Answer with
# its label, as printed under the plot.

# %%
answer_6c = None  # one of the labels of Step 3

# %%
check("6c", answer_6c, lambda a: a == min(step_error, key=lambda k: step_error[k].mean()),
      hint="compare the numbers printed under the plot of Step 3 (copy the label exactly).")

# %% [markdown]
# ## Solutions

# %%
from sandbox.teaching import recheck  # runs an exercise's check again, on another answer


def answer_6b(n, beta1, alpha, beta0):
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return beta1 * n**alpha + beta0


solutions = {"6a": 0.2, "6b": answer_6b, "6c": min(step_error, key=lambda k: step_error[k].mean())}
for name, answer in solutions.items():
    recheck(name, answer)
