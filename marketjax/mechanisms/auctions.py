"""Sealed-bid auctions for the right to act (Algorithm 1's "choose winning agent").

Both rules take bids ``f32[..., N]`` over N agents and an optional validity mask
``bool[..., N]``, batched over any leading axes. The highest valid bid wins; ties go
to the lowest index; if nobody is valid the winner is -1 and the price 0. A
non-finite bid (NaN, +inf or -inf) is not a valid bid: a NaN would win nothing and
name no winner, and an infinite bid would make the winner pay an infinite price
(``second_price([inf, inf])``) or outbid every finite budget; nobody can pay inf.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class AuctionResult(NamedTuple):
    """Outcome of one auction per leading index."""

    winner: jax.Array  # i32[...], -1 if no valid bid
    price: jax.Array  # f32[...], what the winner pays under the rule


class Ranking(NamedTuple):
    """The two highest valid bids of an auction (shared by every rule)."""

    winner: jax.Array  # i32[...], -1 if no valid bid
    top: jax.Array  # f32[...], highest valid bid (0 if none)
    second: jax.Array  # f32[...], second-highest valid bid (0 if fewer than two)


def rank_bids(bids: jax.Array, valid: jax.Array | None = None) -> Ranking:
    """Finds the winner and the two highest valid bids.

    Args:
      bids: f32[..., N] bids.
      valid: bool[..., N] which bids count (default: all); non-finite bids
        (NaN, +inf, -inf) never count.

    Returns:
      A :class:`Ranking`; the winner is the first index holding the maximum, so
      ties go to the lowest index. (Written as max / min-of-iota / max
      reductions rather than ``argmax`` and a gather, which are several times
      slower on CPU.)
    """
    bids = jnp.asarray(bids, jnp.float32)
    if bids.ndim == 0:
        raise ValueError("bids must have shape [..., N], got a scalar")
    if valid is None:
        valid = jnp.isfinite(bids)
    else:
        valid = jnp.asarray(valid)
        if valid.shape != bids.shape:
            raise ValueError(
                f"valid must have the shape of bids {bids.shape}, got {valid.shape}"
            )
        valid = valid.astype(bool) & jnp.isfinite(bids)
    masked = jnp.where(valid, bids, -jnp.inf)
    n = bids.shape[-1]
    index = jax.lax.broadcasted_iota(jnp.int32, bids.shape, bids.ndim - 1)
    top = jnp.max(masked, axis=-1)
    winner = jnp.min(jnp.where(masked == top[..., None], index, n), axis=-1)
    is_winner = index == winner[..., None]
    second = jnp.max(jnp.where(is_winner, -jnp.inf, masked), axis=-1)
    # Masked-out bids are -inf, so "somebody valid" is top > -inf and "a second
    # valid bidder" is second > -inf: no extra counting pass over the bids.
    has_top, has_second = top > -jnp.inf, second > -jnp.inf
    return Ranking(
        winner=jnp.where(has_top, winner, -1).astype(jnp.int32),
        top=jnp.where(has_top, top, 0.0),
        second=jnp.where(has_second, second, 0.0),
    )


def first_price(bids: jax.Array, valid: jax.Array | None = None) -> AuctionResult:
    """First-price auction (Holland's bucket brigade): the winner pays its own bid."""
    r = rank_bids(bids, valid)
    return AuctionResult(r.winner, r.top)


def second_price(bids: jax.Array, valid: jax.Array | None = None) -> AuctionResult:
    """Second-price (Vickrey 1961) auction: the winner pays the second-highest valid
    bid; a lone valid bidder pays 0."""
    r = rank_bids(bids, valid)
    return AuctionResult(r.winner, r.second)


# The one vocabulary of auction rules (name -> clearing function). Payment rules
# (``payments.RULES``) name which of these sets the price: bucket brigade clears
# first-price, Vickrey and credit-conserving Vickrey second-price.
AUCTIONS = {"first_price": first_price, "second_price": second_price}
