"""Implicit derivatives of quasilinear equilibria (``equilibrium.quasilinear``).

Agent ``i`` demands ``x_i = argmax_{x >= 0, p.x <= B_i} v_i(θ_i, x) - p.x``. On its
active set (the goods it holds, ``F_i = {j: x_ij > 0}``; a binding budget with
multiplier ``μ_i``) the KKT conditions are

    ∇_F v_i(θ_i, x_i) = (1 + μ_i) p_F,    p_F . x_F = B_i  (if binding),

and ``x_ij = 0`` off ``F_i`` (a corner). Differentiated (``H_i = ∇²v_i``, negative
definite on ``F_i`` for a strictly concave ``v_i``):

    [H_FF  -p_F] [dx_F]   [(1 + μ) dp_F - ∂_θ∇_F v dθ]
    [p_F     0 ] [dμ  ] = [dB - x . dp                ],

one ``(G+1) x (G+1)`` system per agent (rows of corner goods, and the budget row when
it does not bind, are identities), inverted at the primal point by
:func:`implicit.dense_solve`. Summing ``dx_i`` gives ``∂z/∂p`` and ``∂z/∂θ dθ``; the
prices then follow from :func:`implicit.price_tangent` on the positive-price goods.
With a closed-form ``demand_fn`` its own derivatives are used instead.

Known answer (tested): one good, ``v_i = a_i x - b_i x²/2``, supply ``S``, every agent
interior: ``p = (Σ a_i/b_i - S) / Σ 1/b_i``, so ``∂p/∂a_i = (1/b_i) / Σ_j 1/b_j`` and
``∂p/∂S = -1 / Σ_j 1/b_j``; an agent at the corner ``x_i = 0`` drops out of both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from marketjax.mechanisms import implicit
from marketjax.mechanisms.tatonnement import Equilibrium

BUDGET_RTOL = 1e-4  # spending within this fraction of the budget: it binds
CORNER_RTOL = 1e-4  # marginal value this close to the price at x = 0: a kink


def _agent_kkt(value_fn, prices, has_budget):
    """Per-agent primal pieces: ``(inv f[G+1, G+1], ∂x/∂p f[G, G], free bool[G],
    binding bool[], strict bool[])``; ``strict`` is False when a good the agent
    does not hold has marginal value within ``CORNER_RTOL`` of its price (a kink)."""
    grad_v = jax.grad(value_fn, argnums=1)
    g = prices.shape[0]

    def one(params_i, x_i, budget_i):
        hess = jax.hessian(value_fn, argnums=1)(params_i, x_i)  # f[G, G]
        grad = grad_v(params_i, x_i)  # f[G]
        free = x_i > 0  # bool[G]
        both = free[:, None] & free[None, :]
        p_f = jnp.where(free, prices, 0.0)
        if has_budget:
            spend = jnp.dot(prices, x_i)
            mu = jnp.dot(grad - prices, p_f) / jnp.maximum(jnp.dot(p_f, p_f), 1e-30)
            binding = (spend >= budget_i * (1.0 - BUDGET_RTOL)) & (mu > 0)
            mu = jnp.where(binding, mu, 0.0)
        else:
            binding, mu = jnp.asarray(False), jnp.asarray(0.0)
        slack = (1.0 + mu) * prices - grad  # > 0 at a strict corner
        strict = ~jnp.any(~free & (slack <= CORNER_RTOL * (1.0 + jnp.abs(prices))))
        top = jnp.concatenate(
            [
                jnp.where(both, hess, 0.0) + jnp.diag(jnp.where(free, 0.0, 1.0)),
                -p_f[:, None],
            ],
            axis=1,
        )  # f[G, G+1]
        bottom = jnp.where(
            binding,
            jnp.concatenate([p_f, jnp.zeros(1)]),
            jnp.concatenate([jnp.zeros(g), jnp.ones(1)]),
        )  # f[G+1]
        inv = implicit.inverse(jnp.concatenate([top, bottom[None, :]], axis=0))
        rhs_p = jnp.concatenate(
            [
                jnp.diag(jnp.where(free, 1.0 + mu, 0.0)),
                jnp.where(binding, -x_i, 0.0)[None, :],
            ],
            axis=0,
        )  # f[G+1, G]
        return inv, (inv @ rhs_p)[:g], free, binding, strict

    return one


def _agent_tangent(value_fn, x_i, params_i, dparams_i, dbudget_i, inv, free, binding):
    """``dx_θ f[G]``: the agent's bundle change for fixed prices (linear in dθ)."""
    grad_v = jax.grad(value_fn, argnums=1)
    _, dgrad = jax.jvp(lambda th: grad_v(th, x_i), (params_i,), (dparams_i,))
    rhs = jnp.concatenate(
        [jnp.where(free, -dgrad, 0.0), jnp.where(binding, dbudget_i, 0.0)[None]]
    )  # f[G+1]
    return (inv @ rhs)[: x_i.shape[0]]


def make_rule(
    value_fn: Callable[[Any, jax.Array], jax.Array],
    demand_fn: Callable[[Any, jax.Array, jax.Array], jax.Array] | None,
    has_budget: bool,
):
    """The tangent rule for :func:`implicit.attach` (prices, allocation, excess)."""

    def rule(out, aux, theta, dtheta):
        p, x, z = out
        ok, tol = aux
        params, _, budgets = theta
        dparams, dsupply, dbudgets = dtheta
        m = x.shape[0]
        caps = budgets if has_budget else jnp.full((m,), jnp.inf, jnp.float32)
        dcaps = dbudgets if has_budget else jnp.zeros((m,), jnp.float32)
        pieces = jax.vmap(_agent_kkt(value_fn, p, has_budget))(params, x, caps)
        inv, jac_kkt, free, binding, strict_agents = pieces
        if demand_fn is not None:
            jac_x = jax.vmap(jax.jacfwd(demand_fn, argnums=1), in_axes=(0, None, 0))(
                params, p, caps
            )  # f[M, G, G]
        else:
            jac_x = jac_kkt
        jac_p = jnp.sum(jac_x, axis=0)  # f[G, G]
        positive, strict = implicit.active_set(p, z, tol)
        finite = jnp.all(jnp.isfinite(jac_x))
        scale = implicit.flag(ok & strict & jnp.all(strict_agents) & finite)
        dparams, dsupply, dcaps = implicit.flag_tree((dparams, dsupply, dcaps), scale)
        if demand_fn is not None:

            def dx_one(th, dth, cap, dcap):
                if has_budget:
                    return jax.jvp(
                        lambda t, c: demand_fn(t, p, c), (th, cap), (dth, dcap)
                    )[1]
                return jax.jvp(lambda t: demand_fn(t, p, cap), (th,), (dth,))[1]

            dx_theta = jax.vmap(dx_one)(params, dparams, caps, dcaps)
        else:
            tangent = functools.partial(_agent_tangent, value_fn)
            dx_theta = jax.vmap(tangent)(x, params, dparams, dcaps, inv, free, binding)
        dz_theta = jnp.sum(dx_theta, axis=0) - dsupply
        dp = implicit.price_tangent(jac_p, dz_theta, positive) * scale
        dx = jnp.einsum("mgh,h->mg", jac_x, dp) + dx_theta
        dz = jnp.sum(dx, axis=0) - dsupply
        return dp, dx, dz

    return rule


def differentiable(
    eq: Equilibrium,
    params: Any,
    supply: jax.Array,
    budgets: jax.Array | None,
    tol: jax.Array,
    *,
    value_fn: Callable[[Any, jax.Array], jax.Array],
    demand_fn: Callable[[Any, jax.Array, jax.Array], jax.Array] | None,
) -> Equilibrium:
    """``eq`` with implicit tangents w.r.t. ``params``, ``supply`` and ``budgets``.

    Args:
        eq: the equilibrium solved from ``stop_gradient`` inputs.
        params: the agents' parameters, a pytree stacked over M (differentiable).
        supply: f[G] (differentiable).
        budgets: f[M] or None (differentiable).
        tol: f32[] the absolute residual tolerance used by the solver.
        value_fn: the agents' valuation.
        demand_fn: the closed-form demand, if any.

    Returns:
        The same ``Equilibrium`` carrying tangents, NaN where not converged.
    """
    rule = make_rule(value_fn, demand_fn, budgets is not None)
    out = (eq.prices, eq.allocation, eq.excess_demand)
    prices, allocation, excess = implicit.attach(
        rule, out, (eq.converged, tol), (params, supply, budgets)
    )
    return eq.replace(prices=prices, allocation=allocation, excess_demand=excess)
