"""Learning targets of the deep market, trained through the runner.

Each target trains one config with ``train_and_write`` (all ``num_seeds`` seeds in one
compiled program, exactly as ``marketjax train`` does) and prints one JSON object::

    {"config": .., "env": .., "target": .., "final_return_per_seed": [..],
     "median_final_return": .., "met": .., "env_steps": .., "env_steps_per_s": ..,
     "compile_s": .., "wall_s": ..}

``final_return`` is the mean return of the episodes that ended in the last chunk
(exploration still on at its final ε). ``env_steps`` is per seed; ``env_steps_per_s``
counts all seeds (the runner's summary). A PNG of the per-seed curves is written to
``<out>/learning.png``. XLA's CPU pool is sized as ``marketjax train`` sizes it
(``runner.cpu_threads``, ``experiment/cpu_pool.py``), unless ``PJRT_NPROC`` is set.

Targets (issue 2): CartPole-v1 median >= 450 within 1,000,000 env steps at >= 100k
env steps/s; Catch-bsuite median >= 0.8 within 200,000 env steps.

Usage::

    .venv/bin/python benchmarks/learning.py [--only cartpole|catch] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from marketjax.experiment.config import apply_overrides, load_yaml
from marketjax.experiment.cpu_pool import set_pool_threads, threads_for_cases
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.train_io import train_and_write

TARGETS = {
    "cartpole": ("configs/deep_cartpole.yaml", 450.0, 1_000_000, 100_000.0),
    "catch": ("configs/deep_catch.yaml", 0.8, 200_000, None),
}


def run_target(name: str, runs_dir: Path, overrides: list[str]) -> dict:
    """Trains one target's config; returns its JSON row and the metrics file."""
    path, target, max_steps, min_rate = TARGETS[name]
    data = apply_overrides(
        load_yaml(path),
        [
            f"runner.out_dir={runs_dir}",
            "runner.progress=false",
            "runner.checkpoint=false",
            *overrides,
        ],
    )
    config = parse_train_config(data)
    start = time.perf_counter()
    summary = train_and_write(config, overwrite=True)
    total_s = time.perf_counter() - start
    median = summary["final_mean_return"]
    met = (
        median is not None
        and median >= target
        and summary["env_steps"] <= max_steps
        and (min_rate is None or summary["env_steps_per_s"] >= min_rate)
    )
    return {
        "config": path,
        "env": config.env,
        "target": f"median >= {target} within {max_steps} steps"
        + (f" at >= {min_rate:.0f} steps/s" if min_rate else ""),
        "num_seeds": config.num_seeds,
        "final_return_per_seed": summary["final_mean_return_per_seed"],
        "median_final_return": median,
        "met": bool(met),
        "env_steps": summary["env_steps"],
        "env_steps_per_s": round(summary["env_steps_per_s"]),
        "compile_s": round(summary["compile_s"], 2),
        "wall_s": round(summary["wall_s"], 2),
        "total_s": round(total_s, 2),
        "metrics": str(runs_dir / config.name / "metrics.jsonl"),
    }


def plot(rows: list[dict], path: Path) -> None:
    """One panel per target: mean return per seed against env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 3.8), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        lines = [json.loads(x) for x in Path(row["metrics"]).read_text().splitlines()]
        steps = [x["env_steps"] for x in lines]
        for seed in range(row["num_seeds"]):
            ys = [x["mean_return_per_seed"][seed] for x in lines]
            ys = [float("nan") if y is None else y for y in ys]
            ax.plot(steps, ys, label=f"seed {seed}")
        target = float(row["target"].split(">=")[1].split()[0])
        ax.axhline(target, color="k", ls="--", lw=0.8, label="target")
        ax.set_title(f"deep market on {row['env']}")
        ax.set_xlabel("env steps (per seed)")
        ax.set_ylabel("mean episode return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=sorted(TARGETS), default=None)
    parser.add_argument("--out", default="benchmarks/out", help="folder for the PNG")
    parser.add_argument("--runs", default="runs/bench_learning", help="run folders")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = parser.parse_args()
    names = [args.only] if args.only else list(TARGETS)
    raws = [apply_overrides(load_yaml(TARGETS[n][0]), args.overrides) for n in names]
    set_pool_threads(threads_for_cases(raws))  # as marketjax train sizes it
    rows = []
    for name in names:
        row = run_target(name, Path(args.runs), args.overrides)
        rows.append(row)
        print(json.dumps(row), flush=True)
    plot(rows, Path(args.out) / "learning.png")


if __name__ == "__main__":
    main()
