"""Learning curves of a comparison: median over seeds with an interquartile band."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from marketjax.experiment.checkpoint import write_atomic


def _quartiles(per_seed: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-chunk 25th, 50th and 75th percentiles over seeds (NaN-aware)."""
    if per_seed.size == 0:
        return (np.zeros(0),) * 3
    with warnings.catch_warnings():  # all-NaN chunks (no episode ended) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        q = np.nanpercentile(per_seed, [25, 50, 75], axis=1)
    return q[0], q[1], q[2]


def plot_run_returns(run_dir: Path, threshold: float | None) -> None:
    """Redraws one case's ``returns.png`` with its environment's threshold line."""
    from marketjax.experiment.plots import plot_returns

    m = run_dir / "metrics.jsonl"
    plot_returns(m, run_dir / "returns.png", run_dir.name, threshold)


def _seed_lines(ax, x: np.ndarray, per_seed: np.ndarray, color) -> None:
    """Every seed's curve, thin, labelled ``s<seed>`` at its last finite point."""
    for s in range(per_seed.shape[1] if per_seed.ndim == 2 else 0):
        y = per_seed[:, s]
        ax.plot(x, y, color=color, lw=0.7, alpha=0.45)
        finite = np.flatnonzero(np.isfinite(y))
        if finite.size:
            i = finite[-1]
            ax.annotate(
                f"s{s}",
                (x[i], y[i]),
                xytext=(3, 0),
                textcoords="offset points",
                fontsize=6,
                color=color,
                va="center",
            )


def plot_curves(
    curves: dict[tuple[str, str], dict],
    envs: list[str],
    algos: list[str],
    png_path: str | Path,
    title: str,
    thresholds: dict[str, float | None] | None = None,
) -> None:
    """One row per environment: return vs env steps (left) and vs wall time (right).

    Each algorithm: the median over seeds (bold, a marker at every chunk point, the
    points the runner measured), the interquartile band, and every seed's own curve
    (thin, labelled ``s<seed>`` at its last point); a dashed line at the
    environment's threshold where the comparison config names one.

    Args:
      curves: ``(env, algo) -> {"env_steps": [C], "wall_s": [C], "per_seed":
        [C][S]}`` as collected by the harness.
      envs: row order.
      algos: line order (colours are stable across rows).
      png_path: where the PNG goes (written atomically).
      title: figure title.
      thresholds: ``env -> threshold`` (None or missing: no line).
    """
    thresholds = thresholds or {}
    fig, axes = plt.subplots(len(envs), 2, figsize=(11, 3.6 * len(envs)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, env in enumerate(envs):
        for i, algo in enumerate(algos):
            curve = curves.get((env, algo))
            if curve is None:
                continue
            per_seed = np.asarray(curve["per_seed"], dtype=float)
            lo, mid, hi = _quartiles(per_seed)
            color = colors[i % len(colors)]
            for col, x in enumerate((curve["env_steps"], curve["wall_s"])):
                ax = axes[row, col]
                ax.plot(x, mid, color=color, lw=2.0, marker="o", ms=3.5, label=algo)
                ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
                _seed_lines(ax, np.asarray(x, dtype=float), per_seed, color)
        for col, xlabel in enumerate(
            ("env steps (per seed)", "wall time s (all seeds)")
        ):
            ax = axes[row, col]
            if thresholds.get(env) is not None:
                ax.axhline(
                    thresholds[env],
                    ls="--",
                    color="k",
                    lw=1.0,
                    label=f"threshold {thresholds[env]:g}",
                )
            ax.set_xlabel(xlabel)
            ax.set_ylabel("mean episode return")
            ax.set_title(env)
            ax.grid(alpha=0.3)
        axes[row, 0].legend(loc="lower right", fontsize="small")
    fig.suptitle(
        f"{title}: median over seeds (markers: chunk points), band = interquartile "
        "range, thin lines = seeds"
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_atomic(png_path, buf.getvalue())
