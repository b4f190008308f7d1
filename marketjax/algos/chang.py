"""Chang et al. (2020)'s cloned Vickrey society (``algo: chang``).

"Decentralized Reinforcement Learning: Global Decision-Making via Local Economic
Transactions" (Chang, Kaushik, Weinberg, Griffiths, Levine; ICML 2020). One update
is one of their epochs: ``rollout_steps`` auctions in each of ``num_envs`` episodes
(``markets/society.py``; their 4096 auction steps per epoch), then every primitive
takes one PPO pass over its clones' one-step utilities (``learners/utility_ppo.py``).

Besides returns, the trainer tallies, per state s (the one-hot observation of a
tabular world) and primitive a, the sum and count of its clones' bids and of its
winning bids. The tallies restart at every chunk, so at the end of a run they
cover the last chunk: :func:`chang_report` turns them into ``mean_bids`` f[S][A]
and compares them with Q* (``envs/tabular.py``).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from marketjax.agents import beta_bidder
from marketjax.agents.population import Population
from marketjax.core.config import ConfigError, field
from marketjax.core.schema import (
    TrainConfig,
    Trainer,
    planned_updates,
    sweepable_params,
)
from marketjax.envs.gymnax_adapter import BatchedEnv, make_gymnax
from marketjax.envs.tabular import TabularEnv, greedy_path, q_star
from marketjax.learners.utility_ppo import utility_ppo
from marketjax.markets.diagnostics import ownership_diagnostics, wealth_diagnostics
from marketjax.markets.ledger import books_imbalance
from marketjax.markets.rollout import rollout
from marketjax.markets.society import Society, SocietyParams
from marketjax.mechanisms.payments import CHANG_NAMES


@dataclasses.dataclass(frozen=True)
class ChangConfig:
    """The ``chang:`` section (defaults: their PPO and society settings)."""

    auction: Literal[tuple(CHANG_NAMES)] = field(
        "ccv", doc="ccv | v | bb | env (payments.CHANG_NAMES)"
    )
    clones: int = field(2, lo=1, hi=64, doc="K clones per primitive (redundancy)")
    hidden: int = field(16, lo=1, hi=4096, doc="width of the policy and critic layer")
    rollout_steps: int = field(
        16, lo=1, hi=100_000, doc="auctions per episode per update"
    )
    minibatch_size: int = field(256, lo=1, doc="samples per PPO gradient step")
    gamma: float = field(0.99, lo=0.0, hi=1.0, doc="discount γ, the sellers' share")
    initial_wealth: float = field(0.0, lo=-1e30, hi=1e30, doc="each primitive's wealth")
    clip_eps: float = field(0.2, lo=0.0, hi=10.0, doc="PPO ratio clip")
    entropy_coef: float = field(0.1, lo=0.0, hi=100.0, doc="entropy bonus")
    policy_lr: float = field(4e-5, lo=0.0, lo_open=True, hi=10.0, doc="Adam, policy")
    critic_lr: float = field(5e-3, lo=0.0, lo_open=True, hi=10.0, doc="Adam, critic")
    critic_l2: float = field(1e-3, lo=0.0, hi=100.0, doc="L2 on the critic's weights")
    max_grad_norm: float = field(
        40.0, lo=0.0, lo_open=True, hi=1e30, doc="gradient clipping (global norm)"
    )

    def validate(self, config: TrainConfig) -> None:
        env, _ = make_gymnax(config.env)
        if not isinstance(env, TabularEnv):
            raise ConfigError(
                f"'env': the chang society runs on tabular worlds (ChangBandit, "
                f"ChangChain, ChangDuality), got {config.env}"
            )
        samples = self.rollout_steps * config.num_envs * self.clones
        if samples % self.minibatch_size:
            raise ConfigError(
                f"'chang.minibatch_size' ({self.minibatch_size}) must divide "
                f"rollout_steps * num_envs * clones ({samples})"
            )


CONFIG_CLASS = ChangConfig


@struct.dataclass
class Tallies:
    """Bids per (state, primitive) since the chunk began."""

    bid_sum: jax.Array  # f32[S, N], sum of the clones' bids
    bid_count: jax.Array  # f32[S, N], number of those bids
    win_sum: jax.Array  # f32[S, N], sum of the primitive's winning bids
    win_count: jax.Array  # f32[S, N], auctions it won

    @classmethod
    def zeros(cls, s: int, n: int) -> Tallies:
        z = jnp.zeros((s, n), jnp.float32)
        return cls(z, z, z, z)

    def add(self, obs, bids, primitive, top, clones: int) -> Tallies:
        """Adds one rollout: obs f32[T, B, S], bids f32[T, B, K·N], primitive and
        top [T, B]."""
        n = self.bid_sum.shape[1]
        by_prim = bids.reshape(*bids.shape[:2], clones, n).sum(axis=2)  # [T, B, N]
        visits = obs.sum(axis=(0, 1))  # [S]
        won = jax.nn.one_hot(primitive, n, dtype=jnp.float32)  # [T, B, N]
        return Tallies(
            self.bid_sum + jnp.einsum("tbs,tbn->sn", obs, by_prim),
            self.bid_count + clones * visits[:, None],
            self.win_sum + jnp.einsum("tbs,tbn->sn", obs, won * top[..., None]),
            self.win_count + jnp.einsum("tbs,tbn->sn", obs, won),
        )


@struct.dataclass
class ChangState:
    market: object  # SocietyState
    learner: object  # utility_ppo's optimizer states
    tallies: Tallies
    key: jax.Array
    update_index: jax.Array  # i32[]


def make_trainer(config: TrainConfig) -> Trainer:
    """The society's trainer for one seed (see module docstring)."""
    cc: ChangConfig = config.algo_config
    env = BatchedEnv(config.env, config.num_envs, reset=config.env_reset)
    society = Society(env, CHANG_NAMES[cc.auction], cc.clones)
    n, s = society.num_primitives, env.spec.obs_dim
    learner = utility_ppo(n, cc.minibatch_size)
    steps_per_update = cc.rollout_steps * config.num_envs
    per_chunk, _ = planned_updates(config, steps_per_update)

    def init(key, params):
        k_pop, k_mkt, k_state = jax.random.split(key, 3)
        prims = jax.vmap(lambda k: beta_bidder.init_primitive(k, s, cc.hidden))(
            jax.random.split(k_pop, n)
        )
        pop = Population(
            params=prims,
            wealth=jnp.full((n,), params["initial_wealth"], jnp.float32),
            alive=jnp.ones((n,), bool),
            age=jnp.zeros((n,), jnp.int32),
            parent=jnp.full((n,), -1, jnp.int32),
        )
        return ChangState(
            society.init(k_mkt, pop),
            learner.init(pop),
            Tallies.zeros(s, n),
            k_state,
            jnp.zeros((), jnp.int32),
        )

    def update(ts: ChangState, params):
        key, k_roll, k_learn = jax.random.split(ts.key, 3)
        mp = SocietyParams(params["gamma"])
        state, rec = rollout(society, k_roll, ts.market, mp, cc.rollout_steps)
        out = learner.update(
            k_learn,
            ts.learner,
            state.population,
            society.experience(None, state, rec, mp),
            params,
        )
        state = state.replace(population=out.population)
        fresh = (ts.update_index % per_chunk) == 0
        tallies = jax.tree.map(lambda x: jnp.where(fresh, 0.0, x), ts.tallies)
        tallies = tallies.add(rec.obs, rec.bids, rec.primitive, rec.top, cc.clones)
        bank_take = rec.paid - params["gamma"] * rec.credit
        zero = jnp.zeros((), jnp.float32)
        metrics = {
            "episode_return_sum": jnp.sum(rec.completed_return_sum),
            "episode_count": jnp.sum(rec.completed_count),
            "entries": zero,
            "exits": zero,
            "mean_price": jnp.mean(rec.paid),
            "mean_top_bid": jnp.mean(rec.top),
            "mean_utility": jnp.mean(rec.utility),
            # >0: agents' money flows to the bank (discounting, first price);
            # <0: the bank pays out more than buyers pay in (Vickrey creates money).
            "bank_take_per_step": jnp.mean(bank_take),
            "credit_minus_paid": jnp.mean(rec.credit - rec.paid),
            **ownership_diagnostics(
                rec.primitive, jnp.zeros_like(rec.done), state.population.age, n
            ),
            **out.metrics,
            **wealth_diagnostics(state.population.wealth, state.books),
            "books_imbalance": books_imbalance(state.books, state.population.wealth),
        }
        new = ChangState(state, out.state, tallies, key, ts.update_index + 1)
        return new, metrics

    def imbalance(ts: ChangState):
        return books_imbalance(ts.market.books, ts.market.population.wealth)

    return Trainer(init, update, steps_per_update, imbalance, sweepable_params(cc))


def _median_table(x: np.ndarray) -> list:
    """Median over seeds of f[R, S, N] (NaN where no seed visited) as nested lists
    with ``None`` for NaN (JSON)."""
    with warnings.catch_warnings():  # all-NaN cells: never visited by any seed
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(x, axis=0)
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in med]


def chang_report(state: ChangState, config: TrainConfig) -> dict:
    """The learned bids against Q* for ``summary.json`` (one point's seeds).

    Args:
      state: the final training state, leaves with a leading seed axis [R, ...].
      config: the run's (point's) config.

    Returns:
      ``mean_bids`` f[S][A] (median over seeds of the mean bid of primitive a's
      clones in state s over the last chunk; null where s was never visited),
      ``mean_winning_bids`` f[S][A] (the same over the auctions a won),
      ``win_share`` f[S][A] (share of the auctions in s won by a), ``q_star`` f[S][A],
      ``optimal_pairs`` (the (s, a) the optimal policy visits), ``bid_rel_error``
      (max over those pairs of |mean bid − Q*| / |Q*|), ``winning_bid_rel_error``
      and ``greedy_matches_optimal`` (in every visited state the most frequent
      winner is the optimal action, for the median over seeds of ``win_share``).
    """
    cc: ChangConfig = config.algo_config
    env, _ = make_gymnax(config.env)
    t = jax.device_get(state.tallies)
    with np.errstate(all="ignore"):
        bids = np.asarray(t.bid_sum) / np.asarray(t.bid_count)
        wins = np.asarray(t.win_sum) / np.asarray(t.win_count)
        share = np.asarray(t.win_count) / np.asarray(t.win_count).sum(-1, keepdims=True)
    q = q_star(env, cc.gamma)
    pairs = greedy_path(env, q, env.max_steps)
    mean_bids, win_bids = _median_table(bids), _median_table(wins)
    win_share = _median_table(share)

    def rel(table, among=pairs):
        errs = [
            abs(table[s][a] - q[s, a]) / abs(q[s, a])
            if table[s][a] is not None
            else np.inf
            for s, a in among
        ]
        return float(max(errs))

    all_actions = [
        (s, a) for s in sorted({s for s, _ in pairs}) for a in range(q.shape[1])
    ]
    matches = all(
        win_share[s][a] is not None
        and win_share[s][a] == max(v for v in win_share[s] if v is not None)
        for s, a in pairs
    )
    return {
        "auction": cc.auction,
        "mean_bids": mean_bids,
        "mean_winning_bids": win_bids,
        "win_share": win_share,
        "q_star": q.tolist(),
        "optimal_pairs": [list(p) for p in pairs],
        "bid_rel_error": rel(mean_bids),
        "winning_bid_rel_error": rel(win_bids),
        # every primitive's bid in the states the optimal policy visits
        "bid_rel_error_all_actions": rel(mean_bids, all_actions),
        "greedy_matches_optimal": bool(matches),
        "mean_bids_per_seed": [_median_table(b[None]) for b in bids],
    }


def summarize(final_state: ChangState, config: TrainConfig) -> dict:
    """The hook for ``summary.json``: :func:`chang_report` (leading seed axis)."""
    return chang_report(final_state, config)


def report(final_state: ChangState, config: TrainConfig, out_dir) -> dict:
    """The runner's hook: :func:`summarize` into summary.json and ``bids.png``."""
    from pathlib import Path

    extra = summarize(final_state, config)
    plot_bids(extra, Path(out_dir) / "bids.png", title=config.name)
    return extra


def plot_bids(report: dict, path, title: str = "") -> None:
    """``bids.png``: each primitive's mean bid per state (bars) against Q* (marks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q = np.asarray(report["q_star"])
    bids = np.array(
        [[np.nan if v is None else v for v in r] for r in report["mean_bids"]]
    )
    states, actions = q.shape
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 + 1.1 * states), 3.4))
    width = 0.8 / actions
    for a in range(actions):
        x = np.arange(states) + (a - (actions - 1) / 2) * width
        ax.bar(x, bids[:, a], width, label=f"primitive {a}")
        ax.scatter(x, np.clip(q[:, a], -0.1, 1.1), marker="_", s=300, color="k")
    for s, a in report["optimal_pairs"]:
        ax.annotate("*", (s + (a - (actions - 1) / 2) * width, 1.02), ha="center")
    ax.set_ylim(-0.1, 1.15)
    ax.set_xticks(range(states))
    ax.set_xlabel("state")
    ax.set_ylabel("mean bid (bars) vs Q* (black, clipped to the bid range)")
    ax.set_title(
        title or f"{report['auction']}: bid rel. error {report['bid_rel_error']:.3f}"
    )
    ax.legend(fontsize=7, ncol=actions)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
