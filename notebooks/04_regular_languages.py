# %% [markdown]
# # Lesson 4 — In-context learning of regular languages
#
# Each sequence is written in a regular language the model has never seen: a random automaton emits
# strings, separated by `|`. To predict which letters may come next, a model must work out the
# language from the sequence itself — in-context learning, in a setting where the right answer is known
# exactly. We compare three learners: the in-context n-gram predictors (no training at all), a GPT and a
# memory mosaic, trained on sequences from 100 automata and tested on 500 others.
#
# The maths: `docs/regular-languages.md`, `docs/metrics.md`. Papers: Akyürek et al., *In-context
# language learning: architectures and algorithms* (ICML 2024), section "RegBench"; Zhang et al.,
# *Memory Mosaics* (ICLR 2025), the in-context learning experiments.

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

from sandbox.config import RunConfig, TrainConfig
from sandbox.models import GPTConfig, MosaicConfig
from sandbox.teaching import check
from sandbox.train import train
from tasks.regular_languages import RegularLanguagesConfig, ngram_predictions, regular_language_scores

torch.manual_seed(0)
TRAIN_AUTOMATA, TEST_AUTOMATA = 100, 64  # the paper tests on 500; 64 keeps the lesson short
config = RegularLanguagesConfig(train_automata=TRAIN_AUTOMATA, eval_automata=TEST_AUTOMATA)
task = config.build(seed=0)
LETTERS = task.describe()["vocab"]  # id -> character: '.' padding, a..r, '|' separator


def spell(ids):
    return "".join(LETTERS[i] for i in ids)


# %% [markdown]
# ## Step 1: an automaton and its sequence
#
# A random automaton: 4 to 12 states, 1 to 3 outgoing edges per state, each with its own letter; state
# 0 starts and every state accepts. It is minimised, and no test automaton has the language of a
# training one. Left: its transitions (a square at state s, letter x means "x may follow in state s";
# the number is the next state). Right: where the sequence is, state by state.

# %%
automaton = task.sets["test"].automata[0]
table = np.full((automaton.states, 18), np.nan)
for state, edges in enumerate(automaton.delta):
    for symbol, target in edges:
        table[state, symbol - 1] = target
sequence = task.sets["test"].tokens[0, : int(task.sets["test"].lengths[0])]
print(spell(sequence.tolist())[:200], "...")
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1, 1.6]})
left.imshow(~np.isnan(table), cmap="Blues", vmin=0, vmax=1.5, aspect="auto")
for (state, column), target in np.ndenumerate(table):
    if not np.isnan(target):
        left.text(column, state, int(target), ha="center", va="center", fontsize=8)
left.set(xticks=range(18), xticklabels=list(LETTERS[1:19]), yticks=range(automaton.states),
         xlabel="letter", ylabel="state", title=f"test automaton 0: {automaton.states} states")
right.plot(task.sets["test"].states[0, :120], drawstyle="steps-post")
right.set(xlabel="position", ylabel="state", title="the state after each token (first 120)")
fig.tight_layout()

# %% [markdown]
# ## Step 2: in-context n-grams, learners with no training
#
# Predict the next letter from the counts of what followed the last n − 1 letters *in this string so
# far* (counts restart at each `|`), backing off to shorter histories for what has not been seen. Two
# scores, at every position but the first: **accuracy** (is the most likely letter a legal one?) and
# **total variation distance** to the true next-letter distribution (0 is perfect).

# %%
test = task.batch_of_rows("test", torch.arange(TEST_AUTOMATA))
ngram_probabilities = {n: ngram_predictions(test.inputs, n) for n in (1, 2, 3)}  # (B, L, 20) each
ngram = {n: regular_language_scores(p, test) for n, p in ngram_probabilities.items()}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
for ax, key in zip(axes, ("accuracy", "tvd")):
    ax.bar([f"{n}-gram" for n in ngram], [s[key] for s in ngram.values()], color="0.6")
    ax.set(title=key, ylim=(0, 1))
fig.tight_layout()
print({f"{n}-gram": {k: round(v, 3) for k, v in s.items()} for n, s in ngram.items()})

# %% [markdown]
# ## Step 3: train a GPT and a memory mosaic
#
# Both see one fixed sequence per training automaton, over and over, and are evaluated on the test
# automata as they train. The paper trains for 200 epochs; this lesson runs 50 steps (800 sequences), so
# both models are far from converged — the gallery's quick preset, `figures/README.md`, shows longer
# runs. Even so, the mosaic is already near the in-context 2-gram, and the GPT far below it.

# %%
STEPS = 50
out = tempfile.mkdtemp(prefix="lesson4-")
models = {"memory mosaic": MosaicConfig(d=64, layers=2, units=4), "GPT": GPTConfig(d=64, layers=2, heads=2)}
runs = {}
for name, model_config in models.items():
    runs[name] = train(RunConfig(task=config, model=model_config,
                                 train=TrainConfig(steps=STEPS, batch_size=16, lr=3e-3, weight_decay=0.1,
                                                   warmup_steps=STEPS // 10, grad_clip=1.0, eval_every=10,
                                                   eval_batches=1, log_every=10),
                                 seed=0, out=out, name=name.replace(" ", "-")), progress=False)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for ax, key in zip(axes, ("accuracy", "tvd")):
    for name, run in runs.items():
        rows = [h for h in run.history if h["split"] == "val"]
        ax.plot([h["step"] for h in rows], [h[key] for h in rows], marker=".", label=name)
    for n, style in ((2, ":"), (3, "--")):
        ax.axhline(ngram[n][key], color="k", ls=style, lw=1, label=f"in-context {n}-gram")
    ax.set(xlabel="training step", title=f"validation {key}")
axes[0].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Step 4: learning in context, position by position
#
# The accuracy at each position of the test sequences, in windows of 25 positions: every learner starts
# knowing nothing about the language and improves as the sequence reveals it.

# %%
window = 25
scored = test.extras["scored"]  # (B, L)
truth = test.extras["next_dist"]  # (B, L, 20)


def legal_by_position(probabilities):
    legal = truth.gather(-1, probabilities.argmax(-1, keepdim=True))[..., 0] > 0  # (B, L)
    edges = range(0, 300, window)
    return [float(legal[:, a:a + window][scored[:, a:a + window]].double().mean()) for a in edges]


curves = {f"in-context {n}-gram": legal_by_position(ngram_probabilities[n]) for n in (2, 3)}
with torch.no_grad():
    for name, run in runs.items():
        run.model.eval()
        curves[name] = legal_by_position(torch.softmax(run.model(test.inputs).double(), -1))
fig, ax = plt.subplots(figsize=(7, 3.8))
for name, curve in curves.items():
    ax.plot(np.arange(len(curve)) * window + window / 2, curve, marker=".", label=name)
ax.set(xlabel="position in the sequence", ylabel="accuracy", title="test automata")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Exercises
#
# **4a.** Which letters may start a string of test automaton 0 (Step 1)? Answer with a string of letters,
# in any order, e.g. `"adk"`.

# %%
answer_4a = None  # a string of letters

# %%
start_letters = {LETTERS[symbol] for symbol, _ in automaton.delta[0]}
check("4a", answer_4a, lambda a: set(a.replace(" ", "")) == start_letters and len(a.replace(" ", "")) == len(start_letters),
      hint="read row 0 of the transition table of Step 1: every letter with a number in it.")

# %% [markdown]
# **4b.** Write `tvd(p, q)` that returns the total variation distance between two next-letter
# distributions p and q (tensors of shape (..., 20)), one number per position.

# %%
answer_4b = None  # a function (p, q) -> (...) distances


# %%
def _tvd_is_right(f):
    gen = torch.Generator().manual_seed(4)
    p = torch.softmax(torch.randn(7, 20, generator=gen, dtype=torch.float64), -1)
    q = torch.softmax(torch.randn(7, 20, generator=gen, dtype=torch.float64), -1)
    return torch.allclose(f(p, q), 0.5 * (p - q).abs().sum(-1)) and torch.allclose(f(p, p), torch.zeros(7, dtype=torch.float64))


check("4b", answer_4b, _tvd_is_right,
      hint="half the sum, over the 20 ids, of the absolute differences.")

# %% [markdown]
# **4c.** A predictor that always puts all its probability on a letter the automaton allows would
# score accuracy 1. What total variation distance would it score at a state with 3 outgoing letters,
# if it chose one of them? (A number.)

# %%
answer_4c = None  # a number

# %%
check("4c", answer_4c, lambda a: abs(float(a) - 2 / 3) < 1e-3,
      hint="the truth gives 1/3 to each of the three letters; the predictor gives 1 to one of them.",
      why="½ (|1 − 1/3| + 1/3 + 1/3) = 2/3: accuracy says whether the guess is legal, TVD whether the whole distribution is.")

# %% [markdown]
# ## Solutions

# %%
from sandbox.teaching import recheck  # runs an exercise's check again, on another answer

solutions = {"4a": "".join(sorted(start_letters)), "4b": lambda p, q: 0.5 * (p - q).abs().sum(-1), "4c": 2 / 3}
for name, answer in solutions.items():
    recheck(name, answer)
