"""Tâtonnement: prices follow excess demand, written as an optax transformation.

Walras' tâtonnement raises the price of a good in excess demand and lowers it in
excess supply, dp/dt = z(p) (Samuelson 1941). In a Fisher or quasilinear economy the
excess demand is minus the gradient of a convex dual potential, so tâtonnement *is*
gradient descent on that potential (Cheung, Cole & Devanur 2013/2020, "Tatonnement
beyond gross substitutes? Gradient descent to the rescue"), and any optax
transformation (SGD, momentum, Adam, a schedule) is a tâtonnement rule: the prices are
the optimizer's parameters and ``-z(p)`` is the gradient it is fed.

Prices stay non-negative in one of two ways:

* ``"multiplicative"``: the parameters are log-prices, ``log p <- log p + eta * z``;
  this is mirror descent with the entropy mirror map, Cheung–Cole–Devanur's
  multiplicative tâtonnement ``p <- p * (1 + eta * z)`` to first order.
* ``"additive"``: projected gradient descent, ``p <- max(p + eta * z, 0)``.

Convergence is measured by the projected residual ``r = where(p + z > 0, -z, p)``
(DESIGN.md, pitfalls): ``|r_j| = |z_j|`` for every good with a positive price, and a
free good (``p_j = 0`` with excess supply) counts as cleared. The loop stops when
``max_j |r_j| <= tol``, when prices stall (no price moved by more than ``stall_rtol``
relative for ``STALL_PATIENCE`` iterations), when the residual is not finite, or at
``max_iters``; ``converged`` is True only in the first case. Scarf (1960) showed that
tâtonnement need not converge at all: then ``converged`` is False and ``residual``
says by how much the market fails to clear.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from marketjax.mechanisms import implicit

PRICE_UPDATES = ("multiplicative", "additive")
STALL_PATIENCE = 10  # consecutive stalled iterations before giving up
DEFAULT_STALL_RTOL = 2.5e-7  # about two float32 ulps


@struct.dataclass
class Equilibrium:
    """The outcome of an equilibrium computation (one market; vmap adds axes in front).

    Attributes:
        prices: the final prices.
        allocation: each agent's bundle at ``prices`` (the mechanism's demand
            selection); ``tatonnement`` on a bare excess-demand function has no agents
            and returns shape ``[0, G]``.
        excess_demand: ``z = sum_i allocation_i - supply`` at ``prices``.
        converged: True iff the convergence test of the mechanism held at ``prices``.
        iterations: price updates performed.
        residual: the largest projected residual ``max_j |r_j|`` at ``prices``,
            reported whether or not the run converged.
    """

    prices: jax.Array  # f32[G]
    allocation: jax.Array  # f32[M, G]
    excess_demand: jax.Array  # f32[G]
    converged: jax.Array  # bool[]
    iterations: jax.Array  # i32[]
    residual: jax.Array  # f32[]


def projected_residual(prices: jax.Array, excess: jax.Array) -> jax.Array:
    """Projected gradient of the dual at unit step: ``p - max(p + z, 0)``.

    Written as ``where(p + z > 0, -z, p)`` to avoid cancellation (DESIGN.md).

    Args:
        prices: f[G] non-negative prices.
        excess: f[G] excess demand at ``prices``.

    Returns:
        f[G], equal to ``-z`` wherever ``p + z > 0``.
    """
    return jnp.where(prices + excess > 0, -excess, prices)


def max_residual(prices: jax.Array, excess: jax.Array) -> jax.Array:
    """``max_j |r_j|``, or ``inf`` if any price or excess demand is not finite.

    A NaN excess demand at a zero price would otherwise hide behind the ``where``.

    Args:
        prices: f[G].
        excess: f[G].

    Returns:
        f32[] the residual.
    """
    r = jnp.max(jnp.abs(projected_residual(prices, excess)))
    finite = jnp.all(jnp.isfinite(excess)) & jnp.all(jnp.isfinite(prices))
    return jnp.where(finite, r, jnp.inf)


class _LoopState(NamedTuple):
    params: jax.Array  # f32[G] prices or log-prices
    opt_state: Any  # the optax state
    prices: jax.Array  # f32[G]
    excess: jax.Array  # f32[G]
    allocation: jax.Array  # f32[M, G]
    carry: Any  # the demand function's warm start
    ok: jax.Array  # bool[] the demand function's own accuracy flag
    residual: jax.Array  # f32[]
    iteration: jax.Array  # i32[]
    stalled: jax.Array  # i32[] consecutive iterations without price movement


# demand_fn(prices, carry) -> (excess f[G], allocation f[M, G], carry, ok bool[])
DemandFn = Callable[[jax.Array, Any], tuple[jax.Array, jax.Array, Any, jax.Array]]


def run_tatonnement(
    demand_fn: DemandFn,
    p0: jax.Array,
    carry0: Any,
    *,
    optimizer: optax.GradientTransformation,
    price_update: str,
    tol: jax.Array | float,
    max_iters: jax.Array | int,
    grad_scale: jax.Array | float = 1.0,
    stall_rtol: jax.Array | float = DEFAULT_STALL_RTOL,
) -> tuple[Equilibrium, Any]:
    """The shared tâtonnement loop (a ``lax.while_loop``), for mechanisms to build on.

    Args:
        demand_fn: ``(prices f[G], carry) -> (z f[G], allocation f[M, G], carry, ok)``;
            ``ok`` is False while an inner solve is not accurate, which blocks
            convergence; ``carry`` warm-starts the next call.
        p0: f[G] initial prices (positive for ``"multiplicative"``).
        carry0: the first warm start.
        optimizer: the optax rule; it receives ``-z * grad_scale`` as the gradient.
        price_update: ``"multiplicative"`` (log-price parameters) or ``"additive"``
            (projected onto ``p >= 0``).
        tol: stop when ``max_j |r_j| <= tol`` (and ``ok``).
        max_iters: the most price updates.
        grad_scale: f[G] or scalar, rescales the gradient (e.g. ``1 / supply``).
        stall_rtol: a price "moved" if it changed by more than this, relative.

    Returns:
        ``(Equilibrium, carry)`` at the last prices; the residual is carried in the
        loop state, never recomputed afterwards.
    """
    multiplicative = price_update == "multiplicative"
    p0 = jnp.asarray(p0, jnp.float32)
    params0 = jnp.log(p0) if multiplicative else jnp.maximum(p0, 0.0)
    prices0 = jnp.exp(params0) if multiplicative else params0
    z0, alloc0, carry0, ok0 = demand_fn(prices0, carry0)
    tol = jnp.asarray(tol, jnp.float32)

    def residual_of(prices, z):
        return max_residual(prices, z)

    def done(s: _LoopState) -> jax.Array:
        return (
            (s.ok & (s.residual <= tol))
            | ~jnp.isfinite(s.residual)
            | (s.stalled >= STALL_PATIENCE)
        )

    def cond(s: _LoopState) -> jax.Array:
        return (s.iteration < max_iters) & ~done(s)

    def body(s: _LoopState) -> _LoopState:
        grads = -s.excess * grad_scale
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int counts
            updates, opt_state = optimizer.update(grads, s.opt_state, s.params)
        params = optax.apply_updates(s.params, updates)
        if multiplicative:
            prices = jnp.exp(params)
        else:
            params = jnp.maximum(params, 0.0)
            prices = params
        z, alloc, carry, ok = demand_fn(prices, s.carry)
        moved = jnp.any(jnp.abs(prices - s.prices) > stall_rtol * jnp.abs(s.prices))
        return _LoopState(
            params=params,
            opt_state=opt_state,
            prices=prices,
            excess=z,
            allocation=alloc,
            carry=carry,
            ok=ok,
            residual=residual_of(prices, z),
            iteration=s.iteration + 1,
            stalled=jnp.where(moved, 0, s.stalled + 1),
        )

    init = _LoopState(
        params=params0,
        opt_state=optimizer.init(params0),
        prices=prices0,
        excess=z0,
        allocation=alloc0,
        carry=carry0,
        ok=jnp.asarray(ok0),
        residual=residual_of(prices0, z0),
        iteration=jnp.zeros((), jnp.int32),
        stalled=jnp.zeros((), jnp.int32),
    )
    s = jax.lax.while_loop(cond, body, init)
    converged = s.ok & (s.residual <= tol) & jnp.all(jnp.isfinite(s.prices))
    eq = Equilibrium(
        prices=s.prices,
        allocation=s.allocation,
        excess_demand=s.excess,
        converged=converged,
        iterations=s.iteration,
        residual=s.residual,
    )
    return eq, s.carry


def check_price_update(price_update: str) -> None:
    """Raises ValueError unless ``price_update`` is one of ``PRICE_UPDATES``."""
    if price_update not in PRICE_UPDATES:
        raise ValueError(
            f"price_update must be one of {PRICE_UPDATES}, got {price_update!r}"
        )


def tatonnement(
    excess_demand: Callable[[jax.Array], Any],
    p0: jax.Array,
    *,
    step_size: float | jax.Array | None,
    max_iters: int | jax.Array,
    tol: float | jax.Array,
    optimizer: optax.GradientTransformation | None = None,
    price_update: str = "multiplicative",
    has_aux: bool = False,
    stall_rtol: float | jax.Array = DEFAULT_STALL_RTOL,
    params: Any = None,
) -> Equilibrium:
    """Generic tâtonnement for any excess-demand function ``z(p)`` or ``z(p, θ)``.

    The rule is ``optimizer`` (default ``optax.sgd(step_size)``) fed the gradient
    ``-z(p)``; with ``"multiplicative"`` it acts on log-prices (``p <- p exp(eta z)``
    for SGD), with ``"additive"`` on prices projected onto ``p >= 0``
    (``p <- max(p + eta z, 0)``). Converged means ``max_j |r_j| <= tol`` with
    ``r = where(p + z > 0, -z, p)``, which is ``max_j |z_j| <= tol`` when all prices
    are positive. Cycling (Scarf 1960), a step that is too large, or a stall leave
    ``converged`` False with the residual reported.

    Jittable (``excess_demand`` and ``optimizer`` are Python objects: close over them,
    build them once) and vmappable over a batch of ``p0`` or of parameters.

    Differentiable by the implicit function theorem (``implicit``): with ``params``
    given, ``excess_demand(p, params)`` is called and ``jax.grad`` / ``jax.jacobian``
    of the prices (allocation, excess demand) with respect to the array leaves of
    ``params`` solve ``∂z/∂p dp = -∂z/∂θ dθ`` on the positive-price goods. In the old
    form ``excess_demand(p)``, arrays it closes over that are being differentiated
    are found by ``jax.closure_convert`` and treated the same way. The derivative
    with respect to ``p0`` is zero (an equilibrium does not depend on where the
    search started). The tangent is NaN where ``converged`` is False or a
    zero-priced good clears exactly (a kink): never a silently wrong gradient.

    Args:
        excess_demand: ``p f[G] -> z f[G]``, or with ``has_aux=True``
            ``p -> (z f[G], allocation f[M, G])``; with ``params``,
            ``(p, params) -> ...``. Differentiable in ``p`` (for ``jax.jacfwd``).
        p0: f[G] starting prices, positive for ``"multiplicative"``.
        step_size: the SGD step; ignored (may be None) when ``optimizer`` is given.
        max_iters: the most price updates.
        tol: the excess-demand tolerance (absolute).
        optimizer: any optax transformation to use as the price rule.
        price_update: ``"multiplicative"`` or ``"additive"``.
        has_aux: whether ``excess_demand`` also returns an allocation.
        stall_rtol: relative price change below which an iteration counts as stalled.
        params: optional pytree of parameters passed to ``excess_demand``.

    Returns:
        ``Equilibrium``; its allocation is ``[0, G]`` unless ``has_aux``.

    Raises:
        ValueError: on a bad ``price_update``, ``p0`` that is not a vector, an
            ``excess_demand`` whose output is not shaped like ``p0`` (or an
            allocation not ``[M, G]``), or neither ``step_size`` nor ``optimizer``.
    """
    check_price_update(price_update)
    if jnp.ndim(p0) != 1:
        raise ValueError(f"p0 must have shape [G], got shape {jnp.shape(p0)}")
    if optimizer is None:
        if step_size is None:
            raise ValueError("step_size is required when no optimizer is given")
        optimizer = optax.sgd(step_size)
    num_goods = jnp.shape(p0)[0]
    p0 = jnp.asarray(p0, jnp.float32)
    if params is None:
        call, theta = _closure_converted(excess_demand, p0)
    else:
        call, theta = excess_demand, params
    frozen = jax.lax.stop_gradient(theta)

    def evaluate(prices, th):
        out = call(prices, th)
        if has_aux:
            z, alloc = out
        else:
            z, alloc = out, jnp.zeros((0, num_goods), jnp.float32)
        z = jnp.asarray(z, jnp.float32)
        if z.shape != (num_goods,):  # a scalar or [1] would broadcast silently
            raise ValueError(
                f"excess_demand must return shape [G]=({num_goods},), got {z.shape}"
            )
        if jnp.ndim(alloc) != 2 or jnp.shape(alloc)[1] != num_goods:
            raise ValueError(
                f"the allocation must have shape [M, {num_goods}], "
                f"got {jnp.shape(alloc)}"
            )
        return z, jnp.asarray(alloc, jnp.float32)

    def demand_fn(prices, carry):
        z, alloc = evaluate(prices, frozen)
        return z, alloc, carry, jnp.asarray(True)

    eq, _ = run_tatonnement(
        demand_fn,
        jax.lax.stop_gradient(p0),
        (),
        optimizer=optimizer,
        price_update=price_update,
        tol=tol,
        max_iters=max_iters,
        stall_rtol=stall_rtol,
    )
    return implicit.differentiable_tatonnement(
        eq, evaluate, theta, jax.lax.stop_gradient(jnp.asarray(tol, jnp.float32))
    )


def _closure_converted(excess_demand, p0):
    """``(p, consts) -> excess_demand(p)`` with differentiated closed-over arrays
    hoisted into ``consts`` (``jax.closure_convert``), so their gradients flow."""
    converted, consts = jax.closure_convert(excess_demand, p0)
    return (lambda p, th: converted(p, *th)), tuple(consts)
