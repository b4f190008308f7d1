"""CAPITALISM benchmark: does the money matter? (issue 9; docs/deep_market.md).

Trains each case with the ordinary runner (``train_and_write``; run directories
under ``benchmarks/out/capitalism/``) and prints one JSON object per case: final
median return, env steps to the threshold, turnover (entries + exits, and per 1e5
env steps), final wealth Gini, capped fraction averaged over the run, the lowest
wealth seen (``wealth_min``) and the wall time. Writes
``benchmarks/out/capitalism.png`` (return curves of every case).

Cases are a config plus ``key=value`` overrides. ``--cases`` picks some by name;
``--steps`` overrides ``total_env_steps`` (CPU is scarce: short runs first).

    PYTHONPATH=. python benchmarks/capitalism.py --cases catch_both catch_both_inert
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from marketjax.core.config import apply_overrides, load_yaml
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.train_io import train_and_write

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
INERT = ["deep.initial_wealth=1000000", "deep.rent=0", "deep.exit_threshold=0"]
CATCH = "configs/capitalism_catch.yaml"
CARTPOLE = "configs/capitalism_cartpole.yaml"
CASES = {
    # name: (config, overrides, threshold)
    "catch_both": (CATCH, [], 0.8),
    "catch_bids": (CATCH, ["deep.learning=bids"], 0.8),
    "catch_selection": (CATCH, ["deep.learning=selection"], 0.8),
    "catch_both_inert": (CATCH, INERT, 0.8),
    "catch_bids_inert": (CATCH, ["deep.learning=bids", *INERT], 0.8),
    "catch_selection_inert": (CATCH, ["deep.learning=selection", *INERT], 0.8),
    "cartpole_both": (CARTPOLE, [], 450.0),
    "cartpole_bids": (CARTPOLE, ["deep.learning=bids"], 450.0),
    "cartpole_selection": (CARTPOLE, ["deep.learning=selection"], 450.0),
    "cartpole_both_inert": (CARTPOLE, INERT, 450.0),
    "cartpole_bids_inert": (CARTPOLE, ["deep.learning=bids", *INERT], 450.0),
    "cartpole_selection_inert": (CARTPOLE, ["deep.learning=selection", *INERT], 450.0),
    "hayek_cartpole": ("configs/hayek_cartpole.yaml", [], 450.0),
}


def run_case(name: str, steps: int | None) -> tuple[dict, list[dict]]:
    """Trains one case; returns its JSON summary and its metrics rows."""
    path, overrides, threshold = CASES[name]
    extra = [f"name={name}", f"runner.out_dir={OUT / 'capitalism'}"]
    extra += ["runner.progress=false", "runner.checkpoint=false"]
    if steps:
        extra.append(f"total_env_steps={steps}")
    data = apply_overrides(load_yaml(ROOT / path), [*overrides, *extra])
    config = parse_train_config(data)
    start = time.perf_counter()
    summary = train_and_write(config, overwrite=True)
    wall = time.perf_counter() - start
    rows = [
        json.loads(line)
        for line in (OUT / "capitalism" / name / "metrics.jsonl")
        .read_text()
        .splitlines()
        if line
    ]
    env_steps = rows[-1]["env_steps"]
    reached = [
        r["env_steps"]
        for r in rows
        if r["mean_return"] is not None and r["mean_return"] >= threshold
    ]
    turnover = sum(r["entries"] + r["exits"] for r in rows)
    result = {
        "case": name,
        "config": path,
        "overrides": overrides,
        "env_steps": env_steps,
        "num_seeds": config.num_seeds,
        "final_return": summary["final_mean_return"],
        "final_return_per_seed": summary["final_mean_return_per_seed"],
        "threshold": threshold,
        "steps_to_threshold": reached[0] if reached else None,
        "entries": sum(r["entries"] for r in rows),
        "exits": sum(r["exits"] for r in rows),
        "turnover_per_1e5_steps": turnover * 1e5 / env_steps,
        "final_gini": rows[-1]["wealth_gini"],
        "capped_fraction_mean": float(np.mean([r["capped_fraction"] for r in rows])),
        "wealth_min_lowest": min(r["wealth_min"] for r in rows),
        "wall_s": round(wall, 1),
    }
    return result, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--png", default=str(OUT / "capitalism.png"))
    args = parser.parse_args()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for name in args.cases:
        result, rows = run_case(name, args.steps)
        print(json.dumps(result), flush=True)
        ax = axes[0] if "catch" in name else axes[1]
        steps = [r["env_steps"] for r in rows]
        ret = [np.nan if r["mean_return"] is None else r["mean_return"] for r in rows]
        ax.plot(steps, ret, label=name, ls="--" if "inert" in name else "-")
    for ax, title in zip(axes, ("Catch-bsuite", "CartPole-v1"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("env steps (per seed)")
        ax.set_ylabel("median mean return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=100)


if __name__ == "__main__":
    main()
