"""PNG plots of runs (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot_returns(
    metrics_path: str | Path,
    png_path: str | Path,
    title: str,
    threshold: float | None = None,
) -> None:
    """Mean episode return vs env steps: one thin line per seed (labelled), the
    median bold, a marker at every chunk point, and a dashed line at ``threshold``
    (the return a comparison config counts as solved) when one is given."""
    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines()]
    fig, ax = plt.subplots(figsize=(6, 4))
    if rows:
        steps = np.array([r["env_steps"] for r in rows])
        per_seed = np.array(
            [
                [np.nan if x is None else x for x in r["mean_return_per_seed"]]
                for r in rows
            ],
            dtype=float,
        )
        for s in range(per_seed.shape[1]):
            ax.plot(
                steps, per_seed[:, s], lw=0.8, alpha=0.5, marker=".", label=f"seed {s}"
            )
        median = [
            np.nan if r["mean_return"] is None else r["mean_return"] for r in rows
        ]
        ax.plot(steps, median, lw=2.0, color="k", marker="o", label="median over seeds")
    if threshold is not None:
        ax.axhline(
            threshold, ls="--", color="r", lw=1.0, label=f"threshold {threshold:g}"
        )
    if rows:
        ax.legend(loc="lower right")
    ax.set_xlabel("env steps (per seed)")
    ax.set_ylabel("mean episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, png_path)


def save_png(fig, png_path: str | Path) -> None:
    """Saves a figure atomically (a reader never sees half a PNG) and closes it."""
    from marketjax.experiment.checkpoint import write_atomic

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomic(png_path, buffer.getvalue())


WEALTH_KEYS = ("wealth_min", "wealth_max", "money_in_circulation", "wealth_gini")


def plot_wealth(metrics_path: str | Path, png_path: str | Path, title: str) -> bool:
    """What the money did, from a market run's ``metrics.jsonl`` (one row per chunk).

    Three panels against env steps: the wealth distribution (min, mean and max
    agent wealth, symlog scale, and the bank); concentration (``wealth_gini``,
    ``wealth_top_share``, ``win_top_share``, ``capped_fraction``); turnover
    (cumulative ``entries`` and ``exits``). Values are medians over seeds.

    Returns:
      False, writing nothing, when the rows carry no wealth diagnostics (runs of
      algorithms without a market, such as PPO); True once the PNG is written.
    """
    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines()]
    if not rows or any(k not in rows[0] for k in WEALTH_KEYS):
        return False

    def col(key):
        return np.array(
            [np.nan if r.get(key) is None else r[key] for r in rows], dtype=float
        )

    steps = col("env_steps")
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    ax.plot(steps, col("wealth_max"), label="richest agent")
    if "wealth_mean" in rows[0]:
        ax.plot(steps, col("wealth_mean"), label="mean agent")
    ax.plot(steps, col("wealth_min"), label="poorest agent")
    ax.plot(steps, col("bank"), ls="--", color="gray", label="bank")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylabel("wealth")
    ax.set_title("wealth distribution")
    ax.legend(fontsize=8)
    ax = axes[1]
    for key in ("wealth_gini", "wealth_top_share", "win_top_share", "capped_fraction"):
        if key in rows[0]:
            ax.plot(steps, col(key), label=key)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("concentration and binding budgets")
    ax.legend(fontsize=8)
    ax = axes[2]
    for key in ("entries", "exits"):
        ax.plot(steps, np.nancumsum(col(key)), label=f"{key} (cumulative)")
    ax.set_title("turnover")
    ax.legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("env steps (per seed)")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, png_path)
    return True
