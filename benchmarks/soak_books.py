"""Soak of the books: 1e7 market steps with entry, exit and rent; does money drift?

A CAPITALISM deep market on Catch (linear bidders, ``learning: both``: Q(λ) bids
plus selection, so bankrupt agents exit and entrants are minted an allowance;
proportional rent on owners) runs ``--steps`` market steps (one auction and
settlement per episode per env step; default 1e7) through the host runner, with
``runner.mesh.episodes`` devices sharing the episodes (``--episodes 2`` forces 2
CPU devices: the settlement is then a cross-device sum). After every chunk it
reads the state's books and reports

- ``imbalance``: |Σ wealth + bank − (initial + rewards − rent + allowances)|
  divided by the money in circulation (Σ|wealth| + |bank|), the ledger's
  ``books_imbalance``; and the absolute drift in money units,
- the chunk's entries, exits and rent, and the money in circulation.

The run passes when the largest relative imbalance stays below ``--bound``
(default 1e-5: float32 with Kahan-summed counters). Prints one JSON line per
chunk and a summary line, and writes ``<out>/soak_books.jsonl`` and
``<out>/soak_books.png``::

    .venv/bin/python benchmarks/soak_books.py [--steps 1e7] [--episodes 1]
        [--num-envs 256] [--chunks 50] [--bound 1e-5] [--out benchmarks/out]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def config_dict(steps: int, num_envs: int, chunks: int, episodes: int) -> dict:
    return {
        "name": "soak_books",
        "algo": "deep",
        "env": "Catch-bsuite",
        "num_envs": num_envs,
        "num_seeds": 1,
        "total_env_steps": steps,
        "runner": {"num_chunks": chunks, "mesh": {"seeds": 1, "episodes": episodes}},
        "deep": {
            "num_agents": 8,
            "family": "linear",
            "rollout_steps": 8,
            "learning": "both",
            "initial_wealth": 5.0,
            "allowance": 5.0,
            "rent": 0.01,
            "exit_threshold": 1.0,
            "min_age": 1,
        },
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=float, default=1e7)
    p.add_argument("--episodes", type=int, default=1, help="runner.mesh.episodes")
    p.add_argument("--num-envs", type=int, default=256)
    p.add_argument("--chunks", type=int, default=50)
    p.add_argument("--bound", type=float, default=1e-5)
    p.add_argument("--out", default="benchmarks/out")
    args = p.parse_args(argv)
    if args.episodes > 1 and "host_platform_device_count" not in os.environ.get(
        "XLA_FLAGS", ""
    ):
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={args.episodes}"
        )
    import jax
    import numpy as np

    from marketjax.experiment.registry import parse_train_config
    from marketjax.experiment.runner import compile_run, seed_keys

    config = parse_train_config(
        config_dict(int(args.steps), args.num_envs, args.chunks, args.episodes)
    )
    run = compile_run(config)
    state = run.init(seed_keys(config), run.params)
    rows, start = [], time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for c in range(run.schedule.num_chunks):
        state, metrics = run.chunk(state, run.params)
        books = state.market.books
        wealth = np.asarray(state.market.population.wealth, np.float64)[0]
        bank = float(np.asarray(books.bank.value)[0])
        expected = float(np.asarray(books.expected_total())[0])
        rel = float(np.asarray(jax.vmap(run.trainer.books_imbalance)(state))[0])
        m = {k: float(np.asarray(v)[0]) for k, v in metrics.items()}
        row = {
            "chunk": c + 1,
            "market_steps": (c + 1) * run.schedule.steps_per_chunk,
            "imbalance": rel,
            "drift": float(wealth.sum() + bank - expected),
            "money_in_circulation": float(np.abs(wealth).sum() + abs(bank)),
            "entries": m["entries"],
            "exits": m["exits"],
            "rent_total": float(np.asarray(books.rent_out.value)[0]),
            "allowances_total": float(np.asarray(books.allowances_in.value)[0]),
            "capped_fraction": m["capped_fraction"],
            "mean_return": m["mean_return"],
            "wall_s": time.perf_counter() - start,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    worst = max(r["imbalance"] for r in rows)
    summary = {
        "market_steps": rows[-1]["market_steps"],
        "num_envs": args.num_envs,
        "episode_devices": args.episodes,
        "max_imbalance": worst,
        "final_imbalance": rows[-1]["imbalance"],
        "max_abs_drift": max(abs(r["drift"]) for r in rows),
        "entries": sum(r["entries"] for r in rows),
        "exits": sum(r["exits"] for r in rows),
        "rent_total": rows[-1]["rent_total"],
        "bound": args.bound,
        "bounded": worst <= args.bound,
        "compile_s": run.compile_s,
        "wall_s": rows[-1]["wall_s"],
    }
    print(json.dumps(summary))
    suffix = "" if args.episodes == 1 else f"_e{args.episodes}"
    (out / f"soak_books{suffix}.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in [*rows, summary])
    )
    plot(rows, args.bound, out / f"soak_books{suffix}.png")
    return summary


def plot(rows: list[dict], bound: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["market_steps"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(steps, [max(r["imbalance"], 1e-12) for r in rows], "o-", label="imbalance")
    a.axhline(bound, color="r", ls="--", label=f"bound {bound:g}")
    a.set_yscale("log")
    a.set_xlabel("market steps")
    a.set_ylabel("|books drift| / money in circulation")
    a.legend()
    b.plot(steps, [r["money_in_circulation"] for r in rows], label="money")
    b.plot(steps, [r["rent_total"] for r in rows], label="rent paid (cum.)")
    b.plot(steps, [r["allowances_total"] for r in rows], label="allowances (cum.)")
    b.set_xlabel("market steps")
    b.legend()
    fig.suptitle("soak: deep market with entry, exit and rent")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"# wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
