"""Three moons (docs/three-moons.md): one contextual memory layer with 1 unit of width 6 against 3 units of
width 2, trained to predict the next observation of three moons.

Panels: (a) attention of each unit on a validation sequence, with the lags of each moon's period and of
the combined period; (b) mean |generated - truth| over 25 free-running steps against the context
length; (c) block moduli of W_φ, W_ψ, W_o. Beyond the paper: the moons each unit reads (from its W_φ
energy) and a disentanglement score per model (1: one moon per unit, 0: every unit reads all moons
evenly), `sandbox.analysis.disentanglement`.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import torch

from sandbox.analysis.disentanglement import disentanglement_score, moon_assignment
from sandbox.analysis.generation import free_running_error
from sandbox.config import RunConfig, TrainConfig
from sandbox.io import write_json
from sandbox.models import ContextualLayerConfig
from sandbox.pool import map_processes
from sandbox.train import train
from tasks.three_moons import ThreeMoonsConfig

from figures.tune import model_lr, with_tuned

PRESETS = with_tuned("three-moons", {
    # CI: seconds, not a reproduction.
    "tiny": dict(steps=60, batch_size=8, seeds=[0], eval_sequences=16, contexts=[20, 60, 140, 280], length=400),
    # A 2-core CPU within 1.5 minutes: smaller batch, fewer steps, seeds and validation sequences.
    "quick": dict(steps=150, batch_size=16, seeds=[0, 1], eval_sequences=64,
                  contexts=[10, 25, 45, 70, 90, 115, 135, 170, 200, 240, 270, 300, 350, 420, 500], length=800),
    # The published settings: 500 steps, batch 64, 5 seeds, 512 validation sequences.
    "paper": dict(steps=500, batch_size=64, seeds=[0, 1, 2, 3, 4], eval_sequences=512,
                  contexts=list(range(10, 700, 15)), length=800),
})
UNITS = (1, 3)
HORIZON = 25
LR, FINAL_LR = 1e-2, 5e-6  # the paper's: linear decay from 1e-2 to 5e-6
# `python -m figures.tune three-moons` chooses each model's learning rate on the validation loss over this
# grid (saved in figures/tuned/three-moons.json); the decay still ends at 5e-6.
TUNING = {"grid": [3e-3, 1e-2, 3e-2, 1e-1, 3e-1], "metric": "loss", "higher_is_better": False}


def model_name(units: int) -> str:
    return f"{units}_unit{'s' if units > 1 else ''}"


def tuning_runs(preset: dict) -> dict:
    """For `python -m figures.tune`: each model's run (first seed) as a function of its learning rate."""
    return {model_name(u): (lambda lr, u=u: run_config(preset, u, preset["seeds"][0], Path("."), lr)) for u in UNITS}


def run_config(preset: dict, units: int, seed: int, out: Path, lr: float = LR) -> RunConfig:
    return RunConfig(
        task=ThreeMoonsConfig(length=preset["length"]),
        model=ContextualLayerConfig(units=units),
        train=TrainConfig(steps=preset["steps"], batch_size=preset["batch_size"], lr=lr, schedule="linear",
                          final_lr_fraction=FINAL_LR / lr, weight_decay=0.0, eval_every=0,
                          log_every=max(1, preset["steps"] // 20)),
        seed=seed, out=str(out / "runs"), name=f"units{units}-seed{seed}")


def analyse(model, task, preset: dict, units: int, keep_attention: bool) -> dict:
    memory = model.memory
    device = next(model.parameters()).device  # the analysis runs where training ran (device auto)
    moduli = {name: getattr(memory, attr).block_moduli().detach().cpu()
              for name, attr in (("W_phi", "keys_map"), ("W_psi", "values_map"), ("W_o", "out_map"))}
    score, unit_scores = disentanglement_score(moduli["W_phi"], units)
    reads = moon_assignment(moduli["W_phi"], units)  # per unit, the moons (0, 1, 2) it reads
    info = task.describe()
    window = int(info["val_combined_period_in_steps"]) + 100  # P/dt + 100 steps, as in the paper
    val = task.batch("val", 0, preset["eval_sequences"])
    _, cache = model.run_with_cache(val.inputs[:1, :window].to(device), ["memory.weights"])
    weights = cache["memory.weights"][0].cpu()  # (U, T, T)
    observations = torch.cat([val.inputs, val.targets[:, -1:]], 1).to(device)
    errors = free_running_error(model, observations, preset["contexts"], HORIZON)
    result = {"units": units, "score": score, "unit_scores": unit_scores, "reads": reads,
              "moduli": {k: v.tolist() for k, v in moduli.items()}, "generation_error": errors}
    if keep_attention:  # every second step, 4 decimals: enough for the picture, small on disk
        result["attention"] = np.round(weights[:, ::2, ::2].numpy(), 4).tolist()
    return result


def one_run(preset: dict, units: int, seed: int, out: Path, progress: bool | None = None) -> dict:
    """Train the `units`-unit model with `seed` and analyse it (a worker process's job with `--jobs`)."""
    lr = model_lr(preset, model_name(units), LR)
    result = train(run_config(preset, units, seed, Path(out), lr), progress=progress, overwrite=True)
    analysis = analyse(result.model, result.task, preset, units, keep_attention=seed == preset["seeds"][0])
    print(f"  {units} unit(s), seed {seed}: disentanglement {analysis['score']:.3f}, "
          f"moons read {analysis['reads']}, val loss {result.final_metrics['loss']:.4f}")
    return {"seed": seed, "lr": lr, "val_loss": result.final_metrics["loss"], **analysis}


def compute(preset: dict, out: Path, progress: bool | None = None, jobs: int = 1) -> dict:
    """Every (units, seed) run, on `jobs` processes (`sandbox.pool`), then the summary over seeds."""
    out = Path(out)
    calls = [(preset, units, seed, out, progress if jobs == 1 else False) for units in UNITS for seed in preset["seeds"]]
    runs = map_processes(one_run, calls, jobs)
    info = ThreeMoonsConfig(length=preset["length"]).build(0).describe()
    summary = {}
    for units in UNITS:
        scores = [r["score"] for r in runs if r["units"] == units]
        summary[f"{units}_units"] = {"score_mean": statistics.mean(scores), "scores": scores,
                                     "seeds_one_moon_per_unit": sum(one_moon_per_unit(r["reads"])
                                                                    for r in runs if r["units"] == units)}
    results = {"preset": preset, "contexts": preset["contexts"], "horizon": HORIZON,
               "moon_periods_in_steps": info["val_periods_in_steps"],
               "combined_period_in_steps": info["val_combined_period_in_steps"], "dt": info["dt"],
               "summary": summary, "runs": runs}
    write_json(out / "results.json", results)
    return results


def plot(out: Path) -> list[Path]:
    from sandbox.plotting import plt, save_figure

    out = Path(out)
    results = json.loads((out / "results.json").read_text())
    periods, combined = results["moon_periods_in_steps"], results["combined_period_in_steps"]
    first = {units: next(r for r in results["runs"] if r["units"] == units) for units in UNITS}
    written = []

    # (a) attention maps, one panel per unit, lag lines at each period.
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
    panels = [(1, 0)] + [(3, u) for u in range(3)]
    for ax, (units, u) in zip(axes, panels):
        attention = np.array(first[units]["attention"][u])  # every second step
        ax.imshow(attention, cmap="viridis", aspect="auto", extent=(0, 2 * attention.shape[1], 2 * attention.shape[0], 0))
        span = 2 * attention.shape[0]
        for lag, style in [(p, ":") for p in periods] + [(combined, "--")]:
            ax.plot([0, span - lag], [lag, span], "w" + style, lw=0.8)
        ax.set(title=f"{units} unit{'s' if units > 1 else ''}: unit {u + 1} reads {moon_names(first[units]['reads'][u], periods)}",
               xlabel="key step s", ylabel="query step t" if u == 0 else None)
    fig.suptitle("Attention on a validation sequence; dotted: moon periods, dashed: combined period")
    written.append(save_figure(fig, out / "three_moons_attention",
                               {"attention": {f"{k}_units": first[k]["attention"] for k in UNITS},
                                "moon_periods_in_steps": periods, "combined_period_in_steps": combined})["png"])

    # (b) free-running error against context length.
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    curves = {}
    for units, colour in zip(UNITS, ("C0", "C1")):
        errors = np.array([r["generation_error"] for r in results["runs"] if r["units"] == units])
        # The median over seeds: one seed whose generation runs away must not hide the others.
        curves[f"{units}_units"] = {"median": np.median(errors, 0).tolist(), "mean": errors.mean(0).tolist(),
                                    "per_seed": errors.tolist()}
        ax.plot(results["contexts"], np.median(errors, 0), marker="o", ms=3, color=colour,
                label=f"{units} unit{'s' if units > 1 else ''} (median of {len(errors)} seeds)")
        for row in errors:
            ax.plot(results["contexts"], row, color=colour, lw=0.6, alpha=0.35)
    for p in periods:
        ax.axvline(p, color="0.6", ls=":", lw=1)
    ax.axvline(combined, color="0.3", ls="--", lw=1, label="combined period")
    ax.set(xlabel="context length (steps)", ylabel=f"mean |generated - truth| over {results['horizon']} steps", yscale="log",
           title="Free-running prediction on the held-out triple (1, 2, 3)")
    ax.legend()
    written.append(save_figure(fig, out / "three_moons_generation",
                               {"contexts": results["contexts"], "curves": curves, "moon_periods_in_steps": periods,
                                "combined_period_in_steps": combined})["png"])

    # (c) block moduli of the three maps.
    fig, axes = plt.subplots(2, 3, figsize=(10, 6.4))
    for row, units in enumerate(UNITS):
        for col, name in enumerate(("W_phi", "W_psi", "W_o")):
            moduli = np.array(first[units]["moduli"][name])
            axes[row, col].imshow(moduli, cmap="magma")
            axes[row, col].set(title=f"{units} unit{'s' if units > 1 else ''}: |{name}| blocks",
                               xlabel="moon (input pair)" if name != "W_o" else "unit pair", ylabel="output pair")
            axes[row, col].set_xticks(range(3))
            axes[row, col].set_yticks(range(3))
    fig.suptitle(" / ".join(f"{u} unit{'s' if u > 1 else ''}: disentanglement {results['summary'][f'{u}_units']['score_mean']:.2f}"
                            for u in UNITS))
    fig.tight_layout()
    written.append(save_figure(fig, out / "three_moons_moduli",
                               {"moduli": {f"{u}_units": first[u]["moduli"] for u in UNITS},
                                "summary": results["summary"]})["png"])
    return written


def one_moon_per_unit(reads: list[list[int]]) -> bool:
    """Every unit reads a single moon and no two units read the same one."""
    return all(len(m) == 1 for m in reads) and len({m[0] for m in reads}) == len(reads)


def moon_names(moons: list[int], periods: list[float]) -> str:
    """Moons by their period in steps: [0, 2] -> '44.4+133.3'."""
    return "+".join(f"{periods[m]:.1f}" for m in moons)


def summary(results: dict) -> list[tuple[str, str, str, str]]:
    """Gallery rows (quantity, ours, published, our target) from the saved results."""
    rows = []
    periods = results["moon_periods_in_steps"]
    for units, target in ((3, "near 1 (each unit reads one moon)"), (1, "near 0 (one unit must read all three moons)")):
        s = results["summary"][f"{units}_units"]
        scores = ", ".join(f"{v:.3f}" for v in s["scores"])
        rows.append((f"{units}-unit disentanglement score (per seed)", f"{scores} (mean {s['score_mean']:.3f})",
                     "— (shown as W_φ moduli, no number)", target))
    for units, published, target in (
            (3, "each unit reads one moon (W_φ moduli)", "one moon per unit, all three moons covered, in ≥ 4 of 5 seeds"),
            (1, "the one unit reads all moons", "the unit reads all three moons")):
        runs = [r for r in results["runs"] if r["units"] == units]
        seeds = "; ".join(f"seed {r['seed']}: " + ", ".join(f"u{u + 1}→{moon_names(m, periods)}" for u, m in enumerate(r["reads"]))
                          for r in runs)
        if units == 3:
            seeds += f" ({sum(one_moon_per_unit(r['reads']) for r in runs)}/{len(runs)} seeds one moon per unit)"
        rows.append((f"{units}-unit: unit → moon(s) read, by period in steps (per seed)", seeds, published, target))
    return rows
