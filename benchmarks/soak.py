"""Soak: hundreds of short training runs of mixed algorithms, counting hangs.

Issue 14 saw ``marketjax train`` hang forever (a thread-pool self-deadlock in
jaxlib's batched LAPACK QR, called by PPO's orthogonal initialiser, now
LAPACK-free). This benchmark runs ``--runs`` (default 200) tiny ``marketjax train``
commands in a loop, each a fresh subprocess with a wall-clock timeout, cycling
through deep / wide / ppo on Catch, CartPole and MultiCatch-2 (PPO with and without
``bootstrap_truncation``, 1 to 3 seeds: the configs that hung), every run with a
different seed, the watchdog on. A run that outlives its timeout counts as a hang
and is killed. The programs repeat, so after the first run of each variant the
compile cache makes a run cost mostly its process start.

Prints one JSON line per run, then a summary line::

    {"runs": 200, "ok": .., "hangs": 0, "failures": .., "by_algo": {..},
     "wall_s_median": .., "wall_s_max": .., "total_s": ..}

and writes ``benchmarks/out/soak.jsonl`` and ``benchmarks/out/soak.png`` (run time
of every run, by algorithm).

Usage::

    .venv/bin/python benchmarks/soak.py [--runs 200] [--timeout 120] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

VARIANTS = [
    ("deep", "Catch-bsuite", {"num_agents": 3, "family": "linear", "rollout_steps": 4}),
    ("deep", "CartPole-v1", {"num_agents": 2, "family": "mlp", "hidden": [8]}),
    ("wide", "MultiCatch-2", {"num_agents": 3, "rollout_steps": 4, "hidden": [8]}),
    ("ppo", "CartPole-v1", {"num_steps": 8, "num_minibatches": 2, "hidden": [8]}),
    ("ppo", "Catch-bsuite", {"num_steps": 8, "bootstrap_truncation": False}),
    ("wide", "CartPole-v1", {"num_agents": 2, "rollout_steps": 4, "hidden": [8]}),
]


def config_for(i: int, out_dir: Path) -> dict:
    """The i-th run's config: variants in turn, seeds and seed counts varying."""
    algo, env, section = VARIANTS[i % len(VARIANTS)]
    return {
        "name": f"soak{i:04d}",
        "algo": algo,
        "env": env,
        "seed": i,
        "num_seeds": 1 + (i // len(VARIANTS)) % 3,
        "num_envs": 8,
        "total_env_steps": 8 * 8 * 3,
        "runner": {
            "num_chunks": 3,
            "out_dir": str(out_dir),
            "progress": False,
            "checkpoint": True,
            "watchdog_restart": True,
            "watchdog_s": 30.0,
        },
        algo: section,
    }


def run_one(i: int, work: Path, timeout: float, env: dict) -> dict:
    config = config_for(i, work / "runs")
    path = work / f"soak{i:04d}.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "marketjax.cli", "train", str(path)]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=timeout)
        status = "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        status = "hang"
    wall = time.perf_counter() - start
    summary = work / "runs" / config["name"] / "summary.json"
    final = (
        json.loads(summary.read_text())["final_mean_return"]
        if summary.is_file()
        else None
    )
    return {
        "run": i,
        "algo": config["algo"],
        "env": config["env"],
        "num_seeds": config["num_seeds"],
        "status": status,
        "rc": proc.returncode,
        "wall_s": round(wall, 2),
        "final_mean_return": final,
        "watchdog": "watchdog:" in (err or ""),
        "stderr_tail": (err or "").strip().splitlines()[-1:] if status != "ok" else [],
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for algo in sorted({r["algo"] for r in rows}):
        pts = [(r["run"], r["wall_s"]) for r in rows if r["algo"] == algo]
        ax.scatter(*zip(*pts, strict=True), s=10, label=algo)
    hangs = [r for r in rows if r["status"] == "hang"]
    ax.set_xlabel("run")
    ax.set_ylabel("wall s (process start to exit)")
    ax.set_title(f"soak: {len(rows)} runs, {len(hangs)} hangs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="marketjax-soak-") as tmp:
        work = Path(tmp)
        env = dict(os.environ, MARKETJAX_JAX_CACHE=str(work / "jax-cache"))
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = [
                pool.submit(run_one, i, work, args.timeout, env)
                for i in range(args.runs)
            ]
            for future in futures:
                rows.append(future.result())
                print(json.dumps(rows[-1]), flush=True)
    total = time.perf_counter() - start
    (out / "soak.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plot(rows, out / "soak.png")
    by_algo = {}
    for r in rows:
        entry = by_algo.setdefault(r["algo"], {"runs": 0, "ok": 0, "hangs": 0})
        entry["runs"] += 1
        entry["ok"] += r["status"] == "ok"
        entry["hangs"] += r["status"] == "hang"
    walls = [r["wall_s"] for r in rows]
    print(
        json.dumps(
            {
                "runs": len(rows),
                "ok": sum(r["status"] == "ok" for r in rows),
                "hangs": sum(r["status"] == "hang" for r in rows),
                "failures": sum(r["status"] == "failed" for r in rows),
                "watchdog_fired": sum(r["watchdog"] for r in rows),
                "by_algo": by_algo,
                "wall_s_median": statistics.median(walls),
                "wall_s_max": max(walls),
                "total_s": round(total, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
