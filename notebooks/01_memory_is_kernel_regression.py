# %% [markdown]
# # 1. An associative memory is a kernel regression
#
# A memory holds pairs (key, value). Asked with a query q, it answers with a weighted average of the
# stored values, weighting each pair by how close its key is to the query:
#
#     f(q) = Σᵢ wᵢ(q) vᵢ,    wᵢ(q) = exp(-β‖q - kᵢ‖²) / Σⱼ exp(-β‖q - kⱼ‖²)
#
# This is the Nadaraya–Watson estimator of E[V | K = q] (docs/kernel-regression.md). β is the inverse squared
# bandwidth: small β averages widely, large β copies the nearest key's value.
#
# This notebook is a plain Python file with `# %%` cells: run it as a script
# (`.venv/bin/python notebooks/01_memory_is_kernel_regression.py`) or open it as a notebook in an
# editor that understands the percent format. Figures go to `out/notebooks/`.

# %%
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from sandbox.memories import causal_kernel_regression, kernel_regression, kernel_weights

OUT = Path("out/notebooks")
OUT.mkdir(parents=True, exist_ok=True)
gen = torch.Generator().manual_seed(0)

# %% [markdown]
# ## The bandwidth decides between averaging and copying

# %%
keys = torch.rand(40, 1, generator=gen, dtype=torch.float64)  # (N, 1)
values = torch.sin(6 * keys) + 0.2 * torch.randn(40, 1, generator=gen, dtype=torch.float64)  # (N, 1)
queries = torch.linspace(0, 1, 300, dtype=torch.float64)[:, None]  # (Tq, 1)

fig, ax = plt.subplots(figsize=(7, 4))
ax.scatter(keys[:, 0], values[:, 0], color="0.5", s=12, label="stored pairs")
for beta in (1.0, 30.0, 1000.0, 1e5):
    ax.plot(queries[:, 0], kernel_regression(queries, keys, values, beta)[:, 0], label=f"β = {beta:g}")
ax.legend()
ax.set(xlabel="query", ylabel="retrieved value")
fig.savefig(OUT / "01_bandwidth.png", dpi=120)
print("β → 0 gives the mean:", float(kernel_regression(queries[:1], keys, values, 1e-9)), "≈", float(values.mean()))

# %% [markdown]
# ## On the unit sphere it is attention
# When every key and query has norm 1, ‖q - k‖² = 2 - 2 q·k, so the weights are softmax(2β q·k):
# dot-product attention with scale 2β.

# %%
q = torch.nn.functional.normalize(torch.randn(5, 8, generator=gen, dtype=torch.float64), dim=-1)
k = torch.nn.functional.normalize(torch.randn(12, 8, generator=gen, dtype=torch.float64), dim=-1)
beta = 3.0
gap = (kernel_weights(q, k, None, beta) - torch.softmax(2 * beta * q @ k.T, -1)).abs().max()
print(f"largest difference between Gaussian weights and softmax attention: {gap:.2e}")

# %% [markdown]
# ## A memory over a sequence only sees the past
# In a sequence, the query at time t is the key at t, and only pairs stored before t answer it: the
# first step retrieves nothing (zeros).

# %%
seq_keys = torch.randn(6, 2, generator=gen, dtype=torch.float64)
seq_values = torch.arange(6, dtype=torch.float64)[:, None]
print(causal_kernel_regression(seq_keys, seq_values, beta=1.0)[:, 0])
