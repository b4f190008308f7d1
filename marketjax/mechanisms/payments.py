"""The payment rules of the deep market, defined once (DESIGN.md, "Exact payments").

At step t the winner w_t buys the right to act from the previous owner w_{t-1}. Let
b_t be the highest valid bid, s_t the second highest. The three rules (Chang et al.
2020, "Decentralized Reinforcement Learning", whose payoff code these reproduce):

=======================  ============  ======================  =========================
rule                     winner pays   seller is credited      winner's utility
=======================  ============  ======================  =========================
``bucket_brigade``       b_t           b_t (what buyer pays)   r_t + γ b_{t+1} − b_t
``vickrey``              s_t           b_t                     r_t + γ b_{t+1} − s_t
``credit_conserving``    s_t           s_t (what buyer pays)   r_t + γ s_{t+1} − s_t
``env_reward``           0             0                       r_t
=======================  ============  ======================  =========================

``env_reward`` is Chang et al.'s ``env`` baseline: no money changes hands, the
winner keeps the environment's reward (no credit assignment across time).

The seller receives γ times its credit; the bank receives ``paid − γ·credit`` (under
Vickrey this is negative: money is created, and the bank's account counts it). At an
episode's end the last owner sells to nobody and receives 0.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from marketjax.mechanisms.auctions import rank_bids

Rule = Literal["bucket_brigade", "vickrey", "credit_conserving", "env_reward"]
RULES: tuple[str, ...] = (
    "bucket_brigade",
    "vickrey",
    "credit_conserving",
    "env_reward",
)
# Which auction of ``auctions.AUCTIONS`` prices each payment rule (None: the
# winner pays nothing, as in Chang et al.'s ``env`` baseline).
PRICING: dict[str, str | None] = {
    "bucket_brigade": "first_price",
    "vickrey": "second_price",
    "credit_conserving": "second_price",
    "env_reward": None,
}
# Chang et al.'s short names (their ``--auctiontype``) for the rules above.
CHANG_NAMES: dict[str, str] = {
    "ccv": "credit_conserving",
    "v": "vickrey",
    "bb": "bucket_brigade",
    "env": "env_reward",
}


class Payment(NamedTuple):
    """Money moved by one sale of the right to act."""

    paid: jax.Array  # f32[...], debited from the buyer
    credit: jax.Array  # f32[...], the seller's credit (it receives gamma * credit)


def check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown payment rule {rule!r}; expected one of {RULES}")


def payment(
    rule: str, top: jax.Array, second: jax.Array, winner_bid: jax.Array | None = None
) -> Payment:
    """What the buyer pays and what the seller is credited.

    Args:
      rule: one of :data:`RULES`.
      top: f32[...] highest valid bid b_t.
      second: f32[...] second-highest valid bid s_t.
      winner_bid: f32[...] the winner's own (capped) bid; equals ``top`` unless the
        right was allocated by an exploration lottery, in which case nobody pays more
        than their own bid. Defaults to ``top``.
    """
    check_rule(rule)
    own = top if winner_bid is None else winner_bid
    if rule == "bucket_brigade":
        return Payment(own, own)
    if rule == "env_reward":
        zero = jnp.zeros_like(own)
        return Payment(zero, zero)
    paid = jnp.minimum(second, own)
    if rule == "vickrey":
        return Payment(paid, top)
    return Payment(paid, paid)


def seller_share(credit: jax.Array, gamma: jax.Array) -> jax.Array:
    """What the seller receives for a credit: γ·credit (the rest goes to the bank)."""
    return gamma * credit


def winner_utility(
    rule: str,
    reward: jax.Array,
    gamma: jax.Array,
    bids_now: jax.Array,
    bids_next: jax.Array,
    last_step: jax.Array | bool = False,
) -> jax.Array:
    """The winner's one-step utility r_t + γ·credit_{t+1} − paid_t (Chang et al.).

    Args:
      rule: one of :data:`RULES`.
      reward: f32[...] reward r_t collected by the winner of step t.
      gamma: discount γ.
      bids_now: f32[..., N] bids at step t (all valid).
      bids_next: f32[..., N] bids at step t+1.
      last_step: bool[...] whether t is the episode's last step (credit 0).
    """
    now, nxt = rank_bids(bids_now), rank_bids(bids_next)
    paid = payment(rule, now.top, now.second).paid
    credit = payment(rule, nxt.top, nxt.second).credit
    credit = jnp.where(last_step, 0.0, credit)
    return reward + seller_share(credit, gamma) - paid
