"""Walrasian equilibrium for quasilinear agents: the wide market's Equ (seed Def. 2.2).

Agent ``i`` values a bundle ``x f[G] >= 0`` by a concave ``v_i(x)`` and pays with
money, so its demand at prices ``p`` is ``x_i(p) = argmax_{x >= 0} v_i(x) - p . x``.
Prices ``p >= 0`` and bundles ``x_i(p)`` form a Walrasian equilibrium when
``sum_i x_i(p) <= s`` with equality wherever ``p_j > 0``. By the envelope theorem the
excess demand ``z(p) = sum_i x_i(p) - s`` is minus the gradient of the convex dual

    D(p) = sum_i max_{x >= 0} [v_i(x) - p . x] + p . s,

whose minimizers over ``p >= 0`` are exactly the equilibrium prices (the welfare
theorems for quasilinear economies). Tâtonnement is therefore projected gradient
descent on ``D``; here with the Barzilai–Borwein step (``adaptive_step``), which needs
tens of iterations on small economies.

Each agent's demand is an inner solve (projected gradient ascent with
Barzilai–Borwein steps, warm-started from the previous round), vmapped over agents;
pass ``demand_fn`` for a closed form. With ``budgets`` an agent also keeps
``p . x_i <= B_i`` (a quasilinear Fisher market; the projection onto the budget set is
found by bisection). Linear valuations have set-valued demand: prices approach the
right values but neither the inner nor the outer test passes, and ``converged`` stays
False.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from marketjax.mechanisms import implicit_quasilinear
from marketjax.mechanisms.adaptive_step import scale_by_barzilai_borwein
from marketjax.mechanisms.tatonnement import Equilibrium, run_tatonnement

_BISECTION_STEPS = 40
_INNER_STEP_RANGE = (1e-10, 1e10)


def budget_projection(y: jax.Array, prices: jax.Array, budget: jax.Array) -> jax.Array:
    """Euclidean projection of ``y`` onto ``{x >= 0, p . x <= B}``.

    The projection is ``max(y - mu p, 0)`` with the smallest ``mu >= 0`` meeting the
    budget (KKT); ``mu`` is found by bisection, keeping the feasible end.

    Args:
        y: f[G] the point to project.
        prices: f[G] non-negative prices.
        budget: f32[] the budget, possibly ``inf``.

    Returns:
        f[G] the projected bundle.
    """
    free = jnp.maximum(y, 0.0)

    def spend(mu):
        return jnp.dot(prices, jnp.maximum(y - mu * prices, 0.0))

    safe = jnp.where(prices > 0, prices, 1.0)
    hi0 = jnp.max(jnp.where(prices > 0, free / safe, 0.0))

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        over = spend(mid) > budget
        return jnp.where(over, mid, lo), jnp.where(over, hi, mid)

    _, mu = jax.lax.fori_loop(0, _BISECTION_STEPS, bisect, (jnp.zeros_like(hi0), hi0))
    capped = jnp.maximum(y - mu * prices, 0.0)
    return jnp.where(spend(0.0) > budget, capped, free)


def solve_demand(
    value_fn: Callable[[Any, jax.Array], jax.Array],
    params_i: Any,
    prices: jax.Array,
    budget_i: jax.Array,
    x0: jax.Array,
    t0: jax.Array,
    *,
    max_iters: jax.Array,
    tol: jax.Array,
    radius: jax.Array,
    has_budget: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One agent's demand ``argmax_{x >= 0, p.x <= B} v(x) - p . x``.

    Projected gradient ascent with Barzilai–Borwein steps (Barzilai & Borwein 1988;
    Birgin, Martínez & Raydan 2000), stopped when the next move
    ``|proj(x + t grad) - x|`` (``t`` the BB step, an inverse-curvature estimate, so
    the move estimates the distance to the optimum in goods) is at most ``tol`` or
    below float32 resolution.

    Args:
        value_fn: ``(params_i, x f[G]) -> scalar``, concave in ``x``.
        params_i: this agent's parameters.
        prices: f[G].
        budget_i: f32[] (used only if ``has_budget``).
        x0: f[G] warm start.
        t0: f32[] the warm-start step.
        max_iters: the most inner iterations.
        tol: the tolerance on the move, in goods.
        radius: the largest move of one step (a trust region keeping float32 sane
            when the valuation is flat, e.g. linear).
        has_budget: whether to project onto the budget set.

    Returns:
        ``(x f[G], step f32[], residual f32[])``.
    """
    grad_v = jax.grad(value_fn, argnums=1)

    def proj(y):
        if has_budget:
            return budget_projection(y, prices, budget_i)
        return jnp.maximum(y, 0.0)

    def gain_grad(x):
        return grad_v(params_i, x) - prices

    def move(x, g, t):
        # A trust region: no step moves the bundle by more than `radius`.
        g_max = jnp.max(jnp.abs(g))
        return proj(x + jnp.minimum(t, radius / jnp.where(g_max > 0, g_max, 1.0)) * g)

    def stationarity(x, g, t):
        # The Newton-like move (t ~ inverse curvature) estimates the distance to the
        # optimum in goods; a move within float32 resolution of x counts as zero.
        d = jnp.max(jnp.abs(move(x, g, t) - x))
        floor = 4.0 * jnp.finfo(jnp.float32).eps * jnp.max(jnp.abs(x))
        return jnp.where(d <= floor, 0.0, d)

    x0 = proj(x0)
    g0 = gain_grad(x0)

    def cond(s):
        _, _, _, r, k = s
        return (k < max_iters) & (r > tol)

    def body(s):
        x, g, t, _, k = s
        x_new = move(x, g, t)
        g_new = gain_grad(x_new)
        dx = x_new - x
        curv = -jnp.dot(dx, g_new - g)  # >= 0 for concave v
        t_new = jnp.where(
            curv > 0, jnp.dot(dx, dx) / jnp.where(curv > 0, curv, 1), 2 * t
        )
        t_new = jnp.clip(t_new, *_INNER_STEP_RANGE)
        return x_new, g_new, t_new, stationarity(x_new, g_new, t_new), k + 1

    init = (x0, g0, t0, stationarity(x0, g0, t0), jnp.zeros((), jnp.int32))
    x, _, t, r, _ = jax.lax.while_loop(cond, body, init)
    return x, t, r


def _leading_dim(params: Any) -> int:
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("params must be a non-empty pytree stacked over M agents")
    dims = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in leaves}
    if len(dims) != 1 or None in dims:
        raise ValueError(
            "params must be a pytree whose leaves all share a leading axis M, got "
            f"leading sizes {sorted(str(d) for d in dims)}"
        )
    return dims.pop()


def quasilinear(
    value_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    supply: jax.Array,
    *,
    tol: float | jax.Array,
    max_iters: int | jax.Array,
    budgets: jax.Array | None = None,
    demand_fn: Callable[[Any, jax.Array, jax.Array], jax.Array] | None = None,
    p0: jax.Array | None = None,
    step_size: float | jax.Array | None = None,
    inner_iters: int | jax.Array = 200,
    optimizer: optax.GradientTransformation | None = None,
) -> Equilibrium:
    """Walrasian equilibrium of agents with concave quasilinear valuations.

    Args:
        value_fn: ``(params_i, bundle f[G]) -> scalar``, concave; a module-level
            function (a new function object recompiles).
        params: a pytree stacked over M agents (leading axis M on every leaf).
        supply: f[G] positive supplies.
        tol: converged iff ``max_j |r_j| <= tol * max(1, max_j s_j)`` and every inner
            solve is within ``tol * max(1, max_j s_j) / M`` goods of its optimum (or
            at float32 resolution).
        max_iters: the most price updates.
        budgets: optional f[M] spending caps ``p . x_i <= B_i``.
        demand_fn: optional closed form ``(params_i, prices f[G], budget_i) -> f[G]``
            (``budget_i`` is ``inf`` without budgets) replacing the inner solve.
        p0: f[G] starting prices; default the mean marginal value at the equal split.
        step_size: the first tâtonnement step; default moves prices 10% of their scale.
        inner_iters: the most iterations of each inner demand solve.
        optimizer: an optax rule replacing Barzilai–Borwein (additive, projected).

    Differentiable: ``jax.grad`` / ``jax.jacobian`` / ``jax.jvp`` with respect to the
    array leaves of ``params``, ``supply`` and ``budgets`` use the implicit function
    theorem on the agents' KKT conditions and market clearing
    (``implicit_quasilinear``), with the active set read from the solution (goods at
    price 0, agents at a corner ``x_ij = 0``, binding budgets). ``value_fn`` must be
    twice differentiable and strictly concave on each agent's held goods. The
    tangent is NaN when ``converged`` is False or a zero-priced good exactly clears.

    Returns:
        ``Equilibrium`` with prices f[G], bundles f[M, G], excess demand f[G];
        ``converged`` is False whenever the bundles or excess demand hold NaN/inf.

    Raises:
        ValueError: on mismatched shapes of ``params``, ``supply``, ``budgets``, ``p0``.
    """
    if jnp.ndim(supply) != 1:
        raise ValueError(f"supply must have shape [G], got shape {jnp.shape(supply)}")
    m, g = _leading_dim(params), jnp.shape(supply)[0]
    if budgets is not None and jnp.shape(budgets) != (m,):
        raise ValueError(
            f"budgets must have shape [M]=({m},), got {jnp.shape(budgets)}"
        )
    if p0 is not None and jnp.shape(p0) != (g,):
        raise ValueError(f"p0 must have shape [G]=({g},), got {jnp.shape(p0)}")
    return _quasilinear(
        params,
        jnp.asarray(supply, jnp.float32),
        None if budgets is None else jnp.asarray(budgets, jnp.float32),
        None if p0 is None else jnp.asarray(p0, jnp.float32),
        None if step_size is None else jnp.asarray(step_size, jnp.float32),
        jnp.asarray(tol, jnp.float32),
        jnp.asarray(max_iters, jnp.int32),
        jnp.asarray(inner_iters, jnp.int32),
        value_fn=value_fn,
        demand_fn=demand_fn,
        optimizer=optimizer,
    )


@functools.partial(jax.jit, static_argnames=("value_fn", "demand_fn", "optimizer"))
def _quasilinear(
    params,
    supply,
    budgets,
    p0,
    step_size,
    tol,
    max_iters,
    inner_iters,
    *,
    value_fn,
    demand_fn,
    optimizer,
):
    sg = jax.lax.stop_gradient
    scaled_tol = sg(tol * jnp.maximum(1.0, jnp.max(supply)))
    eq = _solve(
        sg(params),
        sg(supply),
        None if budgets is None else sg(budgets),
        None if p0 is None else sg(p0),
        None if step_size is None else sg(step_size),
        scaled_tol,
        max_iters,
        inner_iters,
        value_fn=value_fn,
        demand_fn=demand_fn,
        optimizer=optimizer,
    )
    finite = jnp.all(jnp.isfinite(eq.allocation)) & jnp.all(
        jnp.isfinite(eq.excess_demand)
    )
    eq = eq.replace(converged=eq.converged & finite)
    return implicit_quasilinear.differentiable(
        eq,
        params,
        supply,
        budgets,
        scaled_tol,
        value_fn=value_fn,
        demand_fn=demand_fn,
    )


def _solve(
    params,
    supply,
    budgets,
    p0,
    step_size,
    scaled_tol,
    max_iters,
    inner_iters,
    *,
    value_fn,
    demand_fn,
    optimizer,
):
    m = _leading_dim(params)
    has_budget = budgets is not None
    caps = budgets if has_budget else jnp.full((m,), jnp.inf, jnp.float32)
    x_split = jnp.broadcast_to(supply / m, (m, supply.shape[0]))
    if p0 is None:
        grads = jax.vmap(jax.grad(value_fn, argnums=1))(params, x_split)
        p0 = jnp.maximum(jnp.mean(grads, axis=0), 0.0)
    if optimizer is None:
        optimizer = scale_by_barzilai_borwein(initial_step=step_size)

    if demand_fn is not None:

        def agents_demand(prices, carry):
            x = jax.vmap(demand_fn, in_axes=(0, None, 0))(params, prices, caps)
            return x, carry, jnp.asarray(True)

    else:

        def agents_demand(prices, carry):
            x0, t0 = carry
            solve = functools.partial(
                solve_demand,
                value_fn,
                max_iters=inner_iters,
                tol=scaled_tol / m,  # M errors add up in the excess demand
                radius=2.0 * jnp.maximum(1.0, jnp.max(supply)),
                has_budget=has_budget,
            )
            x, t, r = jax.vmap(solve, in_axes=(0, None, 0, 0, 0))(
                params, prices, caps, x0, t0
            )
            return x, (x, t), jnp.all(r <= scaled_tol / m)  # as documented

    def market(prices, carry):
        x, carry, ok = agents_demand(prices, carry)
        return jnp.sum(x, axis=0) - supply, x, carry, ok

    carry0 = (x_split, jnp.ones((m,), jnp.float32))
    eq, _ = run_tatonnement(
        market,
        p0,
        carry0,
        optimizer=optimizer,
        price_update="additive",
        tol=scaled_tol,
        max_iters=max_iters,
    )
    return eq
