# %% [markdown]
# # Lesson 1 — From kernel regression to attention
#
# An associative memory stores pairs (key, value). Asked with a query q, it answers with a weighted
# average of the stored values, each weighted by how close its key lies to the query:
#
# $$f(q) = \sum_i w_i(q)\, v_i, \qquad w_i(q) = \frac{e^{-\beta \|q - k_i\|^2}}{\sum_j e^{-\beta \|q - k_j\|^2}}.$$
#
# This is the Gaussian Nadaraya–Watson estimator of E[V | K = q], the building block of every Memory
# Mosaic. In five steps we will see what the bandwidth β does, how to choose it from the data alone,
# and why, when keys have unit norm, this memory *is* the softmax attention of a transformer.
#
# The maths: `docs/kernel-regression.md`. Paper: Zhang et al., *Memory Mosaics* (ICLR 2025), section
# "Associative memories".

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
import torch

from sandbox.memories import NadarayaWatson, causal_kernel_regression, kernel_regression, kernel_weights
from sandbox.teaching import check

torch.manual_seed(0)
gen = torch.Generator().manual_seed(0)


def g(x):  # the function the memory should recover from noisy pairs
    return torch.sin(2 * math.pi * x) + 0.5 * torch.sin(6 * math.pi * x)


n, noise = 100, 0.3
keys = torch.rand(n, 1, generator=gen, dtype=torch.float64)  # (n, 1)
values = g(keys) + noise * torch.randn(n, 1, generator=gen, dtype=torch.float64)  # (n, 1)
queries = torch.linspace(0, 1, 400, dtype=torch.float64)[:, None]  # (400, 1)

# %% [markdown]
# ## Step 1: the bandwidth decides between averaging and copying
#
# β is the inverse squared bandwidth (β = 1/(2h²)). A small β gives every stored pair nearly the same
# weight: the memory answers the mean of the values wherever you ask. A large β puts all the weight on
# the nearest key: the memory copies one noisy value. The right panel shows the weights w_i(q) of the
# single query q = 0.3.

# %%
betas = (3.0, 100.0, 3000.0, 1e5)
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
left.scatter(keys[:, 0], values[:, 0], s=10, color="0.6", label="stored pairs")
left.plot(queries[:, 0], g(queries)[:, 0], "k--", lw=1, label="g (truth)")
for beta in betas:
    left.plot(queries[:, 0], kernel_regression(queries, keys, values, beta)[:, 0], label=f"β = {beta:g}")
left.set(xlabel="query q", ylabel="retrieved f(q)", title="retrieval for four bandwidths")
left.legend(fontsize=8)
q = torch.tensor([[0.3]], dtype=torch.float64)
order = keys[:, 0].argsort()
for beta in betas:
    w = kernel_weights(q, keys, values, beta)[0]  # (n,)
    right.plot(keys[order, 0], w[order], marker=".", label=f"β = {beta:g}")
right.axvline(0.3, color="k", lw=0.8)
right.set(xlabel="key k_i", ylabel="weight w_i(0.3)", yscale="log", ylim=(1e-6, 1.5), title="weights of the query 0.3")
right.legend(fontsize=8)
fig.tight_layout()
print("β → 0 answers the mean of the values:", float(kernel_regression(q, keys, values, 1e-9)), "vs", float(values.mean()))

# %% [markdown]
# ## Step 2: bias and variance against β
#
# Draw many noisy data sets from the same g and fit each with the same β. The **bias²** is how far
# the *average* fit lies from g (large when β is small: the fit is over-smoothed); the **variance** is
# how much the fits scatter around their average (large when β is large: each fit copies noise). Their
# sum is the expected squared error, smallest in between.

# %%
draws, beta_grid = 40, torch.logspace(0, 5, 26, dtype=torch.float64)
data_keys = torch.rand(draws, n, 1, generator=gen, dtype=torch.float64)  # (draws, n, 1)
data_values = g(data_keys) + noise * torch.randn(draws, n, 1, generator=gen, dtype=torch.float64)
grid = torch.linspace(0.05, 0.95, 200, dtype=torch.float64)[:, None]  # away from the edges
bias2, variance = [], []
for beta in beta_grid:
    fits = kernel_regression(grid.expand(draws, -1, -1), data_keys, data_values, float(beta))[..., 0]  # (draws, 200)
    bias2.append(float((fits.mean(0) - g(grid)[:, 0]).pow(2).mean()))
    variance.append(float(fits.var(0).mean()))
total = [b + v for b, v in zip(bias2, variance)]
best_beta = float(beta_grid[min(range(len(total)), key=total.__getitem__)])

fig, ax = plt.subplots(figsize=(6.5, 3.8))
ax.plot(beta_grid, bias2, label="bias²")
ax.plot(beta_grid, variance, label="variance")
ax.plot(beta_grid, total, "k", lw=2, label="bias² + variance")
ax.set(xscale="log", yscale="log", xlabel="β", ylabel="mean squared error", title=f"{draws} data sets of {n} noisy pairs")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## Step 3: choosing β from one data set: leave-one-out cross-validation
#
# In practice there is one data set and g is unknown. Leave-one-out cross-validation predicts each
# stored value from all the *other* pairs and keeps the β with the smallest squared error.
# `NadarayaWatson().fit(x, y)` does exactly this; `cv_scores_` holds the error of every candidate.
# The dotted line is the best β of Step 2, which needed 40 data sets *and* the truth.

# %%
model = NadarayaWatson().fit(keys, values)
cv_betas, cv_errors = zip(*sorted(model.cv_scores_.items()))
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
left.plot(cv_betas, cv_errors, marker=".")
left.axvline(model.beta_, color="C3", label=f"leave-one-out choice β = {model.beta_:.0f}")
left.axvline(best_beta, color="k", ls=":", label=f"best β of Step 2 = {best_beta:.0f}")
left.set(xscale="log", xlabel="β", ylabel="leave-one-out squared error")
left.legend(fontsize=8)
right.scatter(keys[:, 0], values[:, 0], s=10, color="0.6")
right.plot(queries[:, 0], g(queries)[:, 0], "k--", lw=1, label="g")
right.plot(queries[:, 0], model.predict(queries), "C3", label="cross-validated fit")
right.set(xlabel="query q", ylabel="f(q)")
right.legend(fontsize=8)
fig.tight_layout()
print(f"leave-one-out β = {model.beta_:.1f}; best β with the truth known = {best_beta:.1f}")

# %% [markdown]
# ## Step 4: with unit keys, the memory is softmax attention
#
# Expand the squared distance: ‖q − k‖² = ‖q‖² − 2 q·k + ‖k‖². When the query and every key have norm
# 1, this is 2 − 2 q·k, and the constant 2 cancels in the normalisation:
#
# $$w_i(q) = \mathrm{softmax}_i(2\beta\, q\cdot k_i),$$
#
# dot-product attention with scale 2β. On the left, unit keys: every Gaussian weight equals its
# attention weight (the points lie on the diagonal). On the right, keys of random lengths: attention
# favours long keys, the Gaussian kernel does not, and the two disagree.

# %%
dim, beta = 8, 2.0
unit_q = torch.nn.functional.normalize(torch.randn(6, dim, generator=gen, dtype=torch.float64), dim=-1)  # (6, 8)
unit_k = torch.nn.functional.normalize(torch.randn(30, dim, generator=gen, dtype=torch.float64), dim=-1)  # (30, 8)
scaled_k = unit_k * (0.3 + 1.4 * torch.rand(30, 1, generator=gen, dtype=torch.float64))  # lengths 0.3 .. 1.7
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for ax, k, title in ((axes[0], unit_k, "unit keys"), (axes[1], scaled_k, "keys of random lengths")):
    gaussian = kernel_weights(unit_q, k, None, beta)
    attention = torch.softmax(2 * beta * unit_q @ k.T, dim=-1)
    ax.scatter(gaussian.flatten(), attention.flatten(), s=8)
    ax.plot([0, 1], [0, 1], "k", lw=0.6)
    ax.set(xscale="log", yscale="log", xlim=(1e-4, 1), ylim=(1e-4, 1), xlabel="Gaussian weight",
           ylabel="softmax(2β q·k)", title=f"{title}: largest gap {float((gaussian - attention).abs().max()):.1e}")
fig.tight_layout()

# %% [markdown]
# ## Step 5: in a sequence, a memory answers from the past only
#
# In a sequence the query at time t is the key at time t, and only pairs stored *before* t may answer.
# The weight matrix is strictly lower-triangular, and the first step retrieves nothing (zeros). This is
# the causal self-attention of a decoder — with no query map: the key is its own query.

# %%
T = 24
seq_keys = torch.nn.functional.normalize(torch.randn(T, 4, generator=gen, dtype=torch.float64), dim=-1)  # (T, 4)
seq_values = torch.arange(T, dtype=torch.float64)[:, None]  # (T, 1): value s is the time s
mask = torch.ones(T, T).tril(-1).bool()  # query t may use pair s < t
weights = kernel_weights(seq_keys, seq_keys, None, 3.0, mask=mask)  # (T, T)
outputs = causal_kernel_regression(seq_keys, seq_values, beta=3.0)[:, 0]  # (T,)
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
image = left.imshow(weights, cmap="viridis")
left.set(xlabel="stored pair s", ylabel="query t", title="weights: strict past only")
fig.colorbar(image, ax=left)
right.plot(outputs, marker="o")
right.set(xlabel="t", ylabel="f_t (a weighted mean of earlier times)", title="retrieved value")
fig.tight_layout()
print("first output:", float(outputs[0]), "| same as the masked reference:",
      bool(torch.allclose(outputs, (weights @ seq_values)[:, 0])))

# %% [markdown]
# ## Exercises
#
# Answer each by replacing `None`, then run the "check your answer" cell below it.
#
# **1a.** Reading the plot of Step 2: which β gives the smallest expected squared error? (Any value
# within a factor 2 of the best is right.)

# %%
answer_1a = None  # a number, e.g. 10.0

# %%
check("1a", answer_1a, lambda b: abs(math.log(float(b) / best_beta)) < math.log(2),
      hint="find the bottom of the black curve of Step 2 and read β on the horizontal axis (log scale).",
      why=f"The best β on this grid is {best_beta:.0f}.")

# %% [markdown]
# **1b.** As β → 0, what does the memory of Step 1 answer to the query q = 0.9? Give a number (to 3
# decimals). Compute it without calling `kernel_regression`.

# %%
answer_1b = None  # a number

# %%
check("1b", answer_1b, lambda a: abs(float(a) - float(values.mean())) < 1e-3,
      hint="when β → 0 every weight tends to the same value: what is a weighted mean with equal weights?",
      why="Equal weights 1/n: the mean of the stored values, whatever the query.")

# %% [markdown]
# **1c.** Write `attention_weights(q, k, beta)` that returns the memory's weights (Tq, n) for
# unit-norm queries q (Tq, d) and keys k (n, d) with a single call to `torch.softmax` (no distances).

# %%
answer_1c = None  # a function (q, k, beta) -> (Tq, n) weights

# %%
def _attention_is_right(f):
    q = torch.nn.functional.normalize(torch.randn(5, 6, dtype=torch.float64), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(9, 6, dtype=torch.float64), dim=-1)
    return all(torch.allclose(f(q, k, b), kernel_weights(q, k, None, b), atol=1e-10) for b in (0.5, 3.0, 40.0))


check("1c", answer_1c, _attention_is_right,
      hint="Step 4: on the unit sphere ‖q − k‖² = 2 − 2 q·k. Which scale goes in front of q @ k.T?",
      why="softmax(2β q·kᵀ) is the Gaussian kernel regression on the unit sphere.")

# %% [markdown]
# **1d.** In Step 5, the output at t = 0 is 0. Why, in one word: is it because the memory is *empty*
# at t = 0, or because the stored value there is *zero*? Answer `"empty"` or `"zero"`.

# %%
answer_1d = None  # "empty" or "zero"

# %%
check("1d", answer_1d, lambda a: a.strip().lower() == "empty",
      hint="what can the query at t = 0 see, if only pairs s < t may answer?",
      why="No pair s < 0 exists: a query with no admissible pair retrieves zeros, whatever the values.")

# %% [markdown]
# ## Solutions
#
# For the lecturer (and for checking): the answers, run through the same checks.

# %%
from sandbox.teaching import recheck  # runs an exercise's check again, on another answer

answer_1a = best_beta
answer_1b = float(values.mean())


def answer_1c(q, k, beta):
    return torch.softmax(2 * beta * q @ k.T, dim=-1)


answer_1d = "empty"
for name, answer in (("1a", answer_1a), ("1b", answer_1b), ("1c", answer_1c), ("1d", answer_1d)):
    recheck(name, answer)
