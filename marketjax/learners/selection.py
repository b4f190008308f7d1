"""CAPITALISM's selection as a learner: wealth is the only thing that improves.

After each update the bankrupt leave (their wealth, possibly debts, goes to the
bank) and every empty slot is filled by an entrant endowed with an allowance: a
mutated clone of the richest agent (Baum's Hayek machine) or a fresh draw from the
family (seed 002, Algorithm 1's training loop: "the parameters of this algorithm
are the wealths of each agent"). The allowance is minted (counted in the books as
an allowance) or, under ``funding="parent"``, paid by the clone's parent, who then
earns ``parent_share`` of its children's profits each update (Baum's Hayek rule;
the learner's state is every agent's wealth after the last renewal, the baseline
of "profit"). The rules themselves live in :mod:`marketjax.agents.population`.

Params read: ``allowance``, ``exit_threshold``, ``clone_prob``, ``mutation_scale``
and, if present, ``parent_share`` and ``parent_threshold``.
"""

from __future__ import annotations

import jax.numpy as jnp

from marketjax.agents.families import AgentFamily
from marketjax.agents.population import PopulationParams, pay_dividends, renew
from marketjax.learners.base import Learner, LearnerOutput


def selection(
    family: AgentFamily, *, min_age: int, funding: str = "mint", parents="richest"
) -> Learner:
    """Builds the selection learner for one agent family.

    Args:
      family: the agents' family (``init`` for fresh draws, ``mutate`` for clones).
      min_age: updates an entrant survives before it can go bankrupt.
      funding: ``"mint"``, ``"parent"`` or ``"earnings"``
        (``population.ENTRY_FUNDING``).
      parents: ``"richest"`` or ``"wealthy"`` (``population.ENTRY_PARENTS``; the
        latter reads ``parent_threshold`` from the params).
    """

    def init(population):
        return population.wealth  # f32[N], the baseline of profits

    def update(key, baseline, population, experience, params):
        share = jnp.asarray(params.get("parent_share", 0.0), jnp.float32)
        population, dividends = pay_dividends(population, baseline, share)
        renewal = renew(
            key,
            family,
            population,
            PopulationParams(
                allowance=params["allowance"],
                exit_threshold=params["exit_threshold"],
                clone_prob=params["clone_prob"],
                mutation_scale=params["mutation_scale"],
                min_age=jnp.int32(min_age),
                parent_share=share,
                parent_threshold=jnp.asarray(
                    params.get("parent_threshold", 0.0), jnp.float32
                ),
            ),
            funding,
            parents,
            # earnings: a parent funds children out of its profit since the last
            # renewal (dividends received included), never out of its capital
            budget=population.wealth - baseline,
        )
        metrics = {
            "entries": renewal.num_entries.astype(jnp.float32),
            "exits": renewal.num_exits.astype(jnp.float32),
            "dividends": dividends,
            "parent_paid": renewal.parent_paid,
            "minted": renewal.allowances,
        }
        return LearnerOutput(
            renewal.population,
            renewal.population.wealth,
            metrics,
            renewal.replaced,
            renewal.exits_to_bank,
            renewal.allowances,
        )

    def reset(state, replaced, population):
        return jnp.where(replaced, population.wealth, state)

    return Learner(init, update, reset)
