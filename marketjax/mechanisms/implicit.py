"""Implicit differentiation of equilibria: the implicit function theorem on Equ.

An equilibrium solver ends in a ``lax.while_loop``, which reverse-mode AD cannot go
through, and unrolling it would differentiate the *path* of the iterations rather
than the equilibrium. Instead the equilibrium conditions ``F(p*, θ) = 0`` are
differentiated (implicit function theorem; Krantz & Parks 2002, and for argmin
layers Amos & Kolter 2017, Blondel et al. 2022 "Efficient and modular implicit
differentiation"):

    ∂F/∂p dp + ∂F/∂θ dθ = 0   =>   dp = -(∂F/∂p)^{-1} ∂F/∂θ dθ.

For a market, ``F`` is the excess demand on the *active set*: a good with a positive
price clears (``z_j = 0``), a free good keeps its zero price (``dp_j = 0``). The
partition is the one the solvers' residual uses, ``p_j + z_j > 0``
(``tatonnement.projected_residual``). A zero-priced good whose excess supply is
within the tolerance of zero sits on a kink (strict complementarity fails); there
the price map has no derivative and the tangent is NaN.

Mechanics: the solver runs on ``stop_gradient`` inputs; :func:`attach` returns its
outputs unchanged but carries a ``jax.custom_jvp`` rule computing their tangents from
the conditions. The rule is linear in the input tangents, matrices that depend only
on the primal point are inverted in the forward pass by :func:`dense_solve` (our own
Gauss–Jordan elimination: no LAPACK custom call, safe under ``vmap`` on CPU, see
DESIGN.md pitfalls), so JAX transposes it and ``jax.grad``, ``jax.jacrev``,
``jax.jacfwd`` and ``jax.jvp`` all work, under ``jit`` and ``vmap``.

Unconverged points are *flagged*: every tangent is multiplied by 1 where the solver
converged and by NaN where it did not, so ``jax.grad`` through an unconverged
equilibrium returns NaN (never a silently wrong number); check ``eq.converged``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def dense_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """Solves ``a x = b`` by Gauss–Jordan elimination with partial pivoting.

    Written with ``lax`` ops only (no LAPACK custom call), so it is safe inside
    ``vmap`` on CPU, where jaxlib's batched LAPACK can deadlock XLA's thread pool. It
    is meant for small systems (tens of unknowns) evaluated at a primal point; it is
    not itself differentiated. A singular matrix gives inf/NaN, which the callers
    propagate as a flagged (NaN) gradient.

    Args:
        a: f[n, n].
        b: f[n] or f[n, k].

    Returns:
        ``x`` shaped like ``b``.
    """
    vector = b.ndim == 1
    rhs = b[:, None] if vector else b
    n = a.shape[0]
    ab = jnp.concatenate([a, rhs], axis=1)  # f[n, n + k]
    rows = jnp.arange(n)

    def step(k, ab):
        col = jnp.where(rows >= k, jnp.abs(ab[:, k]), -1.0)
        piv = jnp.argmax(col)
        row_k, row_p = ab[k], ab[piv]
        ab = ab.at[piv].set(row_k).at[k].set(row_p)
        pivot_row = ab[k] / ab[k, k]
        factors = jnp.where(rows == k, 0.0, ab[:, k])
        ab = ab - factors[:, None] * pivot_row[None, :]
        return ab.at[k].set(pivot_row)

    ab = jax.lax.fori_loop(0, n, step, ab)
    x = ab[:, n:]
    return x[:, 0] if vector else x


def inverse(a: jax.Array) -> jax.Array:
    """``a^{-1}`` by :func:`dense_solve` (f[n, n] -> f[n, n])."""
    return dense_solve(a, jnp.eye(a.shape[0], dtype=a.dtype))


def flag(ok: jax.Array) -> jax.Array:
    """f32[] 1.0 where ``ok`` else NaN: multiply tangents by it (a ``where`` would
    transpose to a zero cotangent, hiding the flag from ``jax.grad``)."""
    return jnp.where(ok, 1.0, jnp.nan).astype(jnp.float32)


def active_set(
    prices: jax.Array, excess: jax.Array, tol: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The positive-price goods and whether the partition is strict.

    Args:
        prices: f[G].
        excess: f[G] excess demand at ``prices``.
        tol: f32[] the absolute tolerance the solver used.

    Returns:
        ``(positive bool[G], strict bool[])``: ``positive`` is ``p + z > 0``;
        ``strict`` is False when a zero-priced good's excess supply is within
        ``tol`` of zero (a kink of the price map).
    """
    positive = prices + excess > 0
    kink = ~positive & (excess > -tol)
    return positive, ~jnp.any(kink)


def price_tangent(
    jac_p: jax.Array, dz_theta: jax.Array, positive: jax.Array
) -> jax.Array:
    """``dp`` solving ``z_p dp + dz_θ = 0`` on positive goods, ``dp = 0`` elsewhere.

    Args:
        jac_p: f[G, G] ``∂z/∂p`` at the equilibrium (primal).
        dz_theta: f[G] ``∂z/∂θ · dθ`` (the tangent).
        positive: bool[G] the positive-price goods.

    Returns:
        f[G] the price tangent.
    """
    both = positive[:, None] & positive[None, :]
    reduced = jnp.where(both, jac_p, 0.0) + jnp.diag(jnp.where(positive, 0.0, 1.0))
    return -(inverse(reduced) @ jnp.where(positive, dz_theta, 0.0))


def flag_tree(tree: Any, scale: jax.Array) -> Any:
    """Multiplies every leaf of a tangent tree by ``scale`` (see :func:`flag`).

    Applied to the *input* tangents too, so a flagged point gives NaN cotangents
    even for inputs the masked equations do not reach (a ``where`` transposes to 0).
    """
    return jax.tree.map(lambda t: t * scale.astype(t.dtype), tree)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def attach(rule: Callable[..., Any], out: Any, aux: Any, theta: Any) -> Any:
    """Returns ``out``; its tangent is ``rule(out, aux, theta, dtheta)``.

    ``out`` and ``aux`` must come from a solver run on ``stop_gradient`` inputs
    (their own tangents are ignored); ``theta`` holds every differentiable input.
    ``rule`` must be linear in ``dtheta`` and return a tree shaped like ``out``.
    """
    del rule, aux, theta
    return out


@attach.defjvp
def _attach_jvp(rule, primals, tangents):
    out, aux, theta = primals
    _, _, dtheta = tangents
    return out, rule(out, aux, theta, dtheta)


def differentiable_tatonnement(
    eq: Any, evaluate: Callable[[jax.Array, Any], Any], theta: Any, tol: jax.Array
) -> Any:
    """``eq`` (an ``Equilibrium``) with implicit tangents w.r.t. ``theta``.

    Args:
        eq: the equilibrium found with ``theta`` frozen (``stop_gradient``).
        evaluate: ``(p f[G], theta) -> (z f[G], allocation f[M, G])``.
        theta: the pytree of differentiable parameters.
        tol: f32[] the absolute residual tolerance of the run.

    Returns:
        The same ``Equilibrium`` carrying tangents, NaN where not converged.
    """

    def rule(out, aux, th, dth):
        p, z, _ = out
        ok = aux
        jac = jax.jacfwd(lambda q: evaluate(q, th)[0])(p)  # f[G, G]
        positive, strict = active_set(p, z, tol)
        scale = flag(ok & strict & jnp.all(jnp.isfinite(jac)))
        dth = flag_tree(dth, scale)
        _, (dz_theta, _) = jax.jvp(lambda t: evaluate(p, t), (th,), (dth,))
        dp = price_tangent(jac, dz_theta, positive) * scale
        _, (dz, dalloc) = jax.jvp(evaluate, (p, th), (dp, dth))
        return dp, dz, dalloc

    out = (eq.prices, eq.excess_demand, eq.allocation)
    prices, excess, allocation = attach(rule, out, eq.converged, theta)
    return eq.replace(prices=prices, excess_demand=excess, allocation=allocation)
