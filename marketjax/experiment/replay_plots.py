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


def agent_colour(agent: int, num_agents: int):
    """The RGBA colour of an agent in every replay picture (grey: the bank, -1)."""
    if agent < 0:
        return (0.6, 0.6, 0.6, 1.0)
    cmap = plt.get_cmap("tab10" if num_agents <= 10 else "tab20")
    return cmap(agent % cmap.N)


def draw_frames(config, rec: dict, ends: np.ndarray, out: Path, labels) -> bool:
    """``frames.png`` (strip) and ``frames.gif`` of episode 0, drawn from the
    observations ``rec["obs"]`` f32[T, K, D] with ``labels(t) -> (text, colour)``;
    False (nothing drawn) for an environment :mod:`frames` cannot draw."""
    from marketjax.envs.gymnax_adapter import make_gymnax
    from marketjax.experiment.frames import can_render, frame, write_frames

    if not can_render(config.env):
        return False
    env, env_params = make_gymnax(config.env)
    shape = tuple(env.observation_space(env_params).shape)
    steps = range(int(ends[0]) + 1)
    pictures = [frame(config.env, rec["obs"][t, 0], shape) for t in steps]
    texts, colours = zip(*(labels(t) for t in steps), strict=True)
    write_frames(
        pictures, list(texts), list(colours), out / "frames.png", out / "frames.gif"
    )
    return True


def plot_ownership(rec: dict, ends: np.ndarray, png: Path, title: str) -> None:
    """One row per episode, one cell per step, coloured by the owner (grey: the
    bank acted); each cell carries the winning (highest budgeted) bid."""
    owner = rec["owner"]  # i32[T, K]
    k = min(owner.shape[1], MAX_ROWS)
    t = int(ends[:k].max()) + 1
    n = rec["wealth"].shape[1]
    held = owner[:t, :k][np.arange(t)[:, None] <= ends[None, :k]]  # steps played
    grid = np.full((k, t, 4), 1.0)  # white after an episode's end
    for e in range(k):
        for s in range(ends[e] + 1):
            a = owner[s, e]
            grid[e, s] = agent_colour(a, n)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * t + 2), 0.45 * k + 1.6))
    ax.imshow(grid, aspect="auto", interpolation="nearest")
    if t <= MAX_LABELLED_STEPS:
        for e in range(k):
            for s in range(ends[e] + 1):
                if owner[s, e] >= 0:
                    bid = rec["top_bid"][s, e, 0]
                    ax.text(s, e, f"{bid:.2g}", ha="center", va="center", fontsize=6)
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=agent_colour(a, n), label=f"agent {a}")
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


MAX_PRICE_EPISODES = 8  # episodes whose prices are drawn per good


def plot_goods(rec: dict, ends: np.ndarray, png: Path, title: str) -> None:
    """Wide market, one column per good: its clearing price at each step of the
    first episodes (top), and episode 0's holdings stacked by agent (bottom; they
    sum to the supply 1 at every step)."""
    price, hold = rec["price"], rec["holdings"]  # [T, K, G], [T, K, N, G]
    g, n = price.shape[-1], hold.shape[2]
    fig, axes = plt.subplots(
        2, g, figsize=(4 * g + 1, 5.5), squeeze=False, sharex="col"
    )
    end0 = int(ends[0])
    steps0 = np.arange(end0 + 1)
    for good in range(g):
        ax = axes[0, good]
        for e in range(min(price.shape[1], MAX_PRICE_EPISODES)):
            t = np.arange(int(ends[e]) + 1)
            ax.plot(
                t, price[t, e, good], marker=".", lw=1, alpha=0.8, label=f"episode {e}"
            )
        ax.set_title(f"good {good}: clearing price")
        ax.set_ylabel("price")
        ax = axes[1, good]
        ax.stackplot(
            steps0,
            hold[: end0 + 1, 0, :, good].T,
            colors=[agent_colour(a, n) for a in range(n)],
            labels=[f"agent {a}" for a in range(n)],
            step="mid",  # holdings are constant within a step
        )
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("step of the episode")
        ax.set_title(f"good {good}: holdings in episode 0")
        ax.set_ylabel("units held")
    axes[0, -1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[1, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, png)
