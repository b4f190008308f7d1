"""``marketjax replay RUN_DIR``: watch a trained deep market play, and evaluate it.

(A wide market is replayed by ``replay_wide.py``: prices and holdings per good.)

The run's ``config.yaml`` and ``checkpoint.msgpack`` are read (checked before
anything compiles, as a resume checks them: ``run_dir.read_checkpoint_payload``);
the first run's population (point 0, seed 0) plays K fresh episodes of the deep
market (Algorithm 1) greedily — no learning, and no exploration unless asked — on a
new ``BatchedEnv`` of K episodes that share the population's wealth, as in training
(the paper's footnote 2; bids are capped at 1/K of each budget). The market steps
in a jitted ``lax.scan`` of :data:`BLOCK` steps, called until every episode has
ended once; everything is written afterwards, on the host, into ``RUN_DIR/replay/``:

- ``replay.jsonl``: one object per step of each episode (up to its first end):
  the owner (``-1``: the bank acted), the three highest budgeted bids with their
  agents, the price paid, the reward and the owner's wealth after the step.
- ``summary.json``: the evaluation returns (mean and std over episodes) and what
  the money did (capped_fraction, bank_acted_frac, wealth before/after, Gini).
- ``ownership.png`` (who held the world at each step, with the winning bid),
  ``wealth.png`` (every agent's wealth over the replay) and, for environments
  ``frames.py`` can draw, ``frames.png`` / ``frames.gif``: episode 0's
  observations with the owner's id.

A PPO run gets its evaluation returns only (``replay_ppo.py``); any other
algorithm is refused in one line (exit status 2) before its checkpoint is read.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.algos.deep import build_market
from marketjax.core.config import ConfigError, load_yaml
from marketjax.envs.gymnax_adapter import make_gymnax
from marketjax.experiment import run_dir as rd
from marketjax.experiment.checkpoint import (
    load_checkpoint,
    write_atomic,
    write_json_atomic,
)
from marketjax.experiment.registry import (
    get_algorithm,
    parse_train_config,
    sweep_points,
)
from marketjax.experiment.runner import run_params, seed_keys
from marketjax.markets.deep import DeepMarket, DeepMarketParams
from marketjax.markets.diagnostics import gini

BLOCK = 64  # market steps per jitted call
TOP = 3  # bids recorded per step


SUPPORTED = ("deep", "wide", "ppo")
REFUSAL = "replay supports deep and wide markets (and ppo: returns only); got {}"


def load_run(run: Path):
    """``(config of point 0, training state of run 0)`` of a deep or PPO run.

    Raises:
      ConfigError: one line naming what is wrong with ``run`` (exit status 2).
    """
    if not run.is_dir():
        raise ConfigError(f"replay: {run} is not a run directory")
    cfg_path, ckpt = run / "config.yaml", run / rd.CHECKPOINT
    for path in (cfg_path, ckpt):
        if not path.is_file():
            raise ConfigError(f"replay: {path} does not exist (not a trained run?)")
    config = parse_train_config(load_yaml(cfg_path))
    if config.algo not in SUPPORTED:
        raise ConfigError(REFUSAL.format(config.algo))
    rd.read_checkpoint_payload(ckpt)  # empty / truncated / foreign: one line
    trainer = get_algorithm(config.algo).make_trainer(config)
    points = sweep_points(config)
    keys = jnp.concatenate([seed_keys(config)] * len(points))
    params = run_params(trainer, points, config.num_seeds)
    template = jax.jit(jax.vmap(trainer.init))(keys, params)  # typed keys: real
    try:
        state, _ = load_checkpoint(ckpt, template)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        why = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(f"replay: {ckpt} does not fit {cfg_path} ({why})") from None
    return points[0][1], jax.tree.map(lambda x: x[0], state)


def max_episode_steps(env_name: str, cap: int) -> int:
    """The env's own episode limit (gymnax ``max_steps_in_episode``), at most cap."""
    _, env_params = make_gymnax(env_name)
    return min(int(getattr(env_params, "max_steps_in_episode", cap)), cap)


def make_block(market: DeepMarket, params: DeepMarketParams):
    """A jitted ``(key, state) -> (state, records [BLOCK, ...])`` of greedy steps."""

    def one(state, key):
        pop = state.population
        bids, valid, _ = market.capped_bids(pop, state.obs, params.rent)
        masked = jnp.where(valid, bids, -jnp.inf)  # f32[K, N]
        top_bid, top_agent = jax.lax.top_k(masked, min(TOP, pop.size))
        state, rec = market.step(key, state, params)
        wealth = state.population.wealth  # f32[N], after the step
        owner_wealth = jnp.where(rec.winner >= 0, wealth[jnp.maximum(rec.winner, 0)], 0)
        return state, {
            "obs": rec.obs,  # f32[K, D], what the agents bid on
            "owner": rec.winner,  # i32[K]
            "paid": rec.paid,  # f32[K]
            "reward": rec.reward,  # f32[K]
            "done": rec.done,  # bool[K]
            "capped": rec.capped,  # bool[K]
            "top_bid": top_bid,  # f32[K, TOP]
            "top_agent": top_agent,  # i32[K, TOP]
            "owner_wealth": owner_wealth,  # f32[K]
            "wealth": wealth,  # f32[N]
        }

    @jax.jit
    def block(key, state):
        return jax.lax.scan(one, state, jax.random.split(key, BLOCK))

    return block


def play(config, population, episodes: int, explore: float, max_steps: int) -> dict:
    """Plays ``episodes`` episodes; returns numpy records [T, ...] (T >= each end)."""
    dc = config.algo_config
    market = build_market(config, episodes)
    f32 = jnp.float32
    owner_rent = getattr(dc, "owner_rent", None)
    mparams = DeepMarketParams(
        f32(dc.gamma),
        f32(dc.rent),
        f32(explore),
        None if owner_rent is None else f32(owner_rent),
    )
    block = make_block(market, mparams)
    key = jax.random.key(config.seed)
    key, k_init = jax.random.split(key)
    state = jax.jit(market.init)(k_init, population)  # one compile, not one per op
    chunks, ended, steps = [], np.zeros(episodes, bool), 0
    while not ended.all() and steps < max_steps:
        key, k = jax.random.split(key)
        state, rec = block(k, state)
        rec = jax.device_get(rec)
        chunks.append(rec)
        ended |= rec["done"].any(axis=0)
        steps += BLOCK
    out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    out["wealth_start"] = np.asarray(population.wealth)
    return out


def episode_ends(done: np.ndarray) -> np.ndarray:
    """i32[K]: index of each episode's first end (T - 1 if it never ended)."""
    t = done.shape[0]
    return np.where(done.any(axis=0), np.argmax(done, axis=0), t - 1)


def write_replay(run: Path, config, rec: dict, explore: float) -> dict:
    """Writes ``run/replay/`` (see the module docstring); returns the summary."""
    from marketjax.experiment.replay_plots import (
        agent_colour,
        draw_frames,
        plot_ownership,
        plot_wealth,
    )

    out = run / "replay"
    ends = episode_ends(rec["done"])
    k = ends.shape[0]
    lines, returns = [], np.zeros(k)
    agents, bids = rec["top_agent"], rec["top_bid"]
    for e in range(k):
        for t in range(ends[e] + 1):
            owner = int(rec["owner"][t, e])
            top = [
                [int(a), float(b)]
                for a, b in zip(agents[t, e], bids[t, e], strict=True)
                if np.isfinite(b)
            ]
            row = {
                "episode": e,
                "step": t,
                "owner": owner,
                "top_bids": top,
                "paid": float(rec["paid"][t, e]),
                "reward": float(rec["reward"][t, e]),
                "owner_wealth": float(rec["owner_wealth"][t, e])
                if owner >= 0
                else None,
                "capped": bool(rec["capped"][t, e]),
                "done": bool(rec["done"][t, e]),
            }
            lines.append(json.dumps(row))
        returns[e] = rec["reward"][: ends[e] + 1, e].astype(np.float64).sum()
    write_atomic(out / "replay.jsonl", "\n".join(lines) + "\n")
    mask = np.arange(rec["done"].shape[0])[:, None] <= ends[None, :]  # bool[T, K]
    last = int(ends.max())
    summary = {
        "run": str(run),
        "algo": config.algo,
        "env": config.env,
        "episodes": k,
        "finished": int(rec["done"].any(axis=0).sum()),
        "explore": explore,
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "returns": returns.tolist(),
        "mean_price": float(rec["paid"][mask].mean()),
        "capped_fraction": float(rec["capped"][mask].mean()),
        "bank_acted_frac": float((rec["owner"][mask] < 0).mean()),
        "wealth_start": rec["wealth_start"].tolist(),
        "wealth_end": rec["wealth"][last].tolist(),
        "wealth_gini_end": float(jax.jit(gini)(rec["wealth"][last])),
    }
    n = rec["wealth"].shape[1]

    def label(t):  # episode 0's owner at step t, for its frame
        a = int(rec["owner"][t, 0])
        return (f"t={t} " + (f"agent {a}" if a >= 0 else "bank")), agent_colour(a, n)

    summary["frames"] = draw_frames(config, rec, ends, out, label)
    write_json_atomic(out / "summary.json", summary)
    title = f"{config.name}: deep market on {config.env}"
    plot_ownership(rec, ends, out / "ownership.png", title)
    plot_wealth(rec, last, out / "wealth.png", title)
    return summary


def replay(run: str | Path, episodes: int = 8, explore: float = 0.0) -> dict:
    """Loads, plays and writes a replay of a deep-market run (see module doc)."""
    run = Path(run)
    if episodes < 1:
        raise ConfigError(f"'--episodes' must be >= 1, got {episodes}")
    if not 0.0 <= explore <= 1.0:
        raise ConfigError(f"'--explore' must be in [0, 1], got {explore}")
    config, state = load_run(run)
    max_steps = max_episode_steps(config.env, 10_000)
    if config.algo == "ppo":
        from marketjax.experiment.replay_ppo import evaluate_ppo

        return evaluate_ppo(run, config, state.params, episodes, max_steps)
    population = state.market.population
    if config.algo == "wide":
        from marketjax.experiment.replay_wide import play_wide, write_wide_replay

        rec = play_wide(config, population, episodes, explore, max_steps)
        return write_wide_replay(run, config, rec, explore)
    rec = play(config, population, episodes, explore, max_steps)
    return write_replay(run, config, rec, explore)
