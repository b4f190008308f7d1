"""Learners: optax-style ``(init, update)`` pairs that improve a population.

A learner is to a market what an optax transformation is to a loss: built once by
a factory (``q_lambda(...)``, ``selection(...)``), pure, and composed with
:func:`chain`. Every learner sees the same :class:`Experience` (what one update's
rollout offers, in the market's own terms of payoff streams) and returns a
:class:`LearnerOutput`; the generic market trainer (``algos/market_trainer.py``)
runs the chain after each rollout, hands replaced slots' rights back to the bank
(the market's ``forget``) and records the money the learners moved in the books.

Sweepable numbers (learning rates, allowances, ...) are read from ``params``, a dict
of f32 array leaves, so a sweep over them is a ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from marketjax.agents.population import Population


class Experience(NamedTuple):
    """One update's rollout as learners see it: K payoff streams per episode.

    A deep market has one stream per episode (the right to act, K = 1); a wide
    market has one per good (K = G). Stream k of episode b at step t was held by
    ``owner`` and priced by output ``output`` of that owner's value function.
    """

    obs: jax.Array  # f32[T, B, D], observation the owners valued
    owner: jax.Array  # i32[T, B, K], agent holding stream k (-1: nobody)
    output: jax.Array  # i32[T, B, K], index into the owner's value outputs
    reward: jax.Array  # f32[T, B, K], reward the stream paid its holder
    credit_next: jax.Array  # f32[T, B, K], what the next buyer pays for it
    done: jax.Array  # bool[T, B], the episode ended at step t


class LearnerOutput(NamedTuple):
    """What one learner did in one update."""

    population: Population
    state: Any  # the learner's own state
    metrics: dict  # f32 scalars
    replaced: jax.Array  # bool[N], slots now holding a new agent
    bank_delta: jax.Array  # f32[], money moved to the bank (exits' wealth)
    allowances: jax.Array  # f32[], money minted for entrants


class Learner(NamedTuple):
    """An optax-style learner (see module docstring).

    Attributes:
      init: ``init(population) -> state``.
      update: ``update(key, state, population, experience, params) -> LearnerOutput``.
      reset: ``reset(state, replaced bool[N], population) -> state``: forgets what
        it learned about replaced slots (their new occupants start afresh).
    """

    init: Callable[[Population], Any]
    update: Callable[..., LearnerOutput]
    reset: Callable[[Any, jax.Array, Population], Any]


def no_change(population: Population, state: Any, metrics: dict) -> LearnerOutput:
    """A learner output that replaced nobody and moved no money."""
    zero = jnp.zeros((), jnp.float32)
    replaced = jnp.zeros(population.wealth.shape, bool)
    return LearnerOutput(population, state, metrics, replaced, zero, zero)


def chain(*learners: Learner) -> Learner:
    """Runs learners one after another on the same experience (``optax.chain``).

    Each learner sees the population its predecessor left. When one replaces slots,
    every learner's state forgets them (``reset``); the replaced masks, money moved
    and metrics are combined.
    """

    def init(population):
        return tuple(learner.init(population) for learner in learners)

    def update(key, states, population, experience, params):
        keys = jax.random.split(key, len(learners))
        states = list(states)
        metrics: dict = {}
        replaced = jnp.zeros(population.wealth.shape, bool)
        bank_delta = allowances = jnp.zeros((), jnp.float32)
        for i, learner in enumerate(learners):
            out = learner.update(keys[i], states[i], population, experience, params)
            population, states[i] = out.population, out.state
            states = [
                other.reset(s, out.replaced, population) if j != i else s
                for j, (other, s) in enumerate(zip(learners, states, strict=True))
            ]
            metrics.update(out.metrics)
            replaced = replaced | out.replaced
            bank_delta = bank_delta + out.bank_delta
            allowances = allowances + out.allowances
        return LearnerOutput(
            population, tuple(states), metrics, replaced, bank_delta, allowances
        )

    def reset(states, replaced, population):
        return tuple(
            learner.reset(s, replaced, population)
            for learner, s in zip(learners, states, strict=True)
        )

    return Learner(init, update, reset)


def where_replaced(replaced: jax.Array, new: Any, old: Any) -> Any:
    """Per-slot choice between two pytrees whose leaves lead with N."""

    def pick(n, o):
        return jnp.where(replaced.reshape((-1,) + (1,) * (o.ndim - 1)), n, o)

    return jax.tree.map(pick, new, old)
