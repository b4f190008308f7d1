"""One generic market trainer: a market × a chain of learners × params.

One update = ``rollout_steps`` market steps in each of B episodes (the shared
``markets.rollout``), then the learners' chain on the rollout's
:class:`~marketjax.learners.base.Experience`; slots the learners replaced give
their rights back to the bank (``market.forget``) and the money the learners moved
(exits to the bank, minted allowances) is recorded in the books. The market's
diagnostics (``markets/diagnostics.py``) are reported beside the learners' metrics.

Every number a sweep may change is read from ``params`` (f32 array leaves), never
from the config, so ``train(key, params)`` vmaps over a grid of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from marketjax.core.schema import Trainer
from marketjax.learners.base import Learner
from marketjax.markets.diagnostics import wealth_diagnostics
from marketjax.markets.ledger import books_imbalance
from marketjax.markets.rollout import rollout


@struct.dataclass
class MarketTrainState:
    """Everything one seed's training carries between updates."""

    market: Any  # the market's state (population, episodes, books)
    learner: Any  # the learners' chain state (optimizer states, ...)
    key: jax.Array  # typed PRNG key
    update_index: jax.Array  # i32[]


def market_imbalance(ts: MarketTrainState) -> jax.Array:
    """Relative imbalance of the books of a trained market (0 when they balance)."""
    return books_imbalance(ts.market.books, ts.market.population.wealth)


def make_market_trainer(
    *,
    market: Any,
    learner: Learner,
    init_population: Callable[[jax.Array, dict], Any],
    market_params: Callable[[dict, jax.Array], Any],
    step_metrics: Callable[[Any, Any], dict],
    rollout_steps: int,
    default_params: dict,
) -> Trainer:
    """Builds the trainer of a market.

    Args:
      market: a market (``init / step / forget / experience``).
      learner: a learner or a ``chain`` of learners.
      init_population: ``(key, params) -> Population``.
      market_params: ``(params, update_index) -> the market's *Params``.
      step_metrics: ``(market state, records [T, ...]) -> dict`` of f32 scalars.
      rollout_steps: T, market steps per update.
      default_params: the config's sweepable numbers (``{name: float}``).
    """

    def init(key, params):
        k_pop, k_env, k_state = jax.random.split(key, 3)
        population = init_population(k_pop, params)
        return MarketTrainState(
            market=market.init(k_env, population),
            learner=learner.init(population),
            key=k_state,
            update_index=jnp.zeros((), jnp.int32),
        )

    def update(ts: MarketTrainState, params):
        key, k_roll, k_exp, k_learn = jax.random.split(ts.key, 4)
        mparams = market_params(params, ts.update_index)
        state, records = rollout(market, k_roll, ts.market, mparams, rollout_steps)
        experience = market.experience(k_exp, state, records, mparams)
        out = learner.update(k_learn, ts.learner, state.population, experience, params)
        state = market.forget(state, out.replaced)
        books = state.books.record(bank_delta=out.bank_delta, allowances=out.allowances)
        state = state.replace(population=out.population, books=books)
        metrics = {
            "episode_return_sum": jnp.sum(records.completed_return_sum),
            "episode_count": jnp.sum(records.completed_count),
            "entries": jnp.zeros((), jnp.float32),
            "exits": jnp.zeros((), jnp.float32),
            "dividends": jnp.zeros((), jnp.float32),
            "parent_paid": jnp.zeros((), jnp.float32),
            "minted": jnp.zeros((), jnp.float32),
            **step_metrics(state, records),
            **out.metrics,
            **wealth_diagnostics(state.population.wealth, state.books),
            "books_imbalance": books_imbalance(state.books, state.population.wealth),
        }
        return MarketTrainState(state, out.state, key, ts.update_index + 1), metrics

    num_steps = rollout_steps * market.env.num_envs
    return Trainer(init, update, num_steps, market_imbalance, default_params)
