"""PNG plots of runs (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot_returns(metrics_path: str | Path, png_path: str | Path, title: str) -> None:
    """Mean episode return vs env steps: one thin line per seed, the median bold."""
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
            ax.plot(steps, per_seed[:, s], lw=0.8, alpha=0.4)
        median = [
            np.nan if r["mean_return"] is None else r["mean_return"] for r in rows
        ]
        ax.plot(steps, median, lw=2.0, color="k", label="median over seeds")
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
