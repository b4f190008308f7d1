"""Buyers' demand in a Fisher market: the optimal bundles at given prices.

Buyer ``i`` maximizes ``u_i(x_i)`` subject to ``p . x_i <= B_i, x_i >= 0``:

* Cobb–Douglas, ``u_i = prod_j x_ij ** a_ij`` with ``sum_j a_ij = 1``: a fixed share of
  the budget per good, ``x_ij = a_ij B_i / p_j``.
* CES, ``u_i = (sum_j U_ij x_ij ** rho) ** (1 / rho)``, elasticity
  ``sigma = 1 / (1 - rho)``: spending shares ``U_ij**sigma p_j**(1 - sigma) /
  sum_k U_ik**sigma p_k**(1 - sigma)``, computed as a softmax in log space.
* linear, ``u_i = sum_j U_ij x_ij``: any bundle spending the whole budget on goods of
  maximum bang per buck ``U_ij / p_j`` (MBB goods); the demand is a set. ``demand``
  returns one selection (equal spending on the MBB goods); ``linear_nearest`` the
  element of the set that keeps the proportions of given bids.

All functions handle one market: budgets f[M], utilities f[M, G], prices f[G].
"""

import jax
import jax.numpy as jnp

# Goods within this relative distance of a buyer's maximum bang per buck count as MBB
# goods: about 32 float32 ulps, so ties that are exact in real arithmetic are ties here.
MBB_RTOL = 4e-6


def masked_softmax(logits: jax.Array, mask: jax.Array) -> jax.Array:
    """Row softmax over the entries where ``mask`` holds; rows without any give 0.

    Args:
        logits: f[M, G].
        mask: bool[M, G].

    Returns:
        f[M, G], each row summing to 1 (or 0 for an all-False row).
    """
    top = jnp.max(jnp.where(mask, logits, -jnp.inf), axis=1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    e = jnp.where(mask, jnp.exp(jnp.where(mask, logits, 0.0) - top), 0.0)
    total = jnp.sum(e, axis=1, keepdims=True)
    return e / jnp.where(total > 0, total, 1.0)


def _per_unit(spending: jax.Array, prices: jax.Array) -> jax.Array:
    """Quantities bought with spending f[M, G] at prices f[G] (infinite if free)."""
    safe = jnp.where(prices > 0, prices, 1.0)[None, :]
    x = spending / safe
    return jnp.where((prices[None, :] > 0) | (spending <= 0), x, jnp.inf)


def mbb_goods(utilities: jax.Array, prices: jax.Array) -> jax.Array:
    """bool[M, G]: the goods of (numerically) maximum bang per buck for each buyer."""
    valued = utilities > 0
    safe = jnp.where(prices > 0, prices, 1.0)[None, :]
    bang = jnp.where(prices[None, :] > 0, utilities / safe, jnp.inf)
    bang = jnp.where(valued, bang, 0.0)
    best = jnp.max(bang, axis=1, keepdims=True)
    return valued & (bang >= best * (1.0 - MBB_RTOL))


def demand(
    budgets: jax.Array,
    utilities: jax.Array,
    prices: jax.Array,
    rho: jax.Array,
    *,
    kind: str,
) -> jax.Array:
    """Optimal bundles f[M, G] at ``prices`` (linear: equal spending on MBB goods).

    Args:
        budgets: f[M].
        utilities: f[M, G], non-negative (Cobb–Douglas exponents are normalized).
        prices: f[G], non-negative.
        rho: f32[] the CES exponent (ignored unless ``kind == "ces"``).
        kind: ``"linear"``, ``"cobb_douglas"`` or ``"ces"``.

    Returns:
        f[M, G] bundles; a valued good at price 0 is demanded infinitely.
    """
    valued = utilities > 0
    if kind == "cobb_douglas":
        total = jnp.sum(utilities, axis=1, keepdims=True)
        shares = utilities / jnp.where(total > 0, total, 1.0)
    elif kind == "ces":
        sigma = 1.0 / (1.0 - rho)
        log_u = jnp.log(jnp.where(valued, utilities, 1.0))
        log_p = jnp.log(jnp.where(prices > 0, prices, 1.0))[None, :]
        logits = sigma * log_u + (1.0 - sigma) * log_p
        shares = masked_softmax(logits, valued)
    else:
        best = mbb_goods(utilities, prices)
        best_f = jnp.where(best, 1.0, 0.0)
        shares = best_f / jnp.maximum(jnp.sum(best_f, axis=1, keepdims=True), 1.0)
    return _per_unit(budgets[:, None] * shares, prices)


def linear_nearest(
    budgets: jax.Array, utilities: jax.Array, prices: jax.Array, bids: jax.Array
) -> jax.Array:
    """The linear buyers' optimal bundle closest in spending proportions to ``bids``.

    Spending on goods that are not MBB at ``prices`` is moved onto the MBB goods in
    proportion to the bids already on them (equally if there are none). At an exact
    proportional-response fixed point nothing moves; elsewhere the result is a genuine
    element of each buyer's demand set, so its excess demand is an honest residual.

    Args:
        budgets: f[M].
        utilities: f[M, G].
        prices: f[G].
        bids: f[M, G] current spending.

    Returns:
        f[M, G] optimal bundles.
    """
    best = mbb_goods(utilities, prices)
    kept = jnp.where(best, bids, 0.0)
    total = jnp.sum(kept, axis=1, keepdims=True)
    count = jnp.maximum(jnp.sum(best, axis=1, keepdims=True), 1).astype(kept.dtype)
    shares = jnp.where(
        total > 0,
        kept / jnp.where(total > 0, total, 1.0),
        jnp.where(best, 1.0, 0.0) / count,
    )
    return _per_unit(budgets[:, None] * shares, prices)
