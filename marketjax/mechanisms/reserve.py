"""A market rule learned through the market: the seller's reserve price.

"Complete feedback" (seed paper): any aspect of a market, its rules included, can be
improved by whoever profits from improving it. Here the seller of a quasilinear
market (Def. 2.2, ``equilibrium.quasilinear``) chooses a reserve price ``r`` and
tunes it by ``jax.grad`` of its expected revenue *through the equilibrium*
(implicit differentiation, ``implicit_quasilinear``), and the same ``r`` is found by
a grid search.

One market: buyers ``i = 1..M`` value good ``j`` at ``a_ij x - b_ij x² / 2``; the
seller holds supply ``s_j`` and keeps what does not sell above its reserve, modelled
as an extra agent valuing its own goods at ``r x - x² / (2 κ)`` (a reserve that bites
within ``κ r`` units; ``κ → ∞`` is a hard reserve). Revenue is
``Σ_j p_j (s_j - x_seller,j)``: the price times the units buyers take. Raising ``r``
raises prices and sells less (Myerson 1981's trade-off in a Walrasian market).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from marketjax.mechanisms import equilibrium


@struct.dataclass
class Markets:
    """A batch of separable quasilinear markets (K markets, M buyers, G goods)."""

    a: jax.Array  # f32[K, M, G] buyers' marginal value at zero
    b: jax.Array  # f32[K, M, G] buyers' curvature (> 0)
    supply: jax.Array  # f32[K, G]


def random_markets(
    key: jax.Array,
    num_markets: int,
    buyers: int,
    goods: int,
    supply_range: tuple[float, float] = (4.0, 8.0),
) -> Markets:
    """``a ~ U(1, 5)``, ``b ~ U(0.5, 2)``, ``s ~ U(supply_range)`` (thin markets by
    default: at price 0 two buyers take ~5 units, so a reserve pays)."""
    ka, kb, ks = jax.random.split(key, 3)
    lo, hi = supply_range
    shape = (num_markets, buyers, goods)
    return Markets(
        a=jax.random.uniform(ka, shape, minval=1.0, maxval=5.0),
        b=jax.random.uniform(kb, shape, minval=0.5, maxval=2.0),
        supply=jax.random.uniform(ks, (num_markets, goods), minval=lo, maxval=hi),
    )


def separable_value(params, bundle):
    """``v(x) = Σ_j a_j x_j - b_j x_j² / 2``."""
    return jnp.sum(params["a"] * bundle - 0.5 * params["b"] * bundle**2)


def separable_demand(params, prices, budget):
    """``argmax_{x >= 0} v(x) - p . x = max((a - p) / b, 0)``."""
    del budget
    return jnp.maximum((params["a"] - prices) / params["b"], 0.0)


def market_revenue(
    reserve: jax.Array,
    a: jax.Array,
    b: jax.Array,
    supply: jax.Array,
    *,
    kappa: float = 1.0,
) -> jax.Array:
    """Equilibrium revenue of one market at reserve price ``reserve``.

    Args:
        reserve: f32[] the reserve price ``r``.
        a: f32[M, G] buyers' marginal values at zero.
        b: f32[M, G] buyers' curvatures.
        supply: f32[G].
        kappa: the reserve's softness: the seller keeps
            ``x_seller = max(κ (r - p), 0)`` units of each good.

    Returns:
        f32[] ``p . (s - x_seller)``; NaN if the equilibrium did not converge. Its
        implicit gradient is NaN there too, and at a kink (a buyer exactly at the
        margin of buying, a good exactly at the margin of being free).
    """
    r = jnp.asarray(reserve, jnp.float32)
    g = supply.shape[0]
    params = {
        "a": jnp.concatenate([jnp.full((1, g), 1.0) * r, a]),
        "b": jnp.concatenate([jnp.full((1, g), 1.0 / kappa), b]),
    }
    eq = equilibrium.quasilinear(
        separable_value,
        params,
        supply,
        tol=1e-6,
        max_iters=300,
        demand_fn=separable_demand,
    )
    sold = supply - eq.allocation[0]
    return jnp.where(eq.converged, jnp.dot(eq.prices, sold), jnp.nan)


def revenue(reserve: jax.Array, markets: Markets, *, kappa: float = 1.0) -> jax.Array:
    """f32[] mean revenue over the batch (see :func:`market_revenue`)."""
    one = functools.partial(market_revenue, kappa=kappa)
    return jnp.mean(jax.vmap(one, (None, 0, 0, 0))(reserve, *_fields(markets)))


def revenue_and_grad(
    reserve: jax.Array, markets: Markets, *, kappa: float = 1.0
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mean revenue, its gradient in ``r`` through the equilibria, flagged markets.

    The gradient is the mean of the per-market implicit gradients over the markets
    whose gradient is defined; a market at a kink (measure zero in ``r``, but a
    batch of hundreds meets one now and then) is left out *and counted*.

    Returns:
        ``(revenue f32[], gradient f32[], flagged i32[])``.
    """
    one = jax.value_and_grad(functools.partial(market_revenue, kappa=kappa))
    values, grads = jax.vmap(one, (None, 0, 0, 0))(reserve, *_fields(markets))
    flagged = jnp.isnan(grads)
    return jnp.mean(values), jnp.nanmean(grads), jnp.sum(flagged).astype(jnp.int32)


def _fields(markets: Markets) -> tuple[jax.Array, jax.Array, jax.Array]:
    return markets.a, markets.b, markets.supply
