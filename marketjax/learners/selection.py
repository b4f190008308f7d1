"""CAPITALISM's selection as a learner: wealth is the only thing that improves.

After each update the bankrupt leave (their wealth, possibly debts, goes to the
bank) and every empty slot is filled by an entrant endowed with an allowance
(minted, counted in the books): a mutated clone of the richest agent (Baum's Hayek
machine) or a fresh draw from the family (seed 002, Algorithm 1's training loop:
"the parameters of this algorithm are the wealths of each agent"). The rule itself
lives in :func:`marketjax.agents.population.renew`.

Params read: ``allowance``, ``exit_threshold``, ``clone_prob``, ``mutation_scale``.
"""

from __future__ import annotations

import jax.numpy as jnp

from marketjax.agents.families import AgentFamily
from marketjax.agents.population import PopulationParams, renew
from marketjax.learners.base import Learner, LearnerOutput


def selection(family: AgentFamily, *, min_age: int) -> Learner:
    """Builds the selection learner for one agent family.

    Args:
      family: the agents' family (``init`` for fresh draws, ``mutate`` for clones).
      min_age: updates an entrant survives before it can go bankrupt.
    """

    def init(population):
        return ()

    def update(key, state, population, experience, params):
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
            ),
        )
        metrics = {
            "entries": renewal.num_entries.astype(jnp.float32),
            "exits": renewal.num_exits.astype(jnp.float32),
        }
        return LearnerOutput(
            renewal.population,
            state,
            metrics,
            renewal.replaced,
            renewal.exits_to_bank,
            renewal.allowances,
        )

    def reset(state, replaced, population):
        return state

    return Learner(init, update, reset)
