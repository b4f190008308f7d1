"""Compile time of every training config in ``configs/`` (target: <= 10 s each).

For each ``configs/*.yaml`` with an ``algo:`` key (the training configs), the
runner compiles the run's chunk exactly as ``marketjax train`` does
(``compile_run``: trainer, all seeds' init, the chunk's ahead-of-time compile).
``compile_s`` is the chunk's compile wall time (what ``summary.json`` reports);
``setup_s`` is the wall time of the whole ``compile_run`` (trainer build, init
and its compile included) and ``setup_cpu_s`` the process CPU time over that span,
which a machine shared with other jobs inflates less than the wall time. Each config
runs in a fresh process (``--one`` mode), so no compile cache is shared between
configs, and sizes XLA's CPU pool as ``marketjax train`` would
(``runner.cpu_threads``). One JSON object per config, then a summary line.

    .venv/bin/python benchmarks/compile_times.py [--configs deep_cartpole,...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 10.0


def training_configs() -> list[str]:
    return sorted(
        p.stem
        for p in Path("configs").glob("*.yaml")
        if any(line.startswith("algo:") for line in p.read_text().splitlines())
    )


def one(name: str) -> dict:
    """Compiles one config in this process; returns its row."""
    from marketjax.experiment.config import apply_overrides, load_yaml
    from marketjax.experiment.cpu_pool import set_pool_threads, threads_for_train

    data = apply_overrides(
        load_yaml(f"configs/{name}.yaml"),
        ["runner.progress=false", "runner.checkpoint=false"],
    )
    pool = set_pool_threads(threads_for_train(data))  # as marketjax train does

    from marketjax.experiment.registry import parse_train_config
    from marketjax.experiment.runner import compile_run

    config = parse_train_config(data)
    start, cpu = time.perf_counter(), time.process_time()
    run = compile_run(config)
    setup_cpu_s = time.process_time() - cpu
    setup_s = time.perf_counter() - start
    return {
        "bench": "compile_times",
        "config": name,
        "algo": config.algo,
        "num_seeds": config.num_seeds,
        "compile_s": round(run.compile_s, 2),
        "setup_s": round(setup_s, 2),
        "setup_cpu_s": round(setup_cpu_s, 2),
        "met": run.compile_s <= TARGET_S,
        "cpu_pool_threads": pool,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default=None, help="comma-separated stems")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--png", default="benchmarks/out/compile_times.png")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one)), flush=True)
        return []
    names = args.configs.split(",") if args.configs else training_configs()
    rows = []
    for name in names:
        out = subprocess.run(
            [sys.executable, __file__, "--one", name],
            capture_output=True,
            text=True,
            env=os.environ,
        )
        lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
        if out.returncode or not lines:
            row = {"bench": "compile_times", "config": name, "error": out.stderr[-300:]}
        else:
            row = json.loads(lines[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    ok = [r for r in rows if "compile_s" in r]
    print(
        json.dumps(
            {
                "bench": "compile_times_summary",
                "configs": len(rows),
                "max_compile_s": max((r["compile_s"] for r in ok), default=None),
                "max_setup_cpu_s": max((r["setup_cpu_s"] for r in ok), default=None),
                "all_met": all(r.get("met") for r in rows),
            }
        )
    )
    plot_compile_times(ok, Path(args.png))
    return rows


def plot_compile_times(rows: list[dict], path: Path) -> None:
    """Compile seconds per config, the target as a dashed line."""
    from marketjax.experiment.plots import plt, save_png

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar([r["config"] for r in rows], [r["compile_s"] for r in rows])
    ax.axhline(TARGET_S, ls="--", color="k", label=f"target {TARGET_S:g} s")
    ax.set_ylabel("compile s (one chunk)")
    ax.tick_params(axis="x", rotation=75, labelsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


if __name__ == "__main__":
    main()
