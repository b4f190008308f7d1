"""Unrolled equilibrium iterations: the reference the implicit derivatives are
checked and benchmarked against.

Each function runs a *fixed* number of price updates in a ``lax.scan`` (no
convergence test), so reverse-mode AD can differentiate through every iteration
("unrolled" or "piggyback" differentiation; Gilbert 1992, Griewank & Walther 2008
ch. 15). Its derivative tends to the implicit one as the iterations converge, at a
memory cost proportional to the number of iterations (the scan keeps every
iterate for the backward pass). The library's solvers do not use these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from marketjax.mechanisms import fisher_demand


def fisher(
    budgets: jax.Array,
    utilities: jax.Array,
    supply: jax.Array,
    *,
    kind: str,
    num_iters: int,
    rho: float | jax.Array | None = None,
) -> jax.Array:
    """Prices after ``num_iters`` proportional-response rounds (as ``fisher.py``).

    Args:
        budgets: f[M].
        utilities: f[M, G] non-negative.
        supply: f[G] positive.
        kind: ``"linear"``, ``"cobb_douglas"`` or ``"ces"``.
        num_iters: rounds (static).
        rho: the CES exponent.

    Returns:
        f[G] the prices ``Σ_i b_ij / s_j`` of the last bids.
    """
    valued = utilities > 0  # bool[M, G]
    log_u = jnp.log(jnp.where(valued, utilities, 1.0))  # f[M, G]
    if kind == "cobb_douglas":
        log_u = log_u - jnp.log(jnp.sum(utilities, axis=1, keepdims=True))
        r = 0.0
    else:
        r = 1.0 if kind == "linear" else jnp.asarray(rho, jnp.float32)
    theta = jnp.minimum(1.0, 1.0 / (1.0 - r)) if kind == "ces" else 1.0
    tiny = jnp.finfo(jnp.float32).tiny

    def update(bids, _):
        if kind == "cobb_douglas":
            return budgets[:, None] * jnp.exp(log_u) * valued, None
        p = jnp.sum(bids, axis=0) / supply
        x = bids / jnp.where(p > 0, p, 1.0)[None, :]
        logits = log_u + r * jnp.log(jnp.maximum(x, tiny))
        if kind == "ces":
            log_b = jnp.log(jnp.maximum(bids, tiny))
            logits = theta * logits + (1.0 - theta) * log_b
        return budgets[:, None] * fisher_demand.masked_softmax(logits, valued), None

    count = jnp.sum(valued, axis=1, keepdims=True)
    bids0 = jnp.where(valued, budgets[:, None], 0.0) / jnp.maximum(count, 1).astype(
        budgets.dtype
    )
    bids, _ = jax.lax.scan(update, bids0, None, length=num_iters)
    return jnp.sum(bids, axis=0) / supply


def tatonnement(
    excess_demand: Callable[[jax.Array, Any], jax.Array],
    p0: jax.Array,
    params: Any,
    *,
    step_size: float | jax.Array,
    num_iters: int,
    price_update: str = "additive",
) -> jax.Array:
    """Prices after ``num_iters`` fixed-step tâtonnement updates.

    ``"additive"``: ``p <- max(p + η z(p, θ), 0)``; ``"multiplicative"``:
    ``log p <- log p + η z(p, θ)``.

    Args:
        excess_demand: ``(p f[G], params) -> z f[G]``.
        p0: f[G] starting prices.
        params: the pytree passed to ``excess_demand``.
        step_size: ``η``.
        num_iters: updates (static).
        price_update: ``"additive"`` or ``"multiplicative"``.

    Returns:
        f[G] the last prices.
    """

    def update(p, _):
        z = excess_demand(p, params)
        if price_update == "multiplicative":
            return p * jnp.exp(step_size * z), None
        return jnp.maximum(p + step_size * z, 0.0), None

    p, _ = jax.lax.scan(update, jnp.asarray(p0, jnp.float32), None, length=num_iters)
    return p
