"""Coupled Equ inside the wide market's training loop: convergence and speed.

Issue 11's target: at B = 256 episodes, N = 16 agents, G = 8 goods, at least 99% of
the markets cleared during training converge to relative excess demand <= 1e-4, and
the wide market's training loop with coupled valuations (``wide.valuation:
coupled``, the batched Newton Equ of ``mechanisms/quadratic_equ.py``, warm-started
from the previous step's prices) runs at >= 0.3x its speed with separable
valuations (closed-form water filling).

The world is MultiCatch-8 (8 Catch boards, one good per board; registered here,
the package registers 2 and 4). Both cases are the same ``algo: wide`` config but
for ``wide.valuation`` (the coupled one with ``wide.coupling`` = ρ); each is
compiled once (ahead of time, timed apart), then their chunks are timed
alternately (``--rounds`` rounds of one chunk each, so machine load hits both
alike) and the ratio is taken of the medians. Convergence counts every market
(step x episode) of every timed chunk, from the run's own Equ record.

Prints one JSON object per case, then a summary line; writes
benchmarks/out/wide_equ.png.

    python benchmarks/wide_equ.py [--quick] [--coupling -0.1] [--rounds 5]
"""

import argparse
import functools
import json
import pathlib
import time

import jax
import numpy as np

from marketjax.envs.gymnax_adapter import register_env
from marketjax.envs.multicatch import make_multicatch
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import compile_run, seed_keys


def config(valuation, args):
    b, n, g = args.episodes, args.agents, args.goods
    steps = args.rollout * b * args.updates_per_chunk * (args.rounds + 1)
    return parse_train_config(
        {
            "name": f"wide_equ_{valuation}",
            "algo": "wide",
            "env": f"MultiCatch-{g}",
            "num_envs": b,
            "num_seeds": 1,
            "total_env_steps": steps,
            "runner": {"num_chunks": args.rounds + 1},
            "wide": {
                "num_agents": n,
                "hidden": [64, 64],
                "rollout_steps": args.rollout,
                "curvature": 0.1,
                "valuation": valuation,
                "coupling": args.coupling,
                "learning": "both",
                "initial_wealth": 1000.0,
                "allowance": 100.0,
                "rent": 0.001,
                "explore_fraction": 0.5,
            },
        }
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="B=64, N=8, 3 rounds")
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--goods", type=int, default=8)
    parser.add_argument("--coupling", type=float, default=-0.1)
    parser.add_argument("--rollout", type=int, default=8)
    parser.add_argument("--updates-per-chunk", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/out/wide_equ.png")
    args = parser.parse_args()
    if args.quick:
        args.episodes, args.agents, args.rounds = 64, 8, 3
    register_env(
        f"MultiCatch-{args.goods}", functools.partial(make_multicatch, args.goods)
    )
    cases = {}
    for valuation in ("separable", "coupled"):
        start = time.perf_counter()
        run = compile_run(config(valuation, args))
        state = run.init(seed_keys(run.config), run.params)
        state, _ = run.chunk(state, run.params)  # warm-up: caches, first prices
        jax.block_until_ready(state)
        before = jax.tree.map(np.asarray, state.market.equ)
        cases[valuation] = {
            "run": run,
            "state": state,
            "before": before,
            "times": [],
            "metrics": [],
            "compile_s": time.perf_counter() - start,
        }
    for _ in range(args.rounds):
        for case in cases.values():
            run = case["run"]
            start = time.perf_counter()
            state, metrics = run.chunk(case["state"], run.params)
            jax.block_until_ready(state)
            case["times"].append(time.perf_counter() - start)
            case["state"] = state
            case["metrics"].append(jax.tree.map(np.asarray, metrics))
    rows = []
    for valuation, case in cases.items():
        run, equ = case["run"], jax.tree.map(np.asarray, case["state"].market.equ)
        markets = float(np.sum(equ.markets - case["before"].markets))
        failed = float(np.sum(equ.unconverged - case["before"].unconverged))
        steps = run.schedule.steps_per_chunk
        m = case["metrics"]
        rows.append(
            {
                "case": valuation,
                "episodes": args.episodes,
                "agents": args.agents,
                "goods": args.goods,
                "coupling": args.coupling if valuation == "coupled" else 0.0,
                "env_steps_per_s": steps / float(np.median(case["times"])),
                "chunk_s_median": float(np.median(case["times"])),
                "compile_s": case["compile_s"],
                "markets_cleared": markets,
                "converged_fraction": 1.0 - failed / max(markets, 1.0),
                "equ_iterations_mean": float(
                    np.mean([x["equ_iterations_mean"] for x in m])
                ),
                "equ_iterations_max": float(
                    np.max([x["equ_iterations_max"] for x in m])
                ),
                "equ_residual_max": float(np.max([x["equ_residual_max"] for x in m])),
                "exits": float(np.sum([x["exits"] for x in m])),
                "books_imbalance_max": float(np.max([x["books_imbalance"] for x in m])),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    sep, cou = rows
    summary = {
        "case": "summary",
        "speed_ratio_coupled_vs_separable": cou["env_steps_per_s"]
        / sep["env_steps_per_s"],
        "converged_fraction": cou["converged_fraction"],
        "target_speed_ratio": 0.3,
        "target_converged_fraction": 0.99,
    }
    print(json.dumps(summary), flush=True)
    plot(rows, cases, pathlib.Path(args.out))


def plot(rows, cases, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    names = [r["case"] for r in rows]
    ax1.bar(names, [r["env_steps_per_s"] for r in rows], color=["C0", "C1"])
    ax1.set_ylabel("env steps / s (training loop)")
    r = rows[1]["env_steps_per_s"] / rows[0]["env_steps_per_s"]
    ax1.set_title(
        f"B={rows[0]['episodes']} N={rows[0]['agents']} "
        f"G={rows[0]['goods']}: coupled {r:.2f}x"
    )
    m = cases["coupled"]["metrics"]
    chunks = np.arange(1, len(m) + 1)
    ax2.plot(chunks, [x["equ_iterations_mean"] for x in m], "o-", label="mean iters")
    ax2.plot(chunks, [x["equ_iterations_max"] for x in m], "s--", label="max iters")
    ax2.set_xlabel("timed chunk")
    ax2.set_ylabel("Equ iterations (coupled)")
    ax2.set_title(f"converged {rows[1]['converged_fraction']:.4%} of markets")
    ax2.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    main()
