"""Does the Hayek economy keep a planted program? (docs/reproductions.md)

Plants the five hand-written Blocks World rules that solve 100% of 100-block
instances (``tests/algos/test_hayek.py``: clear stack 1, fetch the next block
needed from stack 2 or 3, dig for it) into slots 0–4 of a random economy of
``configs/hayek_blocks_selection.yaml`` (or ``--config PATH``; with any
overrides), trains ``UPDATES`` updates of
two seeds, and prints one JSON line: the solved fractions by size (greedy, fresh
instances, as ``summary.json``), the planted slots' final wealth and whether each
still holds its planted rule, and the richest rules of seed 0.

    PYTHONPATH=$PWD python scripts/hayek_planted.py UPDATES [--config PATH] [k=v ...]
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.algos import hayek
from marketjax.core.config import apply_overrides, load_yaml
from marketjax.envs.blocks_world import MOVES, solver_rules
from marketjax.envs.gymnax_adapter import make_gymnax
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import as_params

PLANTED = solver_rules()


BASE = "configs/hayek_blocks_selection.yaml"  # the docs' planted rows ran on it


def main(updates: int, overrides: list[str], path: str = BASE) -> dict:
    data = load_yaml(path)
    sizes = ["hayek.eval_sizes=[2,4,8,16]", "hayek.eval_episodes=50"]
    config = parse_train_config(apply_overrides(data, sizes + overrides))
    trainer = hayek.make_trainer(config)
    params = as_params(trainer.params)
    k = len(PLANTED)
    cond = jnp.asarray(np.stack([c for c, _, _ in PLANTED]))  # i32[5, D]
    move = jnp.asarray([MOVES.index(m) for _, m, _ in PLANTED], jnp.int32)  # i32[5]
    log_bid = jnp.log(jnp.asarray([b for *_, b in PLANTED], jnp.float32))  # f32[5]
    names = make_gymnax(config.env)[0].feature_names
    extra = len(names) - cond.shape[1]  # log_n (size_feature): no condition on it
    cond = jnp.pad(cond, ((0, 0), (0, extra)))
    # With log n among the features the planted bids start proportional to n
    # (the reward is 10n): bid·n, weight 1 on log n.
    w0 = jnp.zeros((k, len(names)), jnp.float32)
    if names[-1] == "log_n":
        w0 = w0.at[:, -1].set(1.0)

    def run(key):
        state = trainer.init(key, params)
        pop = state.market.population
        p = pop.params
        p = {
            "action": {
                "cond": p["action"]["cond"].at[:k].set(cond),
                "move": p["action"]["move"].at[:k].set(move),
            },
            "bid": {
                "log_bid": p["bid"]["log_bid"].at[:k].set(log_bid),
                "w": p["bid"]["w"].at[:k].set(w0),
            },
        }
        market = state.market.replace(population=pop.replace(params=p))
        state = state.replace(market=market)
        state, _ = jax.lax.scan(
            lambda s, _: trainer.update(s, params), state, None, length=updates
        )
        return state

    state = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(config.seed), 2))
    solved = hayek.solved_by_size(state, config)
    pop0 = jax.device_get(jax.tree.map(lambda x: x[0], state.market.population))
    kept = np.all(np.asarray(pop0.params["action"]["cond"][:k]) == np.asarray(cond), 1)
    return {
        "config": path,
        "overrides": overrides,
        "updates": updates,
        "solved_fraction_by_size": solved["solved_fraction_by_size"],
        "planted_wealth_seed0": np.asarray(pop0.wealth[:k]).round(1).tolist(),
        "planted_kept_seed0": kept.tolist(),
        "richest_rules_seed0": hayek.describe_rules(pop0, 6, names),
    }


if __name__ == "__main__":
    args = sys.argv[2:]
    path = BASE
    if args[:1] == ["--config"]:
        path, args = args[1], args[2:]
    print(json.dumps(main(int(sys.argv[1]), args, path)))
