"""What happens to a Hayek economy chunk by chunk (docs/reproductions.md).

Trains a config (``configs/hayek_blocks.yaml`` with any overrides) exactly as
``marketjax.cli train`` does (same keys, same compiled chunk, so the same
numbers), and after every chunk prints one line per seed: the greedy solved
fractions of 30 fresh instances at n = 4 / 16 / 64 (as ``summary.json``, bids held
to the wealth cap), the chunk's mean return, exits, parents' payments and
dividends. Every chunk's population (rules, bids, wealth, age, parent slot) is
saved to ``OUT.npz`` (keys ``c{chunk}_s{seed}_{cond,move,logbid,w,wealth,age,
parent}``), to follow a program's rules from chunk to chunk.

    PYTHONPATH=$PWD python scripts/hayek_chunks.py OUT.npz [k=v ...]
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.agents.families import make_family
from marketjax.algos import hayek
from marketjax.core.config import apply_overrides, load_yaml
from marketjax.envs.blocks_world import MOVES
from marketjax.envs.gymnax_adapter import make_gymnax
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import compile_run

SIZES = (4, 16, 64)
EPISODES = 30


def main(out: str, overrides: list[str]) -> None:
    data = load_yaml("configs/hayek_blocks.yaml")
    config = parse_train_config(apply_overrides(data, overrides))
    run = compile_run(config)
    state = run.init(run.keys, run.params)
    env, _ = make_gymnax(config.env)
    big = env.resized(max(SIZES))
    family = make_family("rules", len(env.feature_names), len(MOVES))
    share = 1.0 / config.num_envs
    solve = jax.jit(
        lambda k, p, n: hayek.solve_instances(k, big, family, p, n, EPISODES, share),
        static_argnums=2,
    )
    snaps = {}
    for c in range(run.schedule.num_chunks):
        state, metrics = run.chunk(state, run.params)
        pop = jax.device_get(state.market.population)
        m = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
        for s in range(pop.wealth.shape[0]):
            one = jax.tree.map(lambda x, s=s: x[s], pop)
            key = jax.random.key(c)
            solved = [float(jnp.mean(solve(key, one, n))) for n in SIZES]
            print(
                f"chunk {c} seed {s}: solved n={SIZES} {np.round(solved, 2).tolist()}"
                f" return {m['mean_return'][s]:.1f} exits {m['exits'][s]:.0f}"
                f" parents paid {m['parent_paid'][s]:.0f}"
                f" dividends {m['dividends'][s]:.0f}"
                f" wealth {float(np.sum(one.wealth)):.0f}",
                flush=True,
            )
            fields = {
                "cond": one.params["action"]["cond"],
                "move": one.params["action"]["move"],
                "logbid": one.params["bid"]["log_bid"],
                "w": one.params["bid"]["w"],
                "wealth": one.wealth,
                "age": one.age,
                "parent": one.parent,
            }
            for name, value in fields.items():
                snaps[f"c{c}_s{s}_{name}"] = np.asarray(value)
        np.savez(out, **snaps)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
