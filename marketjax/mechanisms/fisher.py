"""Fisher markets: buyers with budgets, sellers with fixed supply.

Buyer ``i`` has budget ``B_i`` and utility over bundles ``x_i f[G]``:

* ``"linear"``: ``u_i = sum_j U_ij x_ij``;
* ``"cobb_douglas"``: ``u_i = prod_j x_ij ** a_ij`` with ``a_i = U_i / sum_j U_ij``;
* ``"ces"``: ``u_i = (sum_j U_ij x_ij ** rho) ** (1 / rho)``, ``rho < 1``, ``rho != 0``.

The equilibrium is the solution of the Eisenberg–Gale (1959) convex program
``max sum_i B_i log u_i(x_i)  s.t.  sum_i x_ij <= s_j``, whose multipliers are the
prices. Two price dynamics find it:

* proportional response (Wu & Zhang 2007; Zhang 2011; Birnbaum, Devanur & Xiao 2011):
  buyers bid ``b_ij``, good ``j`` sells at ``p_j = sum_i b_ij / s_j``, buyer ``i``
  gets ``x_ij = b_ij / p_j`` and rebids in proportion to the utility each good gave,
  ``b_ij <- B_i U_ij x_ij**rho / sum_k U_ik x_ik**rho`` (``rho = 1`` linear; one step,
  ``b_ij = B_i a_ij``, for Cobb–Douglas). It is mirror descent on the Shmyrev convex
  program (BDX 2011) and reaches a float32 fixed point for linear and CES markets.
* tâtonnement (Cheung, Cole & Devanur 2013/2020): multiplicative price updates
  ``log p_j <- log p_j + eta * clip(z_j / s_j, -1, 1)``, mirror descent on the convex
  dual of Eisenberg–Gale; linear buyers' demand is not single-valued there, so it
  oscillates and is reported unconverged.

Converged means ``max_j |r_j| <= tol * max(1, max_j s_j)`` where ``r`` is the projected
excess demand of the buyers' *optimal* bundles at the final prices (not of the
proportional-response allocation, which clears by construction).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from marketjax.mechanisms import fisher_demand, implicit_fisher
from marketjax.mechanisms.tatonnement import (
    DEFAULT_STALL_RTOL,
    STALL_PATIENCE,
    Equilibrium,
    max_residual,
    run_tatonnement,
)

KINDS = ("linear", "cobb_douglas", "ces")
METHODS = ("proportional_response", "tatonnement")


def _validate(budgets, utilities, supply, kind, method, rho):
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if jnp.ndim(utilities) != 2:
        raise ValueError(
            f"utilities must have shape [M, G], got shape {jnp.shape(utilities)}"
        )
    m, g = jnp.shape(utilities)
    if jnp.shape(budgets) != (m,):
        raise ValueError(
            f"budgets must have shape [M]=({m},), got {jnp.shape(budgets)}"
        )
    if jnp.shape(supply) != (g,):
        raise ValueError(f"supply must have shape [G]=({g},), got {jnp.shape(supply)}")
    _check_values("budgets", budgets, lambda v: np.all(v >= 0), "non-negative")
    _check_values("utilities", utilities, lambda v: np.all(v >= 0), "non-negative")
    _check_values("supply", supply, lambda v: np.all(v > 0), "positive")
    if kind == "ces":
        if rho is None:
            raise ValueError("rho is required for kind='ces'")
        if not isinstance(rho, jax.core.Tracer):
            r = float(rho)
            if not (r < 1.0 and r != 0.0):
                raise ValueError(f"rho must satisfy rho < 1 and rho != 0, got {r}")


def _check_values(name, value, test, what) -> None:
    """Raises ValueError unless a concrete ``value`` is finite and passes ``test``;
    traced values are checked inside (``converged`` is then False)."""
    if isinstance(value, jax.core.Tracer):
        return
    v = np.asarray(value)
    if not np.issubdtype(v.dtype, np.number) or np.iscomplexobj(v):
        raise ValueError(f"{name} must be real numbers, got dtype {v.dtype}")
    if not (np.all(np.isfinite(v)) and test(v)):
        raise ValueError(f"{name} must be finite and {what}")


def _valid(budgets, utilities, supply) -> jax.Array:
    """bool[] the value checks of ``_check_values``, for traced inputs."""
    finite = (
        jnp.all(jnp.isfinite(budgets))
        & jnp.all(jnp.isfinite(utilities))
        & jnp.all(jnp.isfinite(supply))
    )
    return (
        finite & jnp.all(budgets >= 0) & jnp.all(utilities >= 0) & jnp.all(supply > 0)
    )


def fisher(
    budgets: jax.Array,
    utilities: jax.Array,
    supply: jax.Array,
    *,
    kind: str,
    method: str,
    tol: float | jax.Array,
    max_iters: int | jax.Array,
    rho: float | jax.Array | None = None,
    step_size: float | jax.Array | None = None,
    optimizer: optax.GradientTransformation | None = None,
) -> Equilibrium:
    """Competitive equilibrium of a Fisher market.

    Args:
        budgets: f[M] buyers' budgets, non-negative.
        utilities: f[M, G] non-negative utility coefficients (Cobb–Douglas: exponents,
            normalized per buyer); every buyer must value some good.
        supply: f[G] positive supplies.
        kind: ``"linear"``, ``"cobb_douglas"`` or ``"ces"``.
        method: ``"proportional_response"`` or ``"tatonnement"``.
        tol: relative tolerance: converged iff ``max_j |r_j| <= tol * max(1, max s)``.
        max_iters: the most price updates.
        rho: the CES exponent (``kind="ces"`` only), ``rho < 1``, ``rho != 0``.
        step_size: tâtonnement step on log-prices (default ``1 / max(1, sigma)`` with
            ``sigma = 1 / (1 - rho)`` the elasticity; 1 for Cobb–Douglas, 0.1 linear).
        optimizer: tâtonnement only: an optax rule replacing the default
            ``chain(clip(1), sgd(step_size))``; build it once to avoid recompiles.

    Returns:
        ``Equilibrium`` with per-unit prices f[G], the buyers' optimal bundles f[M, G]
        at those prices (linear: the optimal bundle nearest to the proportional
        response, see ``fisher_demand.linear_nearest``), excess demand, convergence.

    Differentiable: ``jax.grad`` / ``jax.jacobian`` / ``jax.jvp`` of any output with
    respect to ``budgets``, ``utilities``, ``supply`` (and ``rho``) use the implicit
    function theorem on the equilibrium conditions (``implicit_fisher``), not the
    iterations. The tangent is NaN when ``converged`` is False or the equilibrium is
    degenerate (a zero-priced good exactly clearing; linear: a tie in the spending
    graph), so a gradient is never silently wrong.

    Non-finite values: concrete inputs are checked and rejected; traced inputs that
    are negative, NaN or infinite (or a zero supply) give ``converged=False``. A
    result holding NaN is never reported converged.

    Raises:
        ValueError: on a bad ``kind``, ``method``, ``rho``, a shape mismatch, or
            concrete ``budgets`` < 0, ``utilities`` < 0, ``supply`` <= 0 or any of
            them not finite (the message names the argument).
    """
    _validate(budgets, utilities, supply, kind, method, rho)
    if kind == "ces":
        rho_arr = jnp.asarray(rho, jnp.float32)
    else:
        rho_arr = jnp.asarray(1.0 if kind == "linear" else 0.0, jnp.float32)
    if step_size is not None:
        step = jnp.asarray(step_size, jnp.float32)
    elif kind == "ces":
        step = 1.0 / jnp.maximum(1.0, 1.0 / (1.0 - rho_arr))  # 1 / max(1, sigma)
    else:
        step = jnp.asarray(0.1 if kind == "linear" else 1.0, jnp.float32)
    return _fisher(
        jnp.asarray(budgets, jnp.float32),
        jnp.asarray(utilities, jnp.float32),
        jnp.asarray(supply, jnp.float32),
        rho_arr,
        jnp.asarray(tol, jnp.float32),
        jnp.asarray(max_iters, jnp.int32),
        step,
        kind=kind,
        method=method,
        optimizer=optimizer,
    )


@functools.partial(jax.jit, static_argnames=("kind", "method", "optimizer"))
def _fisher(
    budgets, utilities, supply, rho, tol, max_iters, step, *, kind, method, optimizer
):
    sg = jax.lax.stop_gradient
    scaled_tol = sg(tol * jnp.maximum(1.0, jnp.max(supply)))
    eq = _solve(
        sg(budgets),
        sg(utilities),
        sg(supply),
        sg(rho),
        scaled_tol,
        max_iters,
        sg(step),
        kind=kind,
        method=method,
        optimizer=optimizer,
    )
    finite = jnp.all(jnp.isfinite(eq.excess_demand)) & jnp.all(
        jnp.isfinite(eq.allocation)
    )
    eq = eq.replace(
        converged=eq.converged & finite & _valid(budgets, utilities, supply)
    )
    return implicit_fisher.differentiable(
        eq, budgets, utilities, supply, rho, scaled_tol, kind=kind
    )


def _solve(
    budgets,
    utilities,
    supply,
    rho,
    scaled_tol,
    max_iters,
    step,
    *,
    kind,
    method,
    optimizer,
):
    if method == "proportional_response":
        return _proportional_response(
            budgets, utilities, supply, rho, scaled_tol, max_iters, kind=kind
        )
    if optimizer is None:
        optimizer = optax.chain(optax.clip(1.0), optax.sgd(step))

    def demand_fn(prices, carry):
        x = fisher_demand.demand(budgets, utilities, prices, rho, kind=kind)
        return jnp.sum(x, axis=0) - supply, x, carry, jnp.asarray(True)

    p0 = jnp.sum(budgets) / (utilities.shape[1] * supply)
    eq, _ = run_tatonnement(
        demand_fn,
        p0,
        (),
        optimizer=optimizer,
        price_update="multiplicative",
        tol=scaled_tol,
        max_iters=max_iters,
        grad_scale=1.0 / supply,
    )
    return eq


def _proportional_response(budgets, utilities, supply, rho, tol, max_iters, *, kind):
    """Proportional response dynamics on bids b f[M, G], with an honest residual."""
    valued = utilities > 0  # bool[M, G]
    log_u = jnp.log(jnp.where(valued, utilities, 1.0))  # f32[M, G]
    if kind == "cobb_douglas":
        log_u = log_u - jnp.log(jnp.sum(utilities, axis=1, keepdims=True))

    def prices_of(bids):
        return jnp.sum(bids, axis=0) / supply  # f32[G]

    # Damping for complements (rho < 0): mix old and proportional-response bids
    # geometrically with weight theta = min(1, sigma); at theta = sigma the own-good
    # feedback x**rho cancels and the new bids are the CES demand spending at the
    # current prices (Cheung, Cole & Tao 2018 study this damped family).
    theta = jnp.minimum(1.0, 1.0 / (1.0 - rho))

    def update(bids):
        if kind == "cobb_douglas":
            return jnp.where(valued, budgets[:, None] * jnp.exp(log_u), 0.0)
        p = prices_of(bids)
        x = bids / jnp.where(p > 0, p, 1.0)[None, :]
        log_x = jnp.log(jnp.maximum(x, jnp.finfo(jnp.float32).tiny))
        logits = log_u + rho * log_x
        if kind == "ces":
            log_b = jnp.log(jnp.maximum(bids, jnp.finfo(jnp.float32).tiny))
            logits = theta * logits + (1.0 - theta) * log_b
        return budgets[:, None] * fisher_demand.masked_softmax(logits, valued)

    def evaluate(bids):
        p = prices_of(bids)
        if kind == "linear":
            x = fisher_demand.linear_nearest(budgets, utilities, p, bids)
        else:
            x = fisher_demand.demand(budgets, utilities, p, rho, kind=kind)
        z = jnp.sum(x, axis=0) - supply
        return p, x, z, max_residual(p, z)

    count = jnp.sum(valued, axis=1, keepdims=True)
    bids0 = jnp.where(valued, budgets[:, None], 0.0) / jnp.maximum(count, 1).astype(
        budgets.dtype
    )
    p0, x0, z0, r0 = evaluate(bids0)

    def cond(s):
        *_, r, it, stalled = s
        done = (r <= tol) | ~jnp.isfinite(r) | (stalled >= STALL_PATIENCE)
        return (it < max_iters) & ~done

    def body(s):
        old, _, _, _, _, it, stalled = s
        bids = update(old)
        p, x, z, r = evaluate(bids)
        # Stalled: no bid moved by more than ~2 ulps of itself, or by more than what
        # would shift the excess demand by 1e-3 * tol goods (decaying dust).
        slack = DEFAULT_STALL_RTOL * jnp.abs(old) + 1e-3 * tol * p[None, :]
        moved = jnp.any(jnp.abs(bids - old) > slack)
        return bids, p, x, z, r, it + 1, jnp.where(moved, 0, stalled + 1)

    init = (bids0, p0, x0, z0, r0, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
    _, p, x, z, r, it, _ = jax.lax.while_loop(cond, body, init)
    return Equilibrium(
        prices=p,
        allocation=x,
        excess_demand=z,
        converged=(r <= tol) & jnp.all(jnp.isfinite(p)),
        iterations=it,
        residual=r,
    )
