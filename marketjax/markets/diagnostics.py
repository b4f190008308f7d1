"""What the money did: the market diagnostics every market run reports.

Reduced to scalars inside jit, once per update (DESIGN.md, "Deep-market runs write
these metrics per chunk"): ``wealth_min``, ``wealth_gini``, ``wealth_top_share``,
``win_top_share``, ``capped_fraction``, ``owner_age``, ``money_in_circulation`` and
``bank`` (``entries`` and ``exits`` come from the selection learner).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from marketjax.markets.ledger import Books


def gini(x: jax.Array) -> jax.Array:
    """Gini coefficient of non-negative holdings f32[N] (0: equal; →1: one holds all).

    Negative entries (debts) count as 0; all-zero holdings give 0.
    """
    x = jnp.sort(jnp.maximum(x, 0.0))
    n = x.shape[0]
    total = jnp.sum(x)
    ranks = jnp.arange(1, n + 1, dtype=x.dtype)
    g = (2.0 * jnp.sum(ranks * x) / (n * jnp.maximum(total, 1e-30))) - (n + 1.0) / n
    return jnp.where(total > 0, g, 0.0)


def wealth_diagnostics(wealth: jax.Array, books: Books) -> dict[str, jax.Array]:
    """How concentrated wealth is, and how much money there is (f32 scalars).

    Args:
      wealth: f32[N] the agents' wealth.
      books: the market's books (the bank's balance).
    """
    positive = jnp.maximum(wealth, 0.0)
    return {
        "wealth_min": jnp.min(wealth),
        "wealth_max": jnp.max(wealth),
        "wealth_mean": jnp.mean(wealth),
        "wealth_gini": gini(wealth),
        "wealth_top_share": jnp.max(positive) / jnp.maximum(jnp.sum(positive), 1e-30),
        "money_in_circulation": jnp.sum(wealth),
        "bank": books.bank.value,
    }


def ownership_diagnostics(
    winner: jax.Array, capped: jax.Array, age: jax.Array, num_agents: int
) -> dict[str, jax.Array]:
    """Who won the auctions of an update.

    Args:
      winner: i32[...] winner of each auction (-1: nobody bid).
      capped: bool[...] the winning bid was cut by the budget.
      age: i32[N] the agents' ages (updates survived since entry).
      num_agents: N.

    Returns:
      ``win_top_share`` (share of auctions won by the most frequent winner),
      ``capped_fraction`` (share of winning bids cut by the budget) and
      ``owner_age`` (mean age of the winners), f32 scalars.
    """
    won = (winner >= 0).reshape(-1)
    slots = jnp.where(won, winner.reshape(-1), num_agents)
    wins = jax.ops.segment_sum(
        won.astype(jnp.float32), slots, num_segments=num_agents + 1
    )[:num_agents]
    num_won = jnp.maximum(jnp.sum(wins), 1.0)
    ages = age[jnp.minimum(slots, num_agents - 1)].astype(jnp.float32)
    return {
        "win_top_share": jnp.max(wins) / num_won,
        "capped_fraction": jnp.sum((capped.reshape(-1) & won).astype(jnp.float32))
        / num_won,
        "owner_age": jnp.sum(jnp.where(won, ages, 0.0)) / num_won,
    }
