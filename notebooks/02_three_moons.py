# %% [markdown]
# # Lesson 2 — Predictive disentanglement: three moons
#
# Three moons circle a planet at different periods; we observe the position of each (a 6-dimensional
# vector) and predict the next observation. A memory predicts well once its context holds an earlier
# moment *like now*. For all three moons together, "like now" recurs only after the combined period
# (the least common multiple of the three); for one moon alone, after that moon's own period, much
# sooner. So a network of three small memories, trained to predict, gains by giving each memory one
# moon: training *disentangles* the task. A single memory of the same size cannot.
#
# We train one contextual memory layer with 1 unit of width 6 and with 3 units of width 2, watch the
# units lock onto the moons, and read it off the weights.
#
# The maths: `docs/three-moons.md`, `docs/metrics.md`. Paper: Zhang et al., *Memory Mosaics* (ICLR
# 2025), section "Predictive disentanglement".

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

from sandbox.analysis.disentanglement import disentanglement_score, moon_assignment, unit_energy
from sandbox.analysis.generation import free_running_error
from sandbox.config import RunConfig, TrainConfig
from sandbox.models import ContextualLayerConfig
from sandbox.teaching import check
from sandbox.train import train
from tasks.three_moons import ThreeMoonsConfig, combined_period

torch.manual_seed(0)
task = ThreeMoonsConfig().build(seed=0)
info = task.describe()
moon_periods = info["val_periods_in_steps"]  # the held-out triple (1, 2, 3), in steps
combined = info["val_combined_period_in_steps"]
print("training triples:", info["train_periods"])
print("validation triple:", info["val_periods"], "-> moon periods (steps):", [round(p, 1) for p in moon_periods],
      "combined:", round(combined, 1))

# %% [markdown]
# ## Step 1: the observations
#
# Each moon contributes two coordinates (sin, cos of its angle). The sequences are 800 steps long;
# the model sees them one step at a time and must predict the next. Dotted lines: one period of each
# moon, and the combined period after which the whole sky repeats.

# %%
val = task.batch("val", 0, 1)
fig, ax = plt.subplots(figsize=(11, 3.5))
for j in range(3):
    ax.plot(val.inputs[0, :400, 2 * j], label=f"moon {j}: period {moon_periods[j]:.0f} steps")
    ax.axvline(moon_periods[j], color=f"C{j}", ls=":")
ax.axvline(combined, color="k", ls=":", label=f"combined period {combined:.0f}")
ax.set(xlabel="step t", ylabel="sin(angle)", title="one validation sequence (first coordinate of each moon)")
ax.legend(fontsize=8, loc="upper right")
fig.tight_layout()

# %% [markdown]
# ## Step 2: train 1 unit against 3 units, and watch the units specialise
#
# The model (`ContextualLayerConfig`): keys W_φ x_t, values W_ψ x_{t+1}, retrieval over the strict past
# with attention scale 2β = 50, output W_o y_t. Each map is made of 2×2 "complex" blocks, so block (i, j) says how much
# pair i reads moon j. A callback records, during training, each unit's share of its W_φ energy on
# each moon. (The lesson trains for STEPS steps on a small batch to stay under a minute; the paper
# trains 500 steps at batch 64.)

# %%
STEPS, BATCH = 150, 8
out = tempfile.mkdtemp(prefix="lesson2-")
runs, shares = {}, {}
for units in (1, 3):
    trace = []

    def record_shares(model, task, step, units=units, trace=trace):
        energy = unit_energy(model.memory.keys_map.block_moduli().detach(), units)  # (units, moons)
        trace.append((step, (energy / energy.sum(-1, keepdim=True)).numpy()))
        return {}

    config = RunConfig(task=ThreeMoonsConfig(), model=ContextualLayerConfig(units=units),
                       train=TrainConfig(steps=STEPS, batch_size=BATCH, lr=1e-2, schedule="linear",
                                         final_lr_fraction=5e-4, eval_every=10, eval_batches=1, log_every=5),
                       seed=0, out=out, name=f"units{units}")
    runs[units] = train(config, callbacks=(record_shares,), progress=False)
    shares[units] = trace

fig, axes = plt.subplots(1, 4, figsize=(14, 3.3))
for units, style in ((1, "C0"), (3, "C3")):
    rows = [h for h in runs[units].history if h["split"] == "train"]
    axes[0].plot([h["step"] for h in rows], [h["loss"] for h in rows], style, label=f"{units} unit(s)")
axes[0].set(yscale="log", xlabel="step", ylabel="training loss", title="loss")
axes[0].legend()
steps = [s for s, _ in shares[3]]
for u in range(3):
    share = np.stack([m[u] for _, m in shares[3]])  # (evaluations, moons)
    for j in range(3):
        axes[u + 1].plot(steps, share[:, j], label=f"moon {j}")
    axes[u + 1].set(ylim=(0, 1), xlabel="step", title=f"3 units: unit {u}'s share per moon")
axes[1].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Step 3: read the weights
#
# The modulus of every 2×2 block of W_φ (keys), W_ψ (values) and W_o (read-out). With 3 units, each
# unit owns one row pair of W_φ: if training disentangled the task, each row reads one moon and the
# matrix looks like a permutation. With 1 unit, every row reads every moon. The disentanglement score
# is, per unit, the largest share of its energy on one moon, rescaled so that an even reading of the
# three moons (share 1/3) counts 0 and a single moon counts 1, averaged over units.

# %%
fig, axes = plt.subplots(2, 3, figsize=(10, 6.5))
scores = {}
for row, units in enumerate((1, 3)):
    memory = runs[units].model.memory
    for col, (name, layer) in enumerate((("W_φ", memory.keys_map), ("W_ψ", memory.values_map), ("W_o", memory.out_map))):
        moduli = layer.block_moduli().detach()  # (3, 3) pairs × pairs
        axes[row, col].imshow(moduli, cmap="Greys", vmin=0)
        axes[row, col].set(title=f"{units} unit(s): |{name}| blocks", xticks=range(3), yticks=range(3),
                           xlabel="moon (input pair)" if name != "W_o" else "key pair", ylabel="output pair")
    scores[units], _ = disentanglement_score(memory.keys_map.block_moduli().detach(), units)
    print(f"{units} unit(s): disentanglement score {scores[units]:.3f}; the moons each unit reads (90% of its "
          f"energy): {moon_assignment(memory.keys_map.block_moduli().detach(), units)}")
fig.tight_layout()

# %% [markdown]
# ## Step 4: where each unit looks
#
# The attention weights of each unit on a validation sequence: for every query t (after one combined
# period), the lag t − s of its largest weight. A unit that reads one moon finds its best match a whole
# number of periods of *that* moon back (dotted lines: the three moon periods and the combined one); the
# single unit must look back a whole combined period, where all three moons are in place again. The
# periods are in ratio 1 : 2 : 3, so a lag that fits one moon often fits another too: the lags hint,
# the weights of Step 3 decide.

# %%
window = int(combined) + 150
fig, axes = plt.subplots(1, 2, figsize=(12, 3.5), sharey=True)
for ax, units in zip(axes, (1, 3)):
    model = runs[units].model
    _, cache = model.run_with_cache(val.inputs[:, :window], ["memory.weights"])
    weights = cache["memory.weights"][0]  # (units, T, T)
    burn_in = int(combined) + 10
    lags = torch.arange(burn_in, window) - weights[:, burn_in:].argmax(-1)  # (units, T - burn_in)
    for u in range(units):
        ax.hist(lags[u].numpy(), bins=np.arange(0, window, 4), alpha=0.6, label=f"unit {u}")
    for p in (*moon_periods, combined):
        ax.axvline(p, color="k", ls=":", lw=0.8)
    ax.set(xlabel="lag t − s of the largest weight", title=f"{units} unit(s)")
    ax.legend(fontsize=8)
axes[0].set_ylabel("queries")
fig.tight_layout()

# %% [markdown]
# ## Step 5: predicting the future from a short context
#
# Give each model the first c true observations, then let it run free for 25 steps on its own
# predictions. The 3-unit model's error falls as soon as the context covers each moon's own period;
# the 1-unit model needs the combined period.

# %%
contexts = [20, 50, 80, 110, 140, 200, 280, 360]
truth = task.batch("val", 1, 16)
observations = torch.cat([truth.inputs, truth.targets[:, -1:]], 1)  # (16, T + 1, 6)
fig, ax = plt.subplots(figsize=(7, 3.8))
errors = {}
for units in (1, 3):
    errors[units] = free_running_error(runs[units].model, observations, contexts, horizon=25)
    ax.plot(contexts, errors[units], marker="o", label=f"{units} unit(s)")
for p in (*moon_periods, combined):
    ax.axvline(p, color="k", ls=":", lw=0.8)
ax.set(yscale="log", xlabel="context length c (steps)", ylabel="mean |generated − truth|", title="25 free-running steps")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## Exercises
#
# **2a.** Which moon does unit 0 of the 3-unit model read? Answer with the moon's index (0, 1 or 2),
# from the plots of Steps 2 and 3.

# %%
answer_2a = None  # 0, 1 or 2

# %%
energy3 = unit_energy(runs[3].model.memory.keys_map.block_moduli().detach(), 3)  # (units, moons)
check("2a", answer_2a, lambda a: int(a) == int(energy3[0].argmax()) and float(a) == int(a),
      hint="in the W_φ panel of the 3-unit model, the top row (unit 0): which column is darkest?")

# %% [markdown]
# **2b.** Write `score(moduli, units)` that returns the disentanglement score from a (pairs × moons)
# matrix of block moduli, as defined in Step 3 (energy = squared modulus, summed over a unit's pairs;
# share = energy / the unit's total; score = (largest share − 1/K) / (1 − 1/K) with K moons, averaged).

# %%
answer_2b = None  # a function (moduli, units) -> float


# %%
def _score_is_right(f):
    gen = torch.Generator().manual_seed(1)
    cases = [(torch.rand(6, 3, generator=gen, dtype=torch.float64), u) for u in (1, 2, 3, 6)]
    cases.append((torch.eye(3, dtype=torch.float64), 3))
    return all(abs(float(f(m, u)) - disentanglement_score(m, u)[0]) < 1e-9 for m, u in cases)


check("2b", answer_2b, _score_is_right,
      hint="reshape the squared moduli to (units, pairs per unit, moons), sum over the pairs, take each "
           "unit's largest share, rescale it from [1/K, 1] to [0, 1] and average.")

# %% [markdown]
# **2c.** One of the training triples is (0.5, 1, 3). Its combined period is the least common
# multiple of the three periods. How many *steps* is it? (dt = 0.0225 time units per step; 1 % accuracy.)

# %%
answer_2c = None  # a number of steps

# %%
check("2c", answer_2c, lambda a: abs(float(a) / (combined_period((0.5, 1, 3)) / task.dt) - 1) < 0.01,
      hint="lcm(0.5, 1, 3) = 3 time units; divide by dt.")

# %% [markdown]
# ## Solutions

# %%
from sandbox.teaching import recheck  # runs an exercise's check again, on another answer


def answer_2b(moduli, units):
    energy = moduli.pow(2).reshape(units, -1, moduli.shape[1]).sum(1)  # (units, moons)
    largest, moons = energy.max(-1).values / energy.sum(-1), moduli.shape[1]
    return float(((largest - 1 / moons) / (1 - 1 / moons)).mean())


solutions = {"2a": int(energy3[0].argmax()), "2b": answer_2b, "2c": 3 / task.dt}
for name, answer in solutions.items():
    recheck(name, answer)
