"""Chang et al. (2020)'s cloned Vickrey society as a market on B parallel episodes.

"Decentralized Reinforcement Learning: Global Decision-Making via Local Economic
Transactions" (ICML 2020, §4–5; code mbchang/decentralized-rl): N primitives, each
owning one action of a discrete environment, with K clones that share the
primitive's bid policy and bid independently. Every step is one auction over the
K·N clones' bids in (0, 1) (``agents/beta_bidder.py``): the winner is the highest
bid (ties to the lowest index), its primitive's action is taken, and the rule of
``mechanisms/payments.py`` prices the sale of the right to act (``ccv``: pay the
second-highest bid s_t; ``v``: pay s_t, the seller is credited the top bid; ``bb``:
pay your own bid; ``env``: nobody pays).

Settlement (the ledger's ``transfer``, account N the bank) at step t of an episode:
the buyer w_t pays ``paid_t`` and collects r_t; the previous owner w_{t−1} (the bank
at an episode's first step) receives γ·credit_t; the bank keeps paid_t − γ·credit_t.
So each winner's money over the episode equals the sum of its utilities
r_t + γ·credit_{t+1} − paid_t (``payments.winner_utility``, credit 0 after the last
step), and the books count the rewards paid in.

Each step draws the bids for the NEXT observation (carried in the state), so the
utility of step t, which needs the bids of step t + 1, is known within the step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from marketjax.agents import beta_bidder
from marketjax.agents.population import Population
from marketjax.envs.gymnax_adapter import BatchedEnv, EpisodeStats, track_episodes
from marketjax.learners.utility_ppo import BidExperience
from marketjax.markets.ledger import Books, transfer
from marketjax.mechanisms.auctions import rank_bids
from marketjax.mechanisms.payments import check_rule, payment, winner_utility

BANK = -1


@struct.dataclass
class SocietyState:
    """B episodes of one society, sharing the primitives' wealth."""

    population: Population  # N primitives; params leaves [N, ...], wealth f32[N]
    env_state: Any  # the batched environment's state, leaves [B, ...]
    obs: jax.Array  # f32[B, D], observation of the coming auction
    bids: jax.Array  # f32[B, C], the clones' bids on ``obs`` (C = K·N)
    owner: jax.Array  # i32[B], primitive holding the right (-1: the bank)
    stats: EpisodeStats  # running returns, leaves [B]
    books: Books


@struct.dataclass
class SocietyParams:
    gamma: jax.Array  # f32[], the discount and the sellers' share


class SocietyRecord(NamedTuple):
    """One step of every episode (stacked [T, B, ...] by the rollout)."""

    obs: jax.Array  # f32[B, D]
    bids: jax.Array  # f32[B, C]
    winner: jax.Array  # i32[B], winning clone
    primitive: jax.Array  # i32[B], its primitive (= the action taken)
    top: jax.Array  # f32[B], winning bid
    paid: jax.Array  # f32[B], what the winner paid
    credit: jax.Array  # f32[B], what the seller was credited (before γ)
    utility: jax.Array  # f32[B], the winner's utility
    reward: jax.Array  # f32[B]
    done: jax.Array  # bool[B]
    completed_return_sum: jax.Array  # f32[], returns of episodes ending here
    completed_count: jax.Array  # f32[]


class Society:
    """The cloned Vickrey society on ``env`` (see module docstring).

    Args:
      env: B batched episodes of a discrete environment; primitive i takes action i.
      rule: a payment rule of ``mechanisms/payments.py``.
      clones: K, clones per primitive.
    """

    def __init__(self, env: BatchedEnv, rule: str, clones: int):
        check_rule(rule)
        self.env = env
        self.rule = rule
        self.clones = clones
        self.num_primitives = env.spec.num_actions

    def init(self, key: jax.Array, population: Population) -> SocietyState:
        k_env, k_bid = jax.random.split(key)
        obs, env_state = self.env.reset(k_env)
        bids = beta_bidder.society_bids(
            k_bid, population.params["policy"], obs, self.clones
        )
        return SocietyState(
            population=population,
            env_state=env_state,
            obs=obs,
            bids=bids,
            owner=jnp.full((self.env.num_envs,), BANK, jnp.int32),
            stats=EpisodeStats.zeros(self.env.num_envs),
            books=Books.open(population.wealth),
        )

    def step(
        self, key: jax.Array, state: SocietyState, params: SocietyParams
    ) -> tuple[SocietyState, SocietyRecord]:
        """One auction, action and settlement in every episode."""
        k_env, k_bid = jax.random.split(key)
        n, pop = self.num_primitives, state.population
        ranking = rank_bids(state.bids)
        primitive = ranking.winner % n
        obs, env_state, reward, done, _ = self.env.step(
            k_env, state.env_state, primitive
        )
        bids_next = beta_bidder.society_bids(
            k_bid, pop.params["policy"], obs, self.clones
        )
        pay = payment(self.rule, ranking.top, ranking.second)
        utility = winner_utility(
            self.rule, reward, params.gamma, state.bids, bids_next, done
        )
        to_seller = params.gamma * pay.credit
        seller = jnp.where(state.owner >= 0, state.owner, n)
        accounts = jnp.concatenate([primitive, seller, jnp.full_like(primitive, n)])
        amounts = jnp.concatenate([reward - pay.paid, to_seller, pay.paid - to_seller])
        delta = transfer(accounts, amounts, n)
        books = state.books.record(bank_delta=delta[n], rewards=jnp.sum(reward))
        stats, ret_sum, ret_count = track_episodes(state.stats, reward, done)
        new = SocietyState(
            population=pop.replace(wealth=pop.wealth + delta[:n]),
            env_state=env_state,
            obs=obs,
            bids=bids_next,
            owner=jnp.where(done, BANK, primitive),
            stats=stats,
            books=books,
        )
        record = SocietyRecord(
            state.obs,
            state.bids,
            ranking.winner,
            primitive,
            ranking.top,
            pay.paid,
            pay.credit,
            utility,
            reward,
            done,
            ret_sum,
            ret_count,
        )
        return new, record

    def forget(self, state: SocietyState, replaced: jax.Array) -> SocietyState:
        """Primitives are never replaced: nothing to forget."""
        del replaced
        return state

    def experience(
        self, key: jax.Array, state: SocietyState, rec: SocietyRecord, params
    ) -> BidExperience:
        """Every clone's bid and utility (the winner's utility, 0 for the others)."""
        del key, state, params
        won = jax.nn.one_hot(rec.winner, rec.bids.shape[-1], dtype=jnp.float32)
        return BidExperience(rec.obs, rec.bids, won * rec.utility[..., None])
