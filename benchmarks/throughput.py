"""Throughput of the deep market against the raw gymnax environment it wraps.

Every case is measured in the same process, so the ratio compares like with like:

- ``raw``: gymnax CartPole-v1, random actions, a jitted ``lax.scan`` over steps of a
  ``vmap``-ed batch of B episodes (the environment alone);
- ``act``: the deep market acting and settling, ``DeepMarket.rollout`` (bids, wealth
  cap, auction with the exploration lottery, act, env step, settlement), no learning;
- ``learn``: one full update of the ``algo: deep`` trainer (``learning: bids``): the
  rollout plus the Q(λ) bid regression.

``--budget-ablation`` measures what the money rules cost (issue 9), as ratios to the
raw env in one process, with acting linear agents: ``budget`` = ``shared`` (the
shipped rule: each bid capped at 1/B of the agent's budget, wealth 1e6), the old
``per_episode`` cap (each bid capped at the whole wealth: the rule that let B
episodes overdraw an account), and ``binding`` (the shared rule with wealth 300 so
that caps bind, rent on every living agent, ε = 0.001).

Compile time is measured apart (``lower().compile()``); the rate is the best of k
timed calls, each ending in ``block_until_ready``. One JSON object per line::

    {"B": .., "N": .., "family": .., "mode": .., "raw_env_steps_per_s": ..,
     "market_env_steps_per_s": .., "ratio": .., "compile_s": ..}

Usage::

    .venv/bin/python benchmarks/throughput.py [--quick] [--out benchmarks/out]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from marketjax.agents.families import make_family, population_bids
from marketjax.agents.population import init_population
from marketjax.algos.deep import make_trainer
from marketjax.envs.gymnax_adapter import BatchedEnv, make_gymnax
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import as_params
from marketjax.markets.deep import DeepMarket, DeepMarketParams
from marketjax.markets.rollout import rollout

ENV = "CartPole-v1"


def _steps_per_call(batch: int) -> int:
    """Scan length: about 2^18 env steps per timed call, between 32 and 1024 steps."""
    return int(min(1024, max(32, 2**18 // batch)))


def _compile(fn, state):
    """(compiled fn, compile seconds); the first call is also made (warm-up)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(state).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(state))
    return compiled, compile_s


def _best_interleaved(cases, repeats: int) -> list[float]:
    """Best seconds per call of each ``(compiled, state)``, timed in turn.

    Interleaving the calls (raw, market, raw, market, ...) exposes every case to
    the same background load, so the ratio is fair on a shared machine.
    """
    best = [float("inf")] * len(cases)
    for _ in range(repeats):
        for i, (compiled, state) in enumerate(cases):
            start = time.perf_counter()
            jax.block_until_ready(compiled(state))
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def raw_case(batch: int):
    """Raw gymnax CartPole-v1, random actions: ``(fn, state, env steps per call)``."""
    env, params = make_gymnax(ENV)
    steps = _steps_per_call(batch)
    num_actions = env.action_space(params).n
    keys = jax.random.split(jax.random.key(0), batch)
    _, env_state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)

    def run(carry):
        def body(c, _):
            key, s = c
            key, k_act, k_step = jax.random.split(key, 3)
            action = jax.random.randint(k_act, (batch,), 0, num_actions)
            obs, s, reward, _, _, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_step, batch), s, action, params
            )
            return (key, s), jnp.sum(reward) + jnp.sum(obs)

        return jax.lax.scan(body, carry, None, length=steps)

    return run, (jax.random.key(1), env_state), batch * steps


class PerEpisodeCapMarket(DeepMarket):
    """The rule before the shared budget: every bid capped at the whole wealth."""

    def capped_bids(self, population, obs, rent):
        raw = population_bids(self.family, population.params, obs)
        bids = jnp.minimum(raw, self.bid_budget(population.wealth, rent)[None, :])
        valid = (population.alive & (population.wealth > 0.0))[None, :]
        return bids, jnp.broadcast_to(valid, bids.shape), raw


BUDGETS = ("shared", "per_episode", "binding")


def act_case(batch: int, n: int, family: str, budget: str = "shared"):
    """``DeepMarket.rollout`` (acting and settling, no learning)."""
    env = BatchedEnv(ENV, batch)
    fam = make_family(family, env.spec.obs_dim, env.spec.num_actions, (64, 64))
    if budget == "per_episode":
        market = PerEpisodeCapMarket(env, fam, "vickrey")
    elif budget == "binding":
        market = DeepMarket(env, fam, "credit_conserving", rent_on="all")
    else:
        market = DeepMarket(env, fam, "vickrey")
    wealth, rent = (300.0, 0.001) if budget == "binding" else (1e6, 0.0)
    pop = init_population(jax.random.key(0), fam, n, wealth)
    state = market.init(jax.random.key(1), pop)
    params = DeepMarketParams(jnp.float32(0.99), jnp.float32(rent), jnp.float32(0.05))
    steps = _steps_per_call(batch)

    def run(s):
        return rollout(market, jax.random.key(2), s, params, steps)

    return run, state, batch * steps


def learn_case(batch: int, n: int, family: str):
    """Full updates of the ``algo: deep`` trainer (``learning: bids``)."""
    horizon = 16
    updates = max(1, _steps_per_call(batch) // (4 * horizon))
    config = parse_train_config(
        {
            "name": "bench",
            "algo": "deep",
            "env": ENV,
            "num_envs": batch,
            "total_env_steps": batch * horizon * updates,
            "deep": {
                "num_agents": n,
                "family": family,
                "hidden": [64, 64],
                "learning": "bids",
                "rollout_steps": horizon,
                "epochs": 1,
            },
        }
    )
    trainer = make_trainer(config)
    params = as_params(trainer.params)
    state = jax.jit(trainer.init)(jax.random.key(0), params)

    def run(ts):
        return jax.lax.scan(
            lambda s, _: trainer.update(s, params), ts, None, length=updates
        )

    return run, state, batch * horizon * updates


def plot(rows: list[dict], path: Path) -> None:
    """Env steps/s against B, one line per (mode, family, N), raw env dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    raw = sorted({(r["B"], r["raw_env_steps_per_s"]) for r in rows})
    by_b: dict[int, float] = {}
    for b, rate in raw:
        by_b[b] = max(by_b.get(b, 0.0), rate)
    ax.plot(list(by_b), list(by_b.values()), "k--", marker="o", label="raw gymnax")
    groups = sorted({(r["mode"], r["family"], r["N"]) for r in rows})
    for mode, family, n in groups:
        pts = [
            (r["B"], r["market_env_steps_per_s"])
            for r in rows
            if (r["mode"], r["family"], r["N"]) == (mode, family, n)
        ]
        pts.sort()
        ax.plot(*zip(*pts, strict=True), marker=".", label=f"{mode} {family} N={n}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("parallel episodes B")
    ax.set_ylabel("env steps / s")
    ax.set_title(f"deep market vs raw {ENV} ({jax.devices()[0].platform})")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def budget_ablation(args) -> None:
    """Acting throughput under each money rule of :data:`BUDGETS`, interleaved."""
    repeats = args.repeats or 7
    batches = [int(b) for b in args.batches.split(",")] if args.batches else [64, 4096]
    for b in batches:
        raw_fn, raw_state, raw_steps = raw_case(b)
        cases = [_compile(raw_fn, raw_state)[0], raw_state]
        timed = [(cases[0], cases[1])]
        steps = []
        for budget in BUDGETS:
            fn, state, n_steps = act_case(b, 64, "linear", budget)
            timed.append((_compile(fn, state)[0], state))
            steps.append(n_steps)
        times = _best_interleaved(timed, repeats)
        raw = raw_steps / times[0]
        for budget, t, n_steps in zip(BUDGETS, times[1:], steps, strict=True):
            row = {
                "B": b,
                "N": 64,
                "family": "linear",
                "mode": "act",
                "budget": budget,
                "raw_env_steps_per_s": round(raw),
                "market_env_steps_per_s": round(n_steps / t),
                "ratio": round(n_steps / t / raw, 4),
            }
            print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer cases, k=3")
    parser.add_argument(
        "--modes", default=None, help="comma-separated: act,learn (default both)"
    )
    parser.add_argument("--families", default=None, help="linear,mlp")
    parser.add_argument("--batches", default=None, help="e.g. 4096")
    parser.add_argument("--out", default="benchmarks/out", help="folder for the PNG")
    parser.add_argument("--repeats", type=int, default=None, help="best of k")
    parser.add_argument(
        "--budget-ablation",
        action="store_true",
        help="act, linear N=64: shared budget vs per-episode cap vs binding money",
    )
    args = parser.parse_args()
    if args.budget_ablation:
        budget_ablation(args)
        return
    repeats = args.repeats or (3 if args.quick else 7)
    batches = [64, 4096] if args.quick else [1, 64, 1024, 4096]
    agents = [64] if args.quick else [8, 64]
    families = ["linear"] if args.quick else ["linear", "mlp"]
    modes = ["act"] if args.quick else ["act", "learn"]
    modes = args.modes.split(",") if args.modes else modes
    families = args.families.split(",") if args.families else families
    batches = [int(b) for b in args.batches.split(",")] if args.batches else batches

    rows = []
    for b in batches:
        raw_fn, raw_state, raw_steps = raw_case(b)
        raw_compiled, _ = _compile(raw_fn, raw_state)
        for mode in modes:
            for family in families:
                for n in agents:
                    case = act_case if mode == "act" else learn_case
                    fn, state, steps = case(b, n, family)
                    compiled, compile_s = _compile(fn, state)
                    k = repeats if mode == "act" else max(2, repeats // 2)
                    t_raw, t_market = _best_interleaved(
                        [(raw_compiled, raw_state), (compiled, state)], k
                    )
                    raw, rate = raw_steps / t_raw, steps / t_market
                    row = {
                        "B": b,
                        "N": n,
                        "family": family,
                        "mode": mode,
                        "raw_env_steps_per_s": round(raw),
                        "market_env_steps_per_s": round(rate),
                        "ratio": round(rate / raw, 4),
                        "compile_s": round(compile_s, 3),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    plot(rows, Path(args.out) / "throughput.png")


if __name__ == "__main__":
    main()
