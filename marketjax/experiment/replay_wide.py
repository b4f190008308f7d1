"""``marketjax replay`` of a wide market (Algorithm 2): prices and holdings per good.

As for the deep market (``replay.py``): the first run's population (point 0, seed
0) plays K fresh episodes greedily (ε = ``--explore``, 0 by default; no learning)
on a new ``BatchedEnv`` of K episodes that share the population's wealth, in a
jitted ``lax.scan`` of ``replay.BLOCK`` steps until every episode has ended once.
``RUN_DIR/replay/`` then holds:

- ``replay.jsonl``: per step of each episode, the clearing ``prices`` (one per
  good), the ``holdings`` (per good, every agent's units; they sum to the supply 1),
  each good's ``controllers`` and ``actions``, the ``factor_rewards``, the
  ``reward`` and ``done``;
- ``summary.json``: evaluation returns (mean, std over episodes) and what the money
  did (``mean_price``, ``capped_fraction`` of agents' bids cut by their budgets,
  ``control_share``, wealth before/after and its Gini);
- ``goods.png`` (per good: the price over the steps of the first episodes, and
  episode 0's holdings stacked by agent), ``wealth.png``, and for environments
  ``frames.py`` can draw, ``frames.png``/``frames.gif`` with each good's
  controller.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.experiment.checkpoint import write_atomic, write_json_atomic
from marketjax.markets.diagnostics import gini
from marketjax.markets.wide import WideMarket, WideMarketParams


def make_wide_market(config, episodes: int) -> WideMarket:
    """The run's wide market on a fresh ``BatchedEnv`` of ``episodes`` episodes."""
    from marketjax.algos.wide import build_market

    return build_market(config, episodes)


def play_wide(config, population, episodes: int, explore: float, max_steps: int):
    """Plays greedy episodes; numpy records [T, ...] (T >= every episode's end)."""
    from marketjax.experiment.replay import BLOCK

    wc = config.algo_config
    market = make_wide_market(config, episodes)
    f32 = jnp.float32
    params = WideMarketParams(
        f32(wc.gamma),
        f32(wc.rent),
        f32(wc.curvature),
        f32(explore),
        coupling=f32(wc.coupling),
        equ_tol=f32(wc.equ_tol),
    )

    def one(state, key):
        raw = jnp.max(market.q_values(state.population.params, state.obs), -1)
        capped = market.capped_bids(raw, state.population.wealth, params)
        state, rec = market.step(key, state, params)
        return state, {
            "obs": rec.obs,  # f32[K, D]
            "price": rec.price,  # f32[K, G]
            "holdings": rec.allocation,  # f32[K, N, G]
            "controller": rec.controller,  # i32[K, G]
            "action": rec.action,  # i32[K, G]
            "factor_reward": rec.factor_reward,  # f32[K, G]
            "done": rec.done,  # bool[K]
            "capped": jnp.any(capped < raw - 1e-6 * jnp.abs(raw), -1),  # bool[K, N]
            "wealth": state.population.wealth,  # f32[N], after the step
        }

    @jax.jit
    def block(key, state):
        return jax.lax.scan(one, state, jax.random.split(key, BLOCK))

    key, k_init = jax.random.split(jax.random.key(config.seed))
    state = jax.jit(market.init)(k_init, population)  # one compile, not one per op
    chunks, ended, steps = [], np.zeros(episodes, bool), 0
    while not ended.all() and steps < max_steps:
        key, k = jax.random.split(key)
        state, rec = block(k, state)
        chunks.append(jax.device_get(rec))
        ended |= chunks[-1]["done"].any(axis=0)
        steps += BLOCK
    out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    out["wealth_start"] = np.asarray(population.wealth)
    return out


def _r(x) -> list:
    return np.round(np.asarray(x, np.float64), 5).tolist()


def write_wide_replay(run: Path, config, rec: dict, explore: float) -> dict:
    """Writes ``run/replay/`` (see the module docstring); returns the summary."""
    from marketjax.experiment.replay import episode_ends
    from marketjax.experiment.replay_plots import (
        agent_colour,
        draw_frames,
        plot_goods,
        plot_wealth,
    )

    out = run / "replay"
    ends = episode_ends(rec["done"])
    k = ends.shape[0]
    reward = rec["factor_reward"].sum(-1)  # f32[T, K]
    lines, returns = [], np.zeros(k)
    for e in range(k):
        for t in range(ends[e] + 1):
            row = {
                "episode": e,
                "step": t,
                "prices": _r(rec["price"][t, e]),
                "holdings": _r(rec["holdings"][t, e].T),  # [G][N]
                "controllers": rec["controller"][t, e].tolist(),
                "actions": rec["action"][t, e].tolist(),
                "factor_rewards": _r(rec["factor_reward"][t, e]),
                "reward": float(reward[t, e]),
                "done": bool(rec["done"][t, e]),
            }
            lines.append(json.dumps(row))
        returns[e] = reward[: ends[e] + 1, e].astype(np.float64).sum()
    write_atomic(out / "replay.jsonl", "\n".join(lines) + "\n")
    mask = np.arange(reward.shape[0])[:, None] <= ends[None, :]  # bool[T, K]
    last = int(ends.max())
    held = rec["holdings"][mask]  # [M, N, G]
    summary = {
        "run": str(run),
        "algo": config.algo,
        "env": config.env,
        "episodes": k,
        "goods": int(rec["price"].shape[-1]),
        "finished": int(rec["done"].any(axis=0).sum()),
        "explore": explore,
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "returns": returns.tolist(),
        "mean_price": float(rec["price"][mask].mean()),
        "capped_fraction": float(rec["capped"][mask].mean()),
        "top_holding": float(held.max(axis=1).mean()),
        "wealth_start": rec["wealth_start"].tolist(),
        "wealth_end": rec["wealth"][last].tolist(),
        "wealth_gini_end": float(jax.jit(gini)(rec["wealth"][last])),
    }
    n = rec["wealth"].shape[1]

    def label(t):  # episode 0's controller of each good at step t
        c = rec["controller"][t, 0]
        text = f"t={t} " + " ".join(f"a{int(a)}" for a in c)
        return text, agent_colour(int(c[0]), n)

    summary["frames"] = draw_frames(config, rec, ends, out, label)
    write_json_atomic(out / "summary.json", summary)
    title = f"{config.name}: wide market on {config.env}"
    plot_goods(rec, ends, out / "goods.png", title)
    plot_wealth(rec, last, out / "wealth.png", title)
    return summary
