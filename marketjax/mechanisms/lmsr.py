"""Hanson's logarithmic market scoring rule (LMSR) as an automated market maker.

Hanson (2003, 2007), "Combinatorial information market design" / "Logarithmic market
scoring rules for modular combinatorial information aggregation". A market maker over
K mutually exclusive outcomes holds the outstanding shares ``q f[..., K]`` (a share of
outcome k pays 1 if k happens); it quotes the cost function

    C(q) = b · log Σ_k exp(q_k / b),

prices p = ∇C(q) = softmax(q / b), and sells a bundle ``dq`` for C(q + dq) − C(q).
The liquidity ``b`` sets how far money moves prices; the market maker's worst-case
loss (its subsidy, "the price of information") is b · ln K.

Equivalence with the log scoring rule (the seed's "LMSR = scoring rule"): a trader who
moves the prices from p to p′ and holds the shares until outcome y resolves gains
exactly b · (ln p′_y − ln p_y), whatever the path (:func:`trade_to`, tested).

Every function is pure, batched over leading axes and jittable; ``b`` may be a Python
float or an array broadcastable against ``q[..., 0]``. Costs of trades are computed as
``b · log Σ_k p_k exp(dq_k / b)`` from the log-prices, never as the difference of two
large numbers, so they stay accurate when q / b is in the thousands.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _b(b, q: jax.Array) -> jax.Array:
    """Liquidity as an array broadcastable against ``q[..., 0]``."""
    return jnp.asarray(b, q.dtype)


def _per_outcome(b: jax.Array) -> jax.Array:
    """``b`` with a trailing outcome axis, unless it is a scalar (rank promotion)."""
    return b[..., None] if b.ndim else b


def cost(q: jax.Array, b) -> jax.Array:
    """The LMSR cost function C(q) = b · logsumexp(q / b).

    Args:
      q: f[..., K] outstanding shares of each outcome.
      b: liquidity (> 0), scalar or f[...].

    Returns:
      f[...] the money paid into the market maker to reach ``q`` from nothing
      (up to the constant C(0) = b ln K).
    """
    q = jnp.asarray(q, jnp.result_type(float))
    b = _b(b, q)
    return b * jax.nn.logsumexp(q / _per_outcome(b), axis=-1)


def prices(q: jax.Array, b) -> jax.Array:
    """Instantaneous prices p = softmax(q / b): f[..., K], positive, summing to 1."""
    q = jnp.asarray(q, jnp.result_type(float))
    return jax.nn.softmax(q / _per_outcome(_b(b, q)), axis=-1)


def log_prices(q: jax.Array, b) -> jax.Array:
    """ln p = log_softmax(q / b): f[..., K], accurate for tiny prices."""
    q = jnp.asarray(q, jnp.result_type(float))
    return jax.nn.log_softmax(q / _per_outcome(_b(b, q)), axis=-1)


def trade_cost(q: jax.Array, dq: jax.Array, b) -> jax.Array:
    """What a trader pays to buy ``dq`` (negative entries sell): C(q + dq) − C(q).

    Computed as b · logsumexp(dq / b + ln p(q)), which equals the difference exactly
    (C is translation-equivariant) and never subtracts two large numbers.

    Args:
      q: f[..., K] shares outstanding before the trade.
      dq: f[..., K] shares bought.
      b: liquidity, scalar or f[...].

    Returns:
      f[...] the cost (negative when the trade is a net sale).
    """
    q = jnp.asarray(q, jnp.result_type(float))
    dq = jnp.asarray(dq, q.dtype)
    b = _b(b, q)
    return b * jax.nn.logsumexp(dq / _per_outcome(b) + log_prices(q, b), axis=-1)


def max_loss(b, K: int):
    """The market maker's worst-case loss b · ln K (Hanson 2003): the subsidy.

    Returns a Python float when ``b`` is a Python number, an array otherwise.
    """
    if K < 1:
        raise ValueError(f"K must be a positive number of outcomes, got {K}")
    if isinstance(b, int | float):
        return float(b) * math.log(K)
    return jnp.asarray(b) * jnp.log(jnp.float32(K))


def trade_to(q: jax.Array, target: jax.Array, b) -> jax.Array:
    """The purchase that moves the prices to ``target``, buying only (min dq = 0).

    Moving prices from p to p′ takes dq_k = b (ln p′_k − ln p_k) + c for any c; c is
    chosen so that nothing is sold. For a binary market at 0.5, reaching 0.8 buys
    b · ln 4 shares of outcome 0 at a cost of b · ln 2.5.

    Args:
      q: f[..., K] shares outstanding.
      target: f[..., K] target prices (positive, summing to 1).
      b: liquidity.

    Returns:
      f[..., K] shares to buy.
    """
    q = jnp.asarray(q, jnp.result_type(float))
    b = _b(b, q)
    dq = _per_outcome(b) * (jnp.log(jnp.asarray(target, q.dtype)) - log_prices(q, b))
    return dq - jnp.min(dq, axis=-1, keepdims=True)


def market_maker_loss(q0: jax.Array, q1: jax.Array, outcome: jax.Array, b) -> jax.Array:
    """What the market maker pays out minus what it took in, if ``outcome`` happens.

    Args:
      q0: f[..., K] shares outstanding when the market opened.
      q1: f[..., K] shares outstanding when it closed.
      outcome: i[...] the outcome that happened.
      b: liquidity.

    Returns:
      f[...] (q1 − q0)[outcome] − (C(q1) − C(q0)); at most b · ln K from q0 = 0.
    """
    q0 = jnp.asarray(q0, jnp.result_type(float))
    dq = jnp.asarray(q1, q0.dtype) - q0
    paid_out = jnp.take_along_axis(dq, jnp.asarray(outcome)[..., None], axis=-1)[..., 0]
    return paid_out - trade_cost(q0, dq, b)
