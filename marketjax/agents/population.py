"""A population of N agent slots and CAPITALISM's entry and exit (Algorithm 1).

Wealth is the parameter the paper's training loop learns: transfers move it, poor
agents lose the power to bid (bids are capped by wealth), bankrupt agents leave, and
new agents enter with an allowance (fresh draws from the family, or mutated clones of
the richest agent, as in Baum's Hayek machine). Every flow is returned to the caller
so that the market's books can count it.

Entry is financed in one of two ways (``ENTRY_FUNDING``): ``mint`` grants the
allowance as new money (counted by the books as an allowance), ``parent`` is
Baum's Hayek rule: the creator (the richest agent, whose mutated clone enters)
pays its children's allowances out of its own wealth (an internal transfer, so
nothing is minted; a parent that cannot afford a full allowance for each child
splits what it has), and then earns ``parent_share`` of each child's profits
(:func:`pay_dividends`). Fresh draws have no parent and are always minted.
``earnings`` is parent funding out of income, not capital: a parent pays a full
allowance for each child it can afford out of its ``budget`` (the selection
learner passes each agent's profit since the last renewal), and every other
entrant is a fresh draw (minted). Under ``parent`` the richest pays for every
clone whatever it earned, about one child per update in the Blocks World economy
(docs/reproductions.md), a drain on the capital its bids are capped by.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from marketjax.agents.families import AgentFamily
from marketjax.core.axes import axes

ENTRY_FUNDING = ("mint", "parent", "earnings")  # who pays an entrant's allowance
# Who a clone is cloned from: the single richest agent, or (Baum's Hayek: any
# agent above a wealth threshold may create) one parent per child drawn uniformly
# among the living agents with wealth >= ``parent_threshold``.
ENTRY_PARENTS = ("richest", "wealthy")


@struct.dataclass
class Population:
    """N agent slots; parameter leaves are stacked on a leading N axis."""

    params: Any = axes("N")  # pytree, every leaf [N, ...]
    wealth: jax.Array = axes("N")  # f32[N]
    alive: jax.Array = axes("N")  # bool[N]
    age: jax.Array = axes("N")  # i32[N], updates survived since entry
    parent: jax.Array = axes("N")  # i32[N], slot cloned from at entry (-1: fresh,
    # or the parent has since left: a newcomer in its slot is not the parent)
    shared: Any = axes(default_factory=dict)  # pytree every agent reads (the trunk
    # family's MLP: ``AgentFamily.init_shared``), {} for other families

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
    parent_share: jax.Array = 0.0  # f32[], share of a child's profit paid to its parent
    parent_threshold: jax.Array = 0.0  # f32[], least wealth of a parent ("wealthy")


class Renewal(NamedTuple):
    """Money moved by one round of exit and entry."""

    population: Population
    replaced: jax.Array  # bool[N], slots that hold a new agent
    allowances: jax.Array  # f32[], total wealth granted to entrants (minted)
    parent_paid: jax.Array  # f32[], allowances parents paid for their clones
    exits_to_bank: jax.Array  # f32[], wealth of leavers handed to the bank
    num_exits: jax.Array  # i32[]
    num_entries: jax.Array  # i32[]


def init_population(
    key: jax.Array, family: AgentFamily, size: int, initial_wealth: float
) -> Population:
    """N fresh agents, all alive, each with ``initial_wealth`` (and, for a family
    with ``init_shared``, the parameters they share).

    Constant-action agents are dealt actions round-robin (slot i acts ``i mod A``),
    so that every action has a seller in the first market.
    """
    params = jax.vmap(family.init)(jax.random.split(key, size))
    shared = {}
    if family.init_shared is not None:
        shared = family.init_shared(jax.random.fold_in(key, size))
    if family.constant_action:
        dealt = jnp.arange(size, dtype=params["action"].dtype) % family.num_actions
        params = {**params, "action": dealt}
    return Population(
        params=params,
        wealth=jnp.full((size,), initial_wealth, jnp.float32),
        alive=jnp.ones((size,), bool),
        age=jnp.zeros((size,), jnp.int32),
        parent=jnp.full((size,), -1, jnp.int32),
        shared=shared,
    )


def pay_dividends(
    pop: Population, baseline: jax.Array, share: jax.Array
) -> tuple[Population, jax.Array]:
    """Hayek's rule: each child pays its parent ``share`` of its profit.

    Args:
      pop: the population (``parent`` i32[N], -1 for none).
      baseline: f32[N] each agent's wealth at the start of the period.
      share: f32[] in [0, 1].

    Returns:
      ``(population, total paid f32[])``; a child pays ``share·max(w − baseline,
      0)`` (nothing on a loss), moved from child to parent, so Σ wealth is
      unchanged.
    """
    n = pop.size
    has_parent = pop.alive & (pop.parent >= 0)
    dividend = jnp.where(
        has_parent, share * jnp.maximum(pop.wealth - baseline, 0.0), 0.0
    )
    to_parent = jax.ops.segment_sum(
        dividend, jnp.where(has_parent, pop.parent, n), num_segments=n + 1
    )[:n]
    return pop.replace(wealth=pop.wealth - dividend + to_parent), jnp.sum(dividend)


def renew(
    key: jax.Array,
    family: AgentFamily,
    pop: Population,
    params: PopulationParams,
    funding: str = "mint",
    parents: str = "richest",
    budget: jax.Array | None = None,
) -> Renewal:
    """Exit of bankrupt agents, then entry into every empty slot.

    Leavers' wealth (possibly negative: debts) goes to the bank. Entrants receive
    ``params.allowance``: newly granted to the economy (``funding="mint"``), or,
    for clones under ``funding="parent"``, paid by the parent (see the module
    docstring). With probability ``clone_prob`` an entrant is a mutated clone of
    the richest surviving agent (``parents="richest"``) or, with
    ``parents="wealthy"``, of a parent drawn uniformly for each child among the
    survivors with wealth >= ``params.parent_threshold`` (the richest if nobody
    qualifies); otherwise a fresh draw from the family. Under parent funding
    each parent pays a full allowance per child of its own if it can, else
    splits its positive wealth among them. Under ``funding="earnings"`` a parent
    funds ``floor(max(budget, 0) / allowance)`` children (its first ones by slot;
    ``budget`` f32[N], each agent's spendable income, capped by its wealth), each
    with a full allowance; its other would-be clones are fresh draws, minted.
    """
    if funding not in ENTRY_FUNDING:
        raise ValueError(f"unknown entry funding {funding!r}; expected {ENTRY_FUNDING}")
    if parents not in ENTRY_PARENTS:
        raise ValueError(f"unknown entry parents {parents!r}; expected {ENTRY_PARENTS}")
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
    if parents == "richest":
        parent_of = jnp.full((n,), richest, jnp.int32)  # i32[N]
    else:
        eligible = alive & (wealth >= params.parent_threshold)  # bool[N]
        eligible = jnp.where(jnp.any(eligible), eligible, jnp.arange(n) == richest)
        parent_of = jax.random.categorical(
            jax.random.fold_in(key, 3), jnp.where(eligible, 0.0, -jnp.inf), shape=(n,)
        ).astype(jnp.int32)
    parent_params = jax.tree.map(lambda leaf: leaf[parent_of], pop.params)
    clones = jax.vmap(family.mutate, in_axes=(0, 0, None))(
        jax.random.split(k_mut, n), parent_params, params.mutation_scale
    )
    fresh = jax.vmap(family.init)(jax.random.split(k_fresh, n))
    use_clone = jax.random.bernoulli(k_clone, params.clone_prob, (n,)) & any_alive
    allowance = jnp.asarray(params.allowance, jnp.float32)
    if funding == "earnings":
        if budget is None:
            raise ValueError("entry funding 'earnings' needs each agent's budget")
        spend = jnp.minimum(jnp.maximum(budget, 0.0), jnp.maximum(wealth, 0.0))
        afford = jnp.floor(spend / jnp.maximum(allowance, 1e-30))  # f32[N]
        wants = empty & use_clone  # bool[N]
        # rank of each would-be clone among its parent's, in slot order
        same = (parent_of[:, None] == parent_of[None, :]) & wants[None, :]
        earlier = jnp.arange(n)[None, :] < jnp.arange(n)[:, None]
        rank = jnp.sum(same & earlier, axis=1).astype(jnp.float32)  # f32[N]
        use_clone = use_clone & (~empty | (rank < afford[parent_of]))

    def pick(old, clone, new):
        shape = (n,) + (1,) * (old.ndim - 1)
        c = use_clone.reshape(shape)
        e = empty.reshape(shape)
        return jnp.where(e, jnp.where(c, clone, new), old)

    new_params = jax.tree.map(pick, pop.params, clones, fresh)
    cloned = empty & use_clone
    grant = jnp.where(empty, allowance, 0.0)  # f32[N]
    if funding in ("parent", "earnings"):
        # Each parent pays a full allowance per child if it can, else splits its
        # positive wealth equally among them.
        children = jax.ops.segment_sum(
            cloned.astype(jnp.float32), parent_of, num_segments=n
        )  # f32[N], children of each slot
        afford = jnp.maximum(wealth, 0.0) / jnp.maximum(children, 1.0)
        each = jnp.minimum(allowance, afford)  # f32[N], per child of each parent
        grant = jnp.where(cloned, each[parent_of], grant)
        paid = each * children  # f32[N]
        parent_paid = jnp.sum(paid)
        wealth = wealth - paid
        minted = jnp.sum(jnp.where(empty & ~use_clone, grant, 0.0))
    else:
        parent_paid = jnp.zeros((), jnp.float32)
        minted = jnp.sum(grant)
    # Children of a slot that was just emptied lose their parent (the newcomer in
    # that slot is someone else).
    orphaned = (pop.parent >= 0) & empty[jnp.maximum(pop.parent, 0)]
    parent = jnp.where(orphaned, -1, pop.parent)
    population = pop.replace(
        params=new_params,
        wealth=jnp.where(empty, grant, wealth),
        alive=jnp.ones((n,), bool),
        age=jnp.where(empty, 0, pop.age + 1),
        parent=jnp.where(empty, jnp.where(use_clone, parent_of, -1), parent),
    )
    num_entries = jnp.sum(empty).astype(jnp.int32)
    return Renewal(
        population=population,
        replaced=empty,
        allowances=minted,
        parent_paid=parent_paid,
        exits_to_bank=exits_to_bank,
        num_exits=jnp.sum(bankrupt).astype(jnp.int32),
        num_entries=num_entries,
    )
