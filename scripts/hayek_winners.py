"""Who wins the auctions of a saved Hayek population (docs/reproductions.md).

Loads one chunk's population of one seed from ``scripts/hayek_chunks.py``'s
``OUT.npz``, plays 20 fresh instances of n blocks greedily as ``summary.json``
does (bids held to the wealth cap 1/16 of wealth, no money moving), and prints
the solved fraction, the share of steps whose winner the cap changed, the rules
that won most steps (wealth, cap, condition → move) and who held the world in
the last 20 steps of the unsolved instances.

    PYTHONPATH=$PWD python scripts/hayek_winners.py OUT.npz SEED CHUNKS N
    (CHUNKS: comma-separated, e.g. 6,7)
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.agents.families import make_family, population_bids
from marketjax.agents.population import Population
from marketjax.envs.blocks_world import MOVES
from marketjax.envs.gymnax_adapter import make_gymnax
from marketjax.mechanisms.auctions import rank_bids

EPISODES = 20
SHARE = 1.0 / 16  # configs/hayek_blocks.yaml: 16 episodes share one wealth


def load(d, c: int, s: int) -> Population:
    """Chunk c, seed s of the saved snapshots as a Population (all alive)."""

    def g(k):
        return jnp.asarray(d[f"c{c}_s{s}_{k}"])

    params = {
        "action": {"cond": g("cond"), "move": g("move")},
        "bid": {"log_bid": g("logbid"), "w": g("w")},
    }
    alive = jnp.ones(g("wealth").shape, bool)
    return Population(params, g("wealth"), alive, g("age"), g("parent"))


def describe(pop: Population, i: int, names) -> str:
    cond = np.asarray(pop.params["action"]["cond"][i])
    src, dst = MOVES[int(pop.params["action"]["move"][i])]
    terms = [
        (nm if v == 1 else f"not {nm}") for nm, v in zip(names, cond, strict=True) if v
    ]
    return f"{' & '.join(terms) or 'always'} -> {src}->{dst}"


def main(path: str, s: int, chunks: list[int], n: int) -> None:
    d = np.load(path)
    env, _ = make_gymnax("BlocksWorld-r10-n-mix")
    big = env.resized(max(64, n))
    family = make_family("rules", len(env.feature_names), len(MOVES))
    for c in chunks:
        pop = load(d, c, s)
        ok = pop.alive & (pop.wealth > 0)
        keys = jax.random.split(jax.random.key(7), EPISODES)
        _, st = jax.vmap(env.reset_sized, in_axes=(0, None))(keys, n)
        done = np.zeros(EPISODES, bool)
        wins, last, capped, total = {}, {}, 0, 0
        for t in range(env.step_factor * n):
            raw = population_bids(family, pop.params, jax.vmap(big.get_obs)(st))
            bids = jnp.minimum(raw, SHARE * jnp.maximum(pop.wealth, 0)[None])
            valid = jnp.broadcast_to(ok[None], bids.shape)
            win = np.asarray(rank_bids(bids, valid).winner)
            free = np.asarray(rank_bids(raw, valid).winner)
            for e in np.flatnonzero(~done):
                total += 1
                capped += int(free[e] != win[e])
                wins[int(win[e])] = wins.get(int(win[e]), 0) + 1
                if t >= env.step_factor * n - 20:
                    last[int(win[e])] = last.get(int(win[e]), 0) + 1
            moves = pop.params["action"]["move"][np.maximum(win, 0)]
            _, new, _, solved, _ = jax.vmap(big.step_env, in_axes=(None, 0, 0, None))(
                jax.random.key(t), st, moves, big.default_params
            )
            keep = jnp.asarray(done)
            st = jax.tree.map(
                lambda a, b, keep=keep: jnp.where(
                    keep.reshape((-1,) + (1,) * (a.ndim - 1)), a, b
                ),
                st,
                new,
            )
            done = done | np.asarray(solved)
        wealth = np.asarray(pop.wealth)
        print(
            f"chunk {c} seed {s} n={n}: solved {done.mean():.2f}; "
            f"the cap changed the winner in {capped / max(total, 1):.2f} of steps"
        )
        for i, k in sorted(wins.items(), key=lambda x: -x[1])[:8]:
            print(
                f"  slot {i:3d} won {k:5d} steps, wealth {wealth[i]:9.0f} "
                f"(cap {SHARE * wealth[i]:7.1f}): {describe(pop, i, env.feature_names)}"
            )
        top = sorted(last.items(), key=lambda x: -x[1])[:6]
        print(f"  held in the last 20 steps of unsolved instances (slot, steps): {top}")


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], int(a[1]), [int(x) for x in a[2].split(",")], int(a[3]))
