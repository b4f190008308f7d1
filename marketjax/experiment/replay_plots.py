"""Pictures of a market replay (``experiment/replay.py``): ownership and wealth."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from marketjax.experiment.plots import save_png

MAX_ROWS = 16  # episodes drawn in the ownership timeline
MAX_LABELLED_STEPS = 40  # the winning bid is written in cells up to this many steps


def plot_ownership(rec: dict, ends: np.ndarray, png: Path, title: str) -> None:
    """One row per episode, one cell per step, coloured by the owner (grey: the
    bank acted); each cell carries the winning (highest budgeted) bid."""
    owner = rec["owner"]  # i32[T, K]
    k = min(owner.shape[1], MAX_ROWS)
    t = int(ends[:k].max()) + 1
    n = rec["wealth"].shape[1]
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    held = owner[:t, :k][np.arange(t)[:, None] <= ends[None, :k]]  # steps played
    grid = np.full((k, t, 4), 1.0)  # white after an episode's end
    for e in range(k):
        for s in range(ends[e] + 1):
            a = owner[s, e]
            grid[e, s] = (0.6, 0.6, 0.6, 1.0) if a < 0 else cmap(a % cmap.N)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * t + 2), 0.45 * k + 1.6))
    ax.imshow(grid, aspect="auto", interpolation="nearest")
    if t <= MAX_LABELLED_STEPS:
        for e in range(k):
            for s in range(ends[e] + 1):
                if owner[s, e] >= 0:
                    bid = rec["top_bid"][s, e, 0]
                    ax.text(s, e, f"{bid:.2g}", ha="center", va="center", fontsize=6)
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=cmap(a % cmap.N), label=f"agent {a}")
        for a in range(n)
        if (held == a).any()
    ]
    if (held < 0).any():
        handles.append(plt.Rectangle((0, 0), 1, 1, color="0.6", label="bank"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    ax.set_xlabel("step of the episode (cell text: winning bid)")
    ax.set_ylabel("episode")
    ax.set_yticks(range(k))
    ax.set_title(f"{title}: who held the world")
    fig.tight_layout()
    save_png(fig, png)


def plot_wealth(rec: dict, last: int, png: Path, title: str) -> None:
    """Every agent's wealth (shared by all episodes) at each market step."""
    wealth = np.concatenate([rec["wealth_start"][None], rec["wealth"][: last + 1]])
    fig, ax = plt.subplots(figsize=(7, 4))
    for a in range(wealth.shape[1]):
        ax.plot(np.arange(wealth.shape[0]), wealth[:, a], label=f"agent {a}")
    ax.set_xlabel("market step (all episodes in parallel)")
    ax.set_ylabel("wealth")
    ax.set_title(f"{title}: wealth over the replay")
    if wealth.shape[1] <= 12:
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, png)
