# %% [markdown]
# # Lesson 3 — Induction heads two ways
#
# Text from a fixed bigram model (the character statistics of Shakespeare), except after a few
# *trigger* characters: in each sequence, every trigger is always followed by the same character,
# drawn afresh for that sequence. The bigram statistics can be learned once; what follows a trigger
# must be read from the context. The mechanism that does it is an **induction head**: find the previous
# occurrence of the current token, and copy what came after it.
#
# A transformer needs two layers for this — one to write "my previous token was …" into each position,
# one to look it up. We watch a simplified two-layer transformer learn it, reading each trained matrix
# as an associative memory; then we see a one-layer memory mosaic do the same thing at once.
#
# The maths: `docs/trigger-bigrams.md`, `docs/metrics.md`. Papers: Bietti et al., *Birth of a
# Transformer: a memory viewpoint* (NeurIPS 2023), sections "Synthetic setup", "The associative memory
# viewpoint" and "Empirical study"; Zhang et al., *Memory Mosaics* (ICLR 2025), section "Memory Mosaics".

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
import tempfile
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notebook bars (sandbox.train): none shown here

import matplotlib.pyplot as plt
import numpy as np
import torch

from sandbox.analysis.probes import attention_probes, memory_capacity, memory_probes
from sandbox.config import RunConfig, TrainConfig
from sandbox.models import GPTConfig, MosaicConfig
from sandbox.models.induction import InductionConfig
from sandbox.teaching import check
from sandbox.train import train
from tasks.bigram import BigramConfig, TriggerBigrams

torch.manual_seed(0)
T = 128  # sequence length (the paper: 256)
task = BigramConfig(seq_len=T, loss_on="predictable").build(seed=0)  # the 5 most frequent characters trigger
out = tempfile.mkdtemp(prefix="lesson3-")

# %% [markdown]
# ## Step 1: the task
#
# One sequence, written out, and the label of every position: 0 = an ordinary bigram, 1 = the first
# occurrence of a trigger (what follows cannot be known yet), 2 and more = a repeat (what follows is in
# the context). Only the repeats are scored: that is the in-context part of the task.

# %%
batch = task.batch("val", 0, 6)
text = "".join(task.vocab[i] for i in batch.inputs[0]).replace("\n", "⏎")
triggers = "".join(task.vocab[i] for i in batch.extras["triggers"][0])
print(f"triggers of sequence 0: {triggers!r}")
print(text)
fig, ax = plt.subplots(figsize=(11, 2.6))
image = ax.imshow(batch.labels.clamp(max=3), cmap="viridis", aspect="auto", interpolation="nearest")
ax.set(xlabel="position t", ylabel="sequence", title="labels: 0 bigram, 1 first occurrence, 2+ repeat (capped at 3)")
fig.colorbar(image, ax=ax)
fig.tight_layout()

# %% [markdown]
# ## Step 2: a two-layer transformer learns it, one memory at a time
#
# The simplified transformer of Bietti et al.: frozen random token and position vectors, frozen value
# and read-out maps; only three matrices are trained — W_K¹ (layer-1 keys), W_K² (layer-2 keys) and W_O²
# (layer-2 output). Each is read as an associative memory between random vectors, with a recall probe
# (the fraction of the associations it should store that it does store):
#
# - W_O²: the value of token i → the output direction of i (copy what was attended);
# - W_K²: a trigger i → where i was (the layer-1 image of i);
# - W_K¹: position t → position t − 1 (look one step back).
#
# The paper's finding: W_O² is learned before W_K¹, and W_K¹ at early positions before late ones.
# Here the triggers are the same 5 characters in every sequence, so W_K² has only 5 associations to
# store and gets them almost at once; when the triggers change with every sequence (the gallery's
# `random_triggers` run, `figures/README.md`) it must store one per character and the full order
# W_O² → W_K² → W_K¹ shows.

# %%
STEPS, probe_every = 200, 20


def probes(model, task, step):
    return {**memory_probes(model, task.fixed_triggers), **attention_probes(model, task.batch("val", 0, 8).inputs)}


config = RunConfig(task=task.config, model=InductionConfig(d=128),
                   train=TrainConfig(steps=STEPS, batch_size=32, optimizer="sgd", lr=2.0, momentum=0.9,
                                     weight_decay=1e-4, schedule="constant", eval_every=probe_every,
                                     eval_batches=1, log_every=probe_every),
                   seed=0, out=out, name="transformer")
transformer = train(config, callbacks=(probes,), progress=False)
curve = [h for h in transformer.history if h["split"] == "val"]
steps = [h["step"] for h in curve]

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
for key, label in (("W_O2", "W_O² (copy)"), ("W_K2", "W_K² (find the trigger)"), ("W_K1", "W_K¹ (previous position)"),
                   ("W_K1_t<64", "W_K¹, t < 64")):
    left.plot(steps, [h[key] for h in curve], marker=".", label=label)
left.set(xlabel="training step", ylabel="recall probe", ylim=(-0.02, 1.02), title="each trained matrix as a memory")
left.legend(fontsize=8)
right.plot(steps, [h["in_context_accuracy"] for h in curve], "k", marker=".", label="in-context accuracy")
right.plot(steps, [h["layer1_previous_token"] for h in curve], label="layer 1 → previous token")
right.plot(steps, [h["layer2_induction"] for h in curve], label="layer 2 → after previous occurrence")
right.set(xlabel="training step", ylim=(-0.02, 1.02), title="behaviour")
right.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Step 3: the two attention patterns
#
# On one sequence: layer 1 attends from each position to the one just before it (a line under the
# diagonal) — after this short training, only at the early positions, which are learned first (the red
# curve of Step 2); layer 2 attends from a repeated trigger to the positions right after its earlier
# occurrences.

# %%
tokens = task.batch("val", 1, 1).inputs
_, cache = transformer.model.run_with_cache(tokens, ["layer1.weights", "layer2.weights"])
fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
for ax, name in zip(axes, ("layer1.weights", "layer2.weights")):
    ax.imshow(cache[name][0], cmap="Greys", vmin=0, vmax=1)
    ax.set(xlabel="attended position s", ylabel="query position t", title=name.replace(".weights", ""))
fig.tight_layout()

# %% [markdown]
# ## Step 4: one layer of memory mosaic is enough
#
# A contextual memory's key is a leaky average of the recent past (mostly the current token) and the
# value it stores at s peeks at the token *after* s. Retrieving over the strict past with a sharp
# kernel finds the earlier positions holding the same token and returns what followed them: an
# induction head in one layer, with no positions. A one-layer GPT has no way to do this; a two-layer
# GPT can, but learns far more slowly: trained, as here, with the loss on the repeats only, it barely
# starts within hundreds of steps (`figures/induction_heads.py` records the measurements and why). All
# three have width 64 and train with the same optimiser for the same 80 steps.

# %%
compared = {"mosaic, 1 layer": MosaicConfig(d=64, layers=1, units=4),
            "GPT, 1 layer": GPTConfig(d=64, layers=1, heads=4),
            "GPT, 2 layers": GPTConfig(d=64, layers=2, heads=4)}
accuracy = {}
for name, model_config in compared.items():
    run = train(RunConfig(task=task.config, model=model_config,
                          train=TrainConfig(steps=80, batch_size=16, lr=1e-2, warmup_steps=8, grad_clip=1.0,
                                            eval_every=8, eval_batches=1, log_every=8),
                          seed=0, out=out, name=name.replace(", ", "-").replace(" ", "")), progress=False)
    accuracy[name] = [(h["step"], h["in_context_accuracy"]) for h in run.history if h["split"] == "val"]
fig, ax = plt.subplots(figsize=(7, 3.8))
for name, points in accuracy.items():
    ax.plot(*zip(*points), marker=".", label=name)
ax.set(xlabel="training step", ylabel="in-context accuracy", ylim=(-0.02, 1.02), title="repeated triggers predicted correctly")
ax.legend()
fig.tight_layout()
print({name: round(points[-1][1], 3) for name, points in accuracy.items()})

# %% [markdown]
# ## Step 5: how much can one matrix remember?
#
# W = Σᵢ v_{f(i)} uᵢᵀ stores n associations between random vectors of dimension d. Reading it with uᵢ
# and picking the best-matching v recovers f(i) — reliably once d is large enough for the n random
# vectors to be nearly orthogonal.

# %%
dims = [16, 32, 64, 128, 256, 512]
capacity = {n: [memory_capacity(d, n, seed=0) for d in dims] for n in (64, 256)}
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for n, acc in capacity.items():
    ax.plot(dims, acc, marker="o", label=f"n = {n} associations")
ax.set(xscale="log", xlabel="dimension d", ylabel="recall accuracy", title="capacity of W = Σ v uᵀ")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## Exercises
#
# **3a.** In Step 2, which probe first reached 0.5? Answer `"W_O2"`, `"W_K2"` or `"W_K1"`.

# %%
answer_3a = None  # "W_O2", "W_K2" or "W_K1"

# %%
first_half = {k: next((h["step"] for h in curve if h[k] >= 0.5), float("inf")) for k in ("W_O2", "W_K2", "W_K1")}
check("3a", answer_3a, lambda a: first_half[a] == min(first_half.values()),
      hint="on the left panel of Step 2, which curve crosses 0.5 at the earliest step?")

# %% [markdown]
# **3b.** Write `labels(inputs, triggers)`: for token ids `inputs` (B, T) and trigger ids `triggers`
# (B, K), return (B, T) with 0 where the token is not a trigger and, where it is, how many times that
# token has occurred so far (1 the first time).

# %%
answer_3b = None  # a function (inputs, triggers) -> labels


# %%
def _labels_are_right(f):
    b = task.batch("val", 3, 4)
    return torch.equal(f(b.inputs, b.extras["triggers"]).long(), TriggerBigrams.labels(b.inputs, b.extras["triggers"]))


check("3b", answer_3b, _labels_are_right,
      hint="compare inputs[:, :, None] with triggers[:, None, :], then count the matches so far with cumsum.")

# %% [markdown]
# **3c.** From Step 5: what is the smallest d of the grid at which n = 256 associations are recalled
# with accuracy at least 0.9?

# %%
answer_3c = None  # one of 16, 32, 64, 128, 256, 512

# %%
check("3c", answer_3c, lambda a: int(a) == next(d for d, acc in zip(dims, capacity[256]) if acc >= 0.9),
      hint="follow the n = 256 curve of Step 5 to the first point at or above 0.9.")

# %% [markdown]
# ## Solutions

# %%
from sandbox.teaching import recheck  # runs an exercise's check again, on another answer


def answer_3b(inputs, triggers):
    hits = (inputs[:, :, None] == triggers[:, None, :]).long()  # (B, T, K)
    return (hits * hits.cumsum(1)).sum(-1)


solutions = {"3a": min(first_half, key=first_half.get), "3b": answer_3b,
             "3c": next(d for d, acc in zip(dims, capacity[256]) if acc >= 0.9)}
for name, answer in solutions.items():
    recheck(name, answer)
