"""Dynamic scale (seed 002, §3): does the depth a market uses follow its input?

Trains ``configs/dynamic_scale.yaml`` (a Hayek economy of rules on ReachTarget,
one seed, one compiled program), then plays fresh instances of each difficulty d
greedily (the market's auction without exploration: highest wealth-capped bid
among living solvent agents; no money moves) and counts the
agents that act before the consumer buys: the depth. Prints one JSON line per d and
writes ``docs/figures/dynamic_scale.png`` (depth against d, and the solved share).

    PYTHONPATH=$PWD python scripts/dynamic_scale.py [configs/dynamic_scale.yaml]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.agents.families import make_family, population_bids
from marketjax.core.config import load_yaml
from marketjax.envs.gymnax_adapter import make_gymnax
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import make_train
from marketjax.mechanisms.auctions import rank_bids


def play(key, env, family, pop, d, episodes, budget_share):
    """Depth i32[E] (transformations before the sale; -1: never sold) and
    solved bool[E] for ``episodes`` fresh instances at difficulty d, each step
    auctioned as in the market without exploration (bids capped at
    ``budget_share`` of wealth)."""
    k_reset, k_run = jax.random.split(key)
    _, state = jax.vmap(env.reset_difficulty, in_axes=(0, None))(
        jax.random.split(k_reset, episodes), d
    )
    ok = pop.alive & (pop.wealth > 0.0)
    params = env.default_params

    def body(carry, k):
        state, depth, solved, live = carry
        obs = jax.vmap(env.get_obs)(state)
        bids = population_bids(family, pop.params, obs)
        # the market's cap: a bid is held to 1/B of its bidder's wealth
        bids = jnp.minimum(bids, budget_share * jnp.maximum(pop.wealth, 0.0)[None, :])
        ranking = rank_bids(bids, jnp.broadcast_to(ok[None, :], bids.shape))
        move = pop.params["action"]["move"][jnp.maximum(ranking.winner, 0)]
        action = jnp.where(ranking.winner >= 0, move, 0)
        _, new, reward, sold, _ = jax.vmap(env.step_env, in_axes=(None, 0, 0, None))(
            k, state, action, params
        )
        sell_now = live & sold
        depth = jnp.where(sell_now, state.time, depth)
        solved = solved | (sell_now & (reward > 0))
        return (new, depth, solved, live & ~sold), None

    init = (
        state,
        jnp.full((episodes,), -1, jnp.int32),
        jnp.zeros((episodes,), bool),
        jnp.ones((episodes,), bool),
    )
    steps = params.max_steps_in_episode
    (_, depth, solved, _), _ = jax.lax.scan(body, init, jax.random.split(k_run, steps))
    return depth, solved


def main(path="configs/dynamic_scale.yaml", episodes=200):
    config = parse_train_config(load_yaml(path))
    env, _ = make_gymnax(config.env)
    family = make_family("rules", 3, env.num_actions)
    t0 = time.perf_counter()
    state, metrics = jax.jit(make_train(config))(jax.random.key(config.seed))
    pop = jax.tree.map(jnp.asarray, state.market.population)
    train_s = time.perf_counter() - t0
    rows = []
    share = 1.0 / config.num_envs
    run = jax.jit(lambda k, d: play(k, env, family, pop, d, episodes, share))
    for d in range(env.max_difficulty + 1):
        depth, solved = jax.device_get(run(jax.random.key(100 + d), jnp.int32(d)))
        sold = depth >= 0
        row = {
            "difficulty": d,
            "mean_depth": float(depth[sold].mean()) if sold.any() else None,
            "solved_fraction": float(solved.mean()),
            "sold_fraction": float(sold.mean()),
        }
        rows.append(row)
        print(json.dumps(row))
    returns = [round(float(r), 3) for r in metrics["mean_return"]]
    print(json.dumps({"train_s": round(train_s, 1), "mean_return_by_chunk": returns}))
    w = np.asarray(pop.wealth)
    for i in np.argsort(-w)[:6]:
        print(
            json.dumps(
                {
                    "cond(x<t, x>t, x=t; 0 any 1 yes 2 no)": pop.params["action"][
                        "cond"
                    ][i].tolist(),
                    "move(0 up 1 down 2 sell)": int(pop.params["action"]["move"][i]),
                    "log_bid": round(float(pop.params["bid"]["log_bid"][i]), 3),
                    "wealth": round(float(w[i]), 1),
                }
            )
        )
    print(
        json.dumps(
            {
                "exits": float(jnp.sum(metrics["exits"])),
                "books_imbalance": float(metrics["books_imbalance"][-1]),
            }
        )
    )
    plot(rows, Path("docs/figures/dynamic_scale.png"))
    return rows


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = np.array([r["difficulty"] for r in rows])
    depth = np.array(
        [np.nan if r["mean_depth"] is None else r["mean_depth"] for r in rows]
    )
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(d, d, ":", color="k", lw=1, label="depth = d (shortest)")
    ax.plot(d, depth, "o-", color="C0", label="agents acting before the sale")
    ax2 = ax.twinx()
    ax2.bar(d, [r["solved_fraction"] for r in rows], alpha=0.2, color="C2")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("solved share (bars)")
    ax.set_xlabel("difficulty d (unit steps to the target)")
    ax.set_ylabel("depth used")
    ax.set_title("dynamic scale: ReachTarget, Hayek economy")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(*sys.argv[1:2])
