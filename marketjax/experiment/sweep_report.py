"""A sweep's report: final return per grid point, median and IQR over seeds.

Writes ``sweep.csv``, ``sweep.md`` and ``sweep.png`` at the top of a sweep's run
directory (atomically).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from marketjax.core.schema import TrainConfig
from marketjax.experiment.checkpoint import write_atomic


def _stats(per_seed: list) -> tuple[float, float, float]:
    finite = np.array([x for x in per_seed if x is not None], dtype=float)
    if finite.size == 0:
        return float("nan"), float("nan"), float("nan")
    q25, q50, q75 = np.percentile(finite, [25, 50, 75])
    return float(q50), float(q25), float(q75)


def write_sweep_report(run_dir: Path, config: TrainConfig, summaries: list) -> None:
    """Writes the sweep's table and plot.

    Args:
      run_dir: the sweep's run directory.
      config: the sweep's config (its ``sweep`` names the keys).
      summaries: ``[(label, summary)]`` per grid point, in grid order.
    """
    keys = [k for k, _ in config.sweep]
    rows = []
    for label, summary in summaries:
        values = dict(pair.split("=", 1) for pair in label.split(","))
        median, q25, q75 = _stats(summary["final_mean_return_per_seed"])
        rows.append([*(values[k] for k in keys), median, q25, q75])
    header = [*keys, "final_return_median", "final_return_q25", "final_return_q75"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_atomic(run_dir / "sweep.csv", buffer.getvalue())

    lines = [
        f"# sweep {config.name}: {config.algo} on {config.env}, "
        f"{config.num_seeds} seeds",
        "",
        "| " + " | ".join([*keys, "final return (median)", "IQR"]) + " |",
        "|" + "---|" * (len(keys) + 2),
    ]
    for row in rows:
        cells = [*row[: len(keys)], f"{row[-3]:.4g}", f"{row[-2]:.4g} – {row[-1]:.4g}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    write_atomic(run_dir / "sweep.md", "\n".join(lines) + "\n")

    from marketjax.experiment.plots import plt, save_png

    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(rows) + 2), 4))
    x = np.arange(len(rows))
    med = np.array([r[-3] for r in rows])
    lo, hi = np.array([r[-2] for r in rows]), np.array([r[-1] for r in rows])
    ax.errorbar(x, med, yerr=[med - lo, hi - med], fmt="o", capsize=4)
    ax.set_xticks(x, [lab for lab, _ in summaries], rotation=30, ha="right")
    ax.set_ylabel("final mean return (median, IQR)")
    ax.set_title(f"sweep {config.name}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, run_dir / "sweep.png")
