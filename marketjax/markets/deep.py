"""The deep market (Algorithm 1, Definition 2.1), batched over B episodes.

Each step, in every one of B parallel episodes that share one population's wealth
(the paper's footnote 2): every agent bids on the observation; bids are capped by
wealth and masked by ``alive``; the auction picks the winner, who buys the right to
act from the previous owner (or from the bank at an episode's start), acts, and
collects the reward; the owner pays rent ε. Settlement of all B episodes is one
``segment_sum`` over N+1 accounts (the agents and the bank): O(B + N) work, no Python
loop and no dense [B, N] transfer matrix. The books (``markets/books.py``) count
every flow across the economy's boundary.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from marketjax.agents.families import AgentFamily, population_bids, winner_actions
from marketjax.agents.population import Population
from marketjax.envs.gymnax_adapter import BatchedEnv, EpisodeStats, track_episodes
from marketjax.markets.books import Books, books_imbalance
from marketjax.mechanisms.auctions import rank_bids
from marketjax.mechanisms.payments import check_rule, payment, seller_share

BANK = -1  # owner index of the bank/founder account


@struct.dataclass
class DeepMarketParams:
    """Sweepable numbers of the market (array leaves)."""

    gamma: jax.Array  # f32[], seller's share γ of its credit
    rent: jax.Array  # f32[], ε paid by the owner each step
    explore: jax.Array  # f32[], P(the right goes to a uniformly drawn valid agent)


@struct.dataclass
class DeepMarketState:
    """A population, B episodes and the books."""

    population: Population
    env_state: Any  # gymnax state, leaves [B, ...]
    obs: jax.Array  # f32[B, D], current observation of each episode
    owner: jax.Array  # i32[B], owner of each episode's right (-1: the bank)
    stats: EpisodeStats
    books: Books


class StepRecord(NamedTuple):
    """What one market step did (stacked over steps by ``lax.scan``)."""

    obs: jax.Array  # f32[B, D], observation the agents bid on
    winner: jax.Array  # i32[B], buyer of the right (-1: nobody valid, bank acted)
    paid: jax.Array  # f32[B], price the buyer paid
    credit: jax.Array  # f32[B], the seller's credit for this sale
    top_bid: jax.Array  # f32[B], highest valid (capped) bid
    reward: jax.Array  # f32[B]
    done: jax.Array  # bool[B], the episode ended at this step
    completed_return_sum: jax.Array  # f32[], returns of episodes ended this step
    completed_count: jax.Array  # f32[]


class DeepMarket:
    """Algorithm 1 on an environment, for a fixed agent family and auction rule.

    Shapes are fixed here (N agents via the population, B episodes via the env);
    the numbers you might sweep are in :class:`DeepMarketParams`.
    """

    def __init__(self, env: BatchedEnv, family: AgentFamily, rule: str):
        check_rule(rule)
        if not env.spec.discrete:
            raise ValueError(
                f"the deep market needs discrete actions; {env.name} "
                "has a Box action space"
            )
        self.env = env
        self.family = family
        self.rule = rule

    def init(self, key: jax.Array, population: Population) -> DeepMarketState:
        obs, env_state = self.env.reset(key)
        b = self.env.num_envs
        return DeepMarketState(
            population=population,
            env_state=env_state,
            obs=obs,
            owner=jnp.full((b,), BANK, jnp.int32),
            stats=EpisodeStats.zeros(b),
            books=Books.open(population.wealth),
        )

    def capped_bids(self, population: Population, obs: jax.Array):
        """Bids f32[B, N] capped by wealth, and validity bool[B, N].

        Bids may be negative (a right whose value is negative, e.g. in Catch, is
        sold at a negative price); agents without positive wealth cannot bid.
        """
        raw = population_bids(self.family, population.params, obs)
        capped = jnp.minimum(raw, jnp.maximum(population.wealth, 0.0)[None, :])
        valid = (population.alive & (population.wealth > 0.0))[None, :]
        return capped, jnp.broadcast_to(valid, capped.shape)

    def auction(
        self, key: jax.Array, population: Population, obs: jax.Array, explore: jax.Array
    ):
        """Runs the auctions of all B episodes (with an exploration lottery).

        With probability ``explore`` an episode's right goes to a uniformly drawn
        valid agent (validity is per agent, shared by all episodes), who pays no
        more than its own bid. One uniform draw per episode decides the coin and
        one picks the agent (a few wide draws are much cheaper than a categorical
        over N on CPU, where threefry runs as a rolled loop).

        Returns ``(winner i32[B], top f32[B], Payment)``.
        """
        capped, valid = self.capped_bids(population, obs)
        ranking = rank_bids(capped, valid)
        ok = population.alive & (population.wealth > 0.0)  # bool[N]
        count = jnp.sum(ok.astype(jnp.int32))
        valid_slots = jnp.argsort(~ok, stable=True).astype(jnp.int32)  # valid first
        u = jax.random.uniform(key, (2, *ranking.winner.shape))
        pick = jnp.minimum((u[1] * count).astype(jnp.int32), jnp.maximum(count - 1, 0))
        lottery = valid_slots[pick]
        coin = u[0] < explore
        use_lottery = coin & (ranking.winner >= 0)
        winner = jnp.where(use_lottery, lottery, ranking.winner)
        lottery_bid = jnp.take_along_axis(capped, lottery[:, None], axis=-1)[:, 0]
        own = jnp.where(use_lottery, lottery_bid, ranking.top)
        pay = payment(self.rule, ranking.top, ranking.second, own)
        nobody = winner < 0
        pay = pay._replace(
            paid=jnp.where(nobody, 0.0, pay.paid),
            credit=jnp.where(nobody, 0.0, pay.credit),
        )
        return winner, ranking.top, pay

    def step(
        self, key: jax.Array, state: DeepMarketState, params: DeepMarketParams
    ) -> tuple[DeepMarketState, StepRecord]:
        """One step of every episode: bid, auction, act, env step, settle."""
        k_auction, k_act, k_random, k_env = jax.random.split(key, 4)
        pop = state.population
        n = pop.size
        winner, top, pay = self.auction(k_auction, pop, state.obs, params.explore)
        action = winner_actions(k_act, self.family, pop.params, winner, state.obs)
        num_actions = self.env.spec.num_actions

        def draw_random_action():
            u = jax.random.uniform(k_random, winner.shape)
            return jnp.minimum((u * num_actions).astype(jnp.int32), num_actions - 1)

        # The bank acts (uniformly at random) only where nobody could bid: skip
        # the draw when no episode needs it.
        random_action = jax.lax.cond(
            jnp.any(winner < 0), draw_random_action, lambda: jnp.zeros_like(winner)
        )
        action = jnp.where(winner >= 0, action, random_action)
        obs, env_state, reward, done, _ = self.env.step(k_env, state.env_state, action)

        # Settlement: account n is the bank. Buyer pays, seller gets γ·credit, the
        # bank keeps paid − γ·credit, the owner collects the reward and pays rent.
        to_seller = seller_share(pay.credit, params.gamma)
        rent = jnp.where(winner >= 0, params.rent, 0.0)
        buyer = jnp.where(winner >= 0, winner, n)
        seller = jnp.where(state.owner >= 0, state.owner, n)
        accounts = jnp.concatenate([buyer, seller, jnp.full_like(buyer, n)])
        amounts = jnp.concatenate(
            [reward - rent - pay.paid, to_seller, pay.paid - to_seller]
        )
        delta = jax.ops.segment_sum(amounts, accounts, num_segments=n + 1)
        books = state.books.record(
            bank_delta=delta[n], rewards=jnp.sum(reward), rent=jnp.sum(rent)
        )
        population = pop.replace(wealth=pop.wealth + delta[:n])
        stats, ret_sum, ret_count = track_episodes(state.stats, reward, done)
        # At an episode's end the last owner sells to nobody: the bank owns the
        # right of the fresh episode and sells it at the next step.
        owner = jnp.where(done, BANK, winner)
        new_state = DeepMarketState(population, env_state, obs, owner, stats, books)
        record = StepRecord(
            state.obs,
            winner,
            pay.paid,
            pay.credit,
            top,
            reward,
            done,
            ret_sum,
            ret_count,
        )
        return new_state, record

    def rollout(
        self,
        key: jax.Array,
        state: DeepMarketState,
        params: DeepMarketParams,
        num_steps: int,
    ) -> tuple[DeepMarketState, StepRecord]:
        """``num_steps`` market steps with ``lax.scan``; records stacked [T, ...]."""

        def body(s, k):
            return self.step(k, s, params)

        return jax.lax.scan(body, state, jax.random.split(key, num_steps))

    def forget_owners(self, state: DeepMarketState, replaced: jax.Array):
        """Hands rights held by replaced slots (bool[N]) back to the bank, so a
        newcomer is never credited for its predecessor's sale."""
        held = state.owner >= 0
        gone = held & replaced[jnp.maximum(state.owner, 0)]
        return state.replace(owner=jnp.where(gone, BANK, state.owner))


def market_books_imbalance(state: DeepMarketState) -> jax.Array:
    """Relative imbalance of a deep market's books (0 when they balance)."""
    return books_imbalance(state.books, state.population.wealth)
