"""Implicit derivatives of Fisher-market equilibria (``equilibrium.fisher``).

Cobb–Douglas and CES buyers have a single-valued demand ``x(p; B, U, s, ρ)``, so
the equilibrium is ``z(p*, θ) = 0`` on the positive-price goods and
:func:`implicit.price_tangent` applies directly; allocation and excess demand get
their tangents by the chain rule through the demand at ``p*``. Cobb–Douglas has
``p_j = Σ_i B_i a_ij / s_j``, so ``∂p_j/∂B_i = a_ij / s_j`` (the known answer the
tests check).

Linear buyers have a set-valued demand, so ``z(p)`` has no derivative; the prices
are still locally smooth functions of ``(B, U, s)`` wherever the equilibrium's
spending graph (buyer ``i`` — good ``j`` when ``b_ij > 0``) is a forest whose edges
are exactly the maximum-bang-per-buck pairs (the generic case; Eisenberg & Gale
1959, Vazirani 2007 ch. 5). On it, with ``v_j = log p_j`` and ``v_i = -log β_i``
(``β_i`` buyer ``i``'s bang per buck):

* every edge: ``v_j - v_i = log U_ij``;
* every connected component ``C``: ``Σ_{j∈C} p_j s_j = Σ_{i∈C} B_i`` (money spent
  in ``C`` stays in ``C``).

Differentiated, this is ``(L + K diag(ω)) dv = Dᵀ r + K ρ`` with ``L`` the graph
Laplacian, ``K`` the same-component indicator (a boolean transitive closure),
``ω = p s`` on goods, ``r = dU / U`` on edges and ``ρ = (-p ds, dB)``; the matrix is
nonsingular (each component's shift is fixed by its budget row). The spending
change on the forest is the unique flow meeting the nodes' new totals,
``(L + K) φ = (d(p s), -dB)``, ``db_ij = φ_j - φ_i``. A cycle or an unused
maximum-bang-per-buck pair (a tie: the price map has a kink) flags the tangent NaN.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from marketjax.mechanisms import fisher_demand, implicit
from marketjax.mechanisms.tatonnement import Equilibrium


def _smooth_rule(kind: str):
    def excess(prices, theta):
        budgets, utilities, supply, rho = theta
        x = fisher_demand.demand(budgets, utilities, prices, rho, kind=kind)
        return jnp.sum(x, axis=0) - supply, x

    def rule(out, aux, theta, dtheta):
        p, _, z = out
        ok, tol = aux
        jac = jax.jacfwd(lambda q: excess(q, theta)[0])(p)  # f[G, G]
        positive, strict = implicit.active_set(p, z, tol)
        scale = implicit.flag(ok & strict & jnp.all(jnp.isfinite(jac)))
        dtheta = implicit.flag_tree(dtheta, scale)
        _, (dz_theta, _) = jax.jvp(lambda th: excess(p, th), (theta,), (dtheta,))
        dp = implicit.price_tangent(jac, dz_theta, positive) * scale
        _, (dz, dx) = jax.jvp(excess, (p, theta), (dp, dtheta))
        return dp, dx, dz

    return rule


def _closure(adjacency: jax.Array) -> jax.Array:
    """f32[n, n] same-component indicator of an undirected graph (with self-loops)."""
    reach = adjacency
    for _ in range(max(1, math.ceil(math.log2(adjacency.shape[0])))):
        reach = (reach @ reach > 0).astype(jnp.float32)
    return reach


def _linear_rule(out, aux, theta, dtheta):
    p, x, z = out
    ok, tol = aux
    budgets, utilities, supply, _ = theta
    m, g = utilities.shape
    n = g + m
    positive, strict = implicit.active_set(p, z, tol)
    mbb = fisher_demand.mbb_goods(utilities, p)  # bool[M, G]
    edges = mbb & (x > 0) & positive[None, :]  # bool[M, G] the spending forest
    w = edges.astype(jnp.float32)  # f[M, G]
    laplacian = jnp.block(
        [[jnp.diag(jnp.sum(w, 0)), -w.T], [-w, jnp.diag(jnp.sum(w, 1))]]
    )  # f[n, n]
    comp = _closure(
        jnp.block([[jnp.eye(g), w.T], [w, jnp.eye(m)]]).astype(jnp.float32)
    )  # f[n, n]
    num_components = jnp.sum(1.0 / jnp.sum(comp, axis=1))
    forest = jnp.abs(jnp.sum(w) - (n - num_components)) < 0.5
    tie = jnp.any(mbb & ~edges & (budgets[:, None] > 0) & positive[None, :])
    # a free good (price ~ 0) is its own component: pin its log-price change to 0
    omega = jnp.concatenate([jnp.where(positive, p * supply, 1.0), jnp.zeros(m)])
    scale = implicit.flag(ok & strict & forest & ~tie)
    d_budgets, d_utilities, d_supply, _ = implicit.flag_tree(dtheta, scale)
    system = laplacian + comp * omega[None, :]
    safe_u = jnp.where(edges, utilities, 1.0)
    r = jnp.where(edges, d_utilities / safe_u, 0.0)  # f[M, G] d log U on edges
    rho = jnp.concatenate([jnp.where(positive, -p * d_supply, 0.0), d_budgets])
    rhs = jnp.concatenate([jnp.sum(r, 0), -jnp.sum(r, 1)]) + comp @ rho
    dv = implicit.inverse(system) @ rhs
    dp = jnp.where(positive, p * dv[:g], 0.0) * scale
    # the spending flow on the forest meeting the nodes' new totals
    demand = jnp.concatenate([dp * supply + p * d_supply, -d_budgets])
    phi = implicit.inverse(laplacian + comp) @ demand
    db = w * (phi[None, :g] - phi[g:, None])  # f[M, G]
    safe_p = jnp.where(positive, p, 1.0)[None, :]
    dx = jnp.where(edges, (db - x * dp[None, :]) / safe_p, 0.0)
    dz = jnp.sum(dx, axis=0) - d_supply
    return dp, dx, dz


def differentiable(
    eq: Equilibrium,
    budgets: jax.Array,
    utilities: jax.Array,
    supply: jax.Array,
    rho: jax.Array,
    tol: jax.Array,
    *,
    kind: str,
) -> Equilibrium:
    """``eq`` with implicit tangents for prices, allocation and excess demand.

    Args:
        eq: the equilibrium solved from ``stop_gradient`` inputs.
        budgets: f[M] (differentiable).
        utilities: f[M, G] (differentiable).
        supply: f[G] (differentiable).
        rho: f32[] the CES exponent (differentiable for ``"ces"``).
        tol: f32[] the absolute residual tolerance used by the solver.
        kind: ``"linear"``, ``"cobb_douglas"`` or ``"ces"``.

    Returns:
        The same ``Equilibrium`` (same primal values) carrying the tangents; they are
        NaN where ``eq.converged`` is False or the point is degenerate.
    """
    rule = _linear_rule if kind == "linear" else _smooth_rule(kind)
    out = (eq.prices, eq.allocation, eq.excess_demand)
    aux = (eq.converged, tol)
    theta = (budgets, utilities, supply, rho)
    prices, allocation, excess = implicit.attach(rule, out, aux, theta)
    return eq.replace(prices=prices, allocation=allocation, excess_demand=excess)
