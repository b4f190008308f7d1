"""Deep-market training-loop env steps/s against the number of agents N.

Learning used to evaluate every agent's bid network on every sample under a win
mask: O(N·M) for M samples. Q(λ) now gathers each agent's own samples
(``learners/q_lambda.group_by_owner``): O(M). Cases: ``configs/deep_cartpole.yaml``
(MLP bids, LayerNorm, Vickrey) at B episodes and N in {2, 8, 64}, one seed, one
compiled runner chunk of whole updates, acting *and* learning; the rate is the best
of ``repeats`` timed calls after a warm-up. Target (issue 8): N = 64 at >= 0.5x
the N = 2 rate. ``--families mlp,trunk`` adds the ``trunk`` family (a linear
head per agent on one shared MLP trunk), whose acting reads each observation once.
XLA's CPU pool is sized as ``marketjax train`` would size it for the cases
together (``runner.cpu_threads: auto``: one thread only if every case is small)
unless ``PJRT_NPROC`` is set. Prints one
JSON object per case and writes ``<out>/agents_scaling.jsonl`` and
``.png`` (one line per family).

    .venv/bin/python benchmarks/agents_scaling.py [--agents 2,8,64] [--batch 256]
        [--families mlp,trunk]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

from marketjax.experiment.config import load_yaml
from marketjax.experiment.cpu_pool import set_pool_threads, threads_for_cases
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import compile_run, seed_keys


def measure(
    num_agents: int, batch: int, updates: int, repeats: int, family: str = "mlp"
) -> dict:
    data = load_yaml("configs/deep_cartpole.yaml")
    data.update(num_envs=batch, num_seeds=1)
    data["deep"] = {**data["deep"], "num_agents": num_agents, "family": family}
    steps = data["deep"]["rollout_steps"] * batch * updates
    data["total_env_steps"] = steps
    data["runner"] = {"num_chunks": 1, "progress": False, "checkpoint": False}
    config = parse_train_config(data)
    run = compile_run(config)
    state = run.init(seed_keys(config), run.params)
    state = jax.block_until_ready(run.chunk(state, run.params)[0])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        state = jax.block_until_ready(run.chunk(state, run.params)[0])
        best = min(best, time.perf_counter() - start)
    return {
        "bench": "agents_scaling",
        "family": family,
        "N": num_agents,
        "B": batch,
        "env_steps": steps,
        "run_s": round(best, 4),
        "env_steps_per_s": steps / best,
        "compile_s": round(run.compile_s, 2),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", default="2,8,64")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--families", default="mlp", help="deep.family values")
    parser.add_argument("--out", default="benchmarks/out")
    args = parser.parse_args(argv)
    families = args.families.split(",")
    agents = [int(x) for x in args.agents.split(",")]
    # XLA's CPU pool as marketjax train sizes it, one pool for all the cases
    cases = [
        {"algo": "deep", "num_envs": args.batch, "deep": {"num_agents": n, "family": f}}
        for f in families
        for n in agents
    ]
    set_pool_threads(threads_for_cases(cases))
    rows = []
    for family in families:
        mine = []
        for n in agents:
            row = measure(n, args.batch, args.updates, args.repeats, family)
            mine.append(row)
            print(json.dumps(row), flush=True)
        base = mine[0]["env_steps_per_s"]
        for row in mine:
            row["ratio_to_first"] = row["env_steps_per_s"] / base
        print(
            json.dumps(
                {
                    "bench": "agents_scaling_ratio",
                    "family": family,
                    **{f"N={r['N']}": round(r["ratio_to_first"], 3) for r in mine},
                }
            )
        )
        rows += mine
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "agents_scaling.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    from marketjax.experiment.plots import plt, save_png

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for family in families:
        mine = [r for r in rows if r["family"] == family]
        ax.plot(
            [r["N"] for r in mine],
            [r["env_steps_per_s"] for r in mine],
            "o-",
            label=family,
        )
    ax.legend()
    ax.set_xscale("log", base=2)
    ax.set_xlabel("agents N")
    ax.set_ylabel("env steps/s (acting + learning)")
    ax.set_title(f"deep market, CartPole, B={args.batch}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, out / "agents_scaling.png")
    return rows


if __name__ == "__main__":
    main()
