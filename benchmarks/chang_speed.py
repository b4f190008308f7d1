"""Env steps/s of Chang et al.'s society with learning, against societies per program.

Cases: ``configs/chang_{bandit,chain,duality}.yaml`` (ccv, their epoch of 4096
auctions and one PPO pass per update) with R societies trained by one compiled
program (R = ``num_seeds``; a ``sweep:`` grid of P points × S seeds is the same
program with R = P·S). The rate counts every society's env steps, acting *and*
learning, best of ``repeats`` timed chunks after a warm-up. Their PyTorch code runs
0.3–2k env steps/s on one CPU process (issue 10). Prints one JSON object per case
and writes ``<out>/chang_speed.jsonl`` and ``.png``.

    .venv/bin/python benchmarks/chang_speed.py [--societies 1,4,16] [--updates 5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

from marketjax.experiment.config import load_yaml
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import compile_run

TASKS = ("bandit", "chain", "duality")


def measure(task: str, societies: int, updates: int, repeats: int) -> dict:
    data = load_yaml(f"configs/chang_{task}.yaml")
    data.update(num_seeds=societies, total_env_steps=4096 * updates)
    data["runner"] = {"num_chunks": 1, "progress": False, "checkpoint": False}
    run = compile_run(parse_train_config(data))
    state = run.init(run.keys, run.params)
    state = jax.block_until_ready(run.chunk(state, run.params)[0])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        state = jax.block_until_ready(run.chunk(state, run.params)[0])
        best = min(best, time.perf_counter() - start)
    steps = run.schedule.steps_per_chunk * societies
    return {
        "bench": "chang_speed",
        "task": task,
        "societies": societies,
        "env_steps": steps,
        "run_s": round(best, 4),
        "env_steps_per_s": steps / best,
        "compile_s": round(run.compile_s, 2),
        "backend": jax.default_backend(),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--societies", default="1,4,16")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/out")
    args = parser.parse_args(argv)
    rows = []
    for task in args.tasks.split(","):
        for r in (int(x) for x in args.societies.split(",")):
            row = measure(task, r, args.updates, args.repeats)
            print(json.dumps(row), flush=True)
            rows.append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "chang_speed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for task in args.tasks.split(","):
        pts = [
            (r["societies"], r["env_steps_per_s"]) for r in rows if r["task"] == task
        ]
        ax.plot(*zip(*pts, strict=True), marker="o", label=task)
    ax.axhspan(300, 2000, color="grey", alpha=0.3, label="their PyTorch (issue 10)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("societies per compiled program")
    ax.set_ylabel("env steps/s with learning")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "chang_speed.png", dpi=110)
    return rows


if __name__ == "__main__":
    main()
