"""A population of N agent slots and CAPITALISM's entry and exit (Algorithm 1).

Wealth is the parameter the paper's training loop learns: transfers move it, poor
agents lose the power to bid (bids are capped by wealth), bankrupt agents leave, and
new agents enter with an allowance (fresh draws from the family, or mutated clones of
the richest agent, as in Baum's Hayek machine). Every flow is returned to the caller
so that the market's books can count it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from marketjax.agents.families import AgentFamily
from marketjax.core.axes import axes


@struct.dataclass
class Population:
    """N agent slots; parameter leaves are stacked on a leading N axis."""

    params: Any = axes("N")  # pytree, every leaf [N, ...]
    wealth: jax.Array = axes("N")  # f32[N]
    alive: jax.Array = axes("N")  # bool[N]
    age: jax.Array = axes("N")  # i32[N], updates survived since entry
    parent: jax.Array = axes("N")  # i32[N], slot cloned from at entry (-1: fresh)

    @property
    def size(self) -> int:
        return self.wealth.shape[0]


@struct.dataclass
class PopulationParams:
    """Sweepable numbers of entry and exit (array leaves, so they can be vmapped)."""

    allowance: jax.Array  # f32[], wealth a new agent is endowed with
    exit_threshold: jax.Array  # f32[], agents below this wealth leave
    clone_prob: jax.Array  # f32[], P(new agent is a mutated clone of the richest)
    mutation_scale: jax.Array  # f32[], std of the Gaussian mutation of clones
    min_age: jax.Array  # i32[], agents younger than this cannot go bankrupt


class Renewal(NamedTuple):
    """Money moved by one round of exit and entry."""

    population: Population
    replaced: jax.Array  # bool[N], slots that hold a new agent
    allowances: jax.Array  # f32[], total wealth granted to entrants (minted)
    exits_to_bank: jax.Array  # f32[], wealth of leavers handed to the bank
    num_exits: jax.Array  # i32[]
    num_entries: jax.Array  # i32[]


def init_population(
    key: jax.Array, family: AgentFamily, size: int, initial_wealth: float
) -> Population:
    """N fresh agents, all alive, each with ``initial_wealth``.

    Constant-action agents are dealt actions round-robin (slot i acts ``i mod A``),
    so that every action has a seller in the first market.
    """
    params = jax.vmap(family.init)(jax.random.split(key, size))
    if family.constant_action:
        dealt = jnp.arange(size, dtype=params["action"].dtype) % family.num_actions
        params = {**params, "action": dealt}
    return Population(
        params=params,
        wealth=jnp.full((size,), initial_wealth, jnp.float32),
        alive=jnp.ones((size,), bool),
        age=jnp.zeros((size,), jnp.int32),
        parent=jnp.full((size,), -1, jnp.int32),
    )


def renew(
    key: jax.Array, family: AgentFamily, pop: Population, params: PopulationParams
) -> Renewal:
    """Exit of bankrupt agents, then entry into every empty slot.

    Leavers' wealth (possibly negative: debts) goes to the bank. Entrants receive
    ``params.allowance`` newly granted to the economy. With probability
    ``clone_prob`` an entrant is a mutated clone of the richest surviving agent,
    otherwise a fresh draw from the family.
    """
    k_fresh, k_mut, k_clone = jax.random.split(key, 3)
    n = pop.size
    bankrupt = (
        pop.alive & (pop.wealth < params.exit_threshold) & (pop.age >= params.min_age)
    )
    exits_to_bank = jnp.sum(jnp.where(bankrupt, pop.wealth, 0.0))
    alive = pop.alive & ~bankrupt
    wealth = jnp.where(alive, pop.wealth, 0.0)
    empty = ~alive

    richest = jnp.argmax(jnp.where(alive, wealth, -jnp.inf))
    any_alive = jnp.any(alive)
    parent_params = jax.tree.map(lambda leaf: leaf[richest], pop.params)
    clones = jax.vmap(family.mutate, in_axes=(0, None, None))(
        jax.random.split(k_mut, n), parent_params, params.mutation_scale
    )
    fresh = jax.vmap(family.init)(jax.random.split(k_fresh, n))
    use_clone = jax.random.bernoulli(k_clone, params.clone_prob, (n,)) & any_alive

    def pick(old, clone, new):
        shape = (n,) + (1,) * (old.ndim - 1)
        c = use_clone.reshape(shape)
        e = empty.reshape(shape)
        return jnp.where(e, jnp.where(c, clone, new), old)

    new_params = jax.tree.map(pick, pop.params, clones, fresh)
    allowance = jnp.asarray(params.allowance, jnp.float32)
    population = Population(
        params=new_params,
        wealth=jnp.where(empty, allowance, wealth),
        alive=jnp.ones((n,), bool),
        age=jnp.where(empty, 0, pop.age + 1),
        parent=jnp.where(empty, jnp.where(use_clone, richest, -1), pop.parent),
    )
    num_entries = jnp.sum(empty).astype(jnp.int32)
    return Renewal(
        population=population,
        replaced=empty,
        allowances=allowance * num_entries.astype(jnp.float32),
        exits_to_bank=exits_to_bank,
        num_exits=jnp.sum(bankrupt).astype(jnp.int32),
        num_entries=num_entries,
    )
