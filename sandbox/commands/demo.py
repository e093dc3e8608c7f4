"""`sandbox demo`: the reference memory as a kernel smoother of a noisy 1-D function (docs/kernel-regression.md).

Fits Nadaraya-Watson regressions with several bandwidths and one chosen by leave-one-out
cross-validation, prints each one's error to the true function and saves a picture of the fits.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sandbox.memories import NadarayaWatson
from sandbox.validation import check_int, check_positive

BETAS = (3.0, 30.0, 300.0, 3000.0)


def truth(x: np.ndarray) -> np.ndarray:
    return np.sin(2 * math.pi * x) + 0.5 * np.sin(6 * math.pi * x)


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="out/demo", help="directory for demo.png/.pdf/.json (default: out/demo)")
    parser.add_argument("--n", type=int, default=200, help="number of noisy samples (>= 2, default 200)")
    parser.add_argument("--noise", type=float, default=0.3, help="noise standard deviation (> 0, default 0.3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(args) -> int:
    from sandbox.plotting import plt, save_figure

    n = check_int(args.n, "--n", low=2)
    noise = check_positive(args.noise, "--noise")
    rng = np.random.default_rng(args.seed)
    x = rng.uniform(0, 1, n)
    y = truth(x) + noise * rng.standard_normal(n)
    grid = np.linspace(0, 1, 400)
    interior = (grid > 0.05) & (grid < 0.95)  # kernel smoothers are biased at the edges

    cv = NadarayaWatson().fit(x, y)
    fits = {f"beta={beta:g}": NadarayaWatson(beta=beta).fit(x, y) for beta in BETAS}
    fits[f"beta={cv.beta_:.4g} (cross-validated)"] = cv
    results = {}
    print(f"{'fit':<32} {'RMSE to truth':>14}")
    for label, model in fits.items():
        pred = model.predict(grid)
        rmse = float(np.sqrt(np.mean((pred - truth(grid))[interior] ** 2)))
        results[label] = {"beta": model.beta_, "rmse": rmse, "prediction": pred}
        print(f"{label:<32} {rmse:>14.4f}")

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.scatter(x, y, s=8, color="0.6", label=f"{n} noisy samples")
    ax.plot(grid, truth(grid), "k--", lw=2, label="truth")
    for label, r in results.items():
        ax.plot(grid, r["prediction"], lw=2 if "cross" in label else 1.2, label=f"{label}: RMSE {r['rmse']:.3f}")
    ax.set(xlabel="key x", ylabel="value y", title="Gaussian kernel regression: the bandwidth trades bias for variance")
    ax.legend(fontsize=8, loc="lower left")
    paths = save_figure(fig, Path(args.out) / "demo", {
        "samples": {"x": x, "y": y}, "grid": grid, "truth": truth(grid),
        "fits": {label: {k: v for k, v in r.items()} for label, r in results.items()},
    })
    print(f"saved {paths['png']} (and .pdf, .json)")
    return 0
