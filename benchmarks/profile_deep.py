"""Where a deep-market update spends its time: acting, auction, settlement, learning.

One update of ``configs/deep_cartpole.yaml`` (one seed, unbatched as the runner runs
it) is timed beside three programs that stop earlier in the same step, each a
``lax.scan`` over the update's ``rollout_steps`` on the same state:

1. ``acting``: every agent's bid network on every episode's observation (the
   forward pass), the top bidder's action, the environment step;
2. ``+ auction``: the same with the real auction (wealth budgets, ranking, the
   exploration lottery, the payment rule) choosing the owner;
3. ``+ settlement``: the market's own ``rollout`` (transfers, books, episode
   tracking);
4. ``update``: the trainer's whole update (3, then the bootstrap auction, Q(λ)
   credit and every minibatch's forward and backward pass, the optimizer).

Shares are successive differences of the best-of-``repeats`` times (timed
interleaved), over the update's time: acting = t1, auction = t2 - t1, settlement
= t3 - t2, learning = t4 - t3. Differences below timing noise can come out
slightly negative; the raw times are printed too. One JSON object.

    .venv/bin/python benchmarks/profile_deep.py [--batch 256] [--agents 2]
        [--family mlp] [--norm layer]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from marketjax.agents.families import make_family
from marketjax.envs.gymnax_adapter import BatchedEnv
from marketjax.experiment.config import apply_overrides, load_yaml
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import as_params
from marketjax.markets.deep import DeepMarket, DeepMarketParams
from marketjax.markets.rollout import rollout


def build(batch: int, agents: int, family: str, norm: str, overrides=()):
    """(trainer, market, market params, trained-shape state, T) of the profile."""
    from marketjax.algos.deep import make_trainer

    data = apply_overrides(
        load_yaml("configs/deep_cartpole.yaml"),
        [
            f"num_envs={batch}",
            "num_seeds=1",
            f"deep.num_agents={agents}",
            f"deep.family={family}",
            f"deep.norm={norm}",
            *overrides,
        ],
    )
    config = parse_train_config(data)
    dc = config.algo_config
    trainer = make_trainer(config)
    env = BatchedEnv(config.env, config.num_envs)
    fam = make_family(
        dc.family,
        env.spec.obs_dim,
        env.spec.num_actions,
        dc.hidden,
        dc.layer_norm,
        norm=dc.norm,
    )
    market = DeepMarket(env, fam, dc.auction, dc.rent_rule, dc.rent_on)
    params = as_params(trainer.params)
    state = jax.jit(trainer.init)(jax.random.key(0), params)
    f32 = jnp.float32
    mparams = DeepMarketParams(f32(dc.gamma), f32(dc.rent), f32(0.05))
    return trainer, market, mparams, params, state, dc.rollout_steps


def programs(trainer, market, mparams, params, horizon: int) -> dict:
    """The four nested programs, each ``(train state) -> something to block on``."""
    env = market.env

    def acting(ts):
        def body(carry, key):
            env_state, obs = carry
            pop = ts.market.population
            bids, _, _ = market.capped_bids(pop, obs, mparams.rent)
            winner = jnp.argmax(bids, axis=-1).astype(jnp.int32)
            action = pop.params["action"][winner].astype(jnp.int32)
            obs, env_state, reward, _, _ = env.step(key, env_state, action)
            return (env_state, obs), jnp.sum(reward)

        keys = jax.random.split(ts.key, horizon)
        carry = (ts.market.env_state, ts.market.obs)
        return jax.lax.scan(body, carry, keys)

    def with_auction(ts):
        def body(carry, key):
            env_state, obs = carry
            pop = ts.market.population
            k_a, k_e = jax.random.split(key)
            winner, _, pay, _ = market.auction(k_a, pop, obs, mparams)
            action = pop.params["action"][jnp.maximum(winner, 0)].astype(jnp.int32)
            obs, env_state, reward, _, _ = env.step(k_e, env_state, action)
            return (env_state, obs), jnp.sum(reward) + jnp.sum(pay.paid)

        keys = jax.random.split(ts.key, horizon)
        carry = (ts.market.env_state, ts.market.obs)
        return jax.lax.scan(body, carry, keys)

    def with_settlement(ts):
        return rollout(market, ts.key, ts.market, mparams, horizon)

    def update(ts):
        return trainer.update(ts, params)

    return {
        "acting": acting,
        "auction": with_auction,
        "settlement": with_settlement,
        "learning": update,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--family", default="mlp")
    parser.add_argument("--norm", default="layer")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--png", default="benchmarks/out/profile_deep.png")
    parser.add_argument("overrides", nargs="*", help="more key=value overrides")
    args = parser.parse_args(argv)
    trainer, market, mparams, params, state, horizon = build(
        args.batch, args.agents, args.family, args.norm, args.overrides
    )
    progs = programs(trainer, market, mparams, params, horizon)
    compiled = {k: jax.jit(f).lower(state).compile() for k, f in progs.items()}
    for fn in compiled.values():
        jax.block_until_ready(fn(state))
    best = dict.fromkeys(compiled, float("inf"))
    for _ in range(args.repeats):
        for name, fn in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(state))
            best[name] = min(best[name], time.perf_counter() - start)
    names = list(compiled)
    cumulative = [best[n] for n in names]
    parts = [cumulative[0]] + [b - a for a, b in itertools.pairwise(cumulative)]
    total = cumulative[-1]
    row = {
        "bench": "profile_deep",
        "B": args.batch,
        "N": args.agents,
        "family": args.family,
        "norm": args.norm,
        "overrides": args.overrides,
        "rollout_steps": horizon,
        "update_ms": round(1e3 * total, 3),
        "cumulative_ms": {
            n: round(1e3 * t, 3) for n, t in zip(names, cumulative, strict=True)
        },
        "share": {n: round(p / total, 3) for n, p in zip(names, parts, strict=True)},
        "env_steps_per_s": round(horizon * args.batch / total),
    }
    print(json.dumps(row), flush=True)
    plot_shares(row, Path(args.png))
    return row


def plot_shares(row: dict, path: Path) -> None:
    """One horizontal bar: the share of an update's time in each part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 1.8))
    left = 0.0
    for name, share in row["share"].items():
        share = max(share, 0.0)  # cumulative timings are noisy: a part can be ~0
        ax.barh(0, share, left=left, label=f"{name} {share:.0%}")
        left += share
    ax.set_xlim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel("share of one deep-market update")
    ax.set_title(
        f"B={row['B']} N={row['N']} {row['family']}: {row['update_ms']} ms/update",
        fontsize=9,
    )
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.6))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
