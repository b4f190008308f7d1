"""Equ for coupled quadratic valuations: batched Walrasian equilibrium by Newton.

The wide market's agents (seed Def. 2.2, Algorithm 2) value a bundle ``x f[G] >= 0``
of divisible goods jointly,

    v_i(x) = q_i · x − ½ xᵀ C_i x,     C_i = c_i ((1 − ρ_i) I + ρ_i 11ᵀ),

positive definite iff ``c_i > 0`` and ``−1/(G − 1) < ρ_i < 1``. The cross-partial
``∂²v/∂x_g∂x_h = −c_i ρ_i`` makes the goods complements for ``ρ_i < 0`` (holding one
raises the marginal value of the others) and substitutes for ``ρ_i > 0``; ``ρ_i = 0``
is the separable economy of ``markets/wide_clear.py``.

**Demand** in closed form. With ``a = c(1 − ρ)``, ``b = cρ`` and ``S = Σ_g x_g``, the
KKT conditions of ``max_{x >= 0} (q − p)·x − ½ xᵀ C x`` give
``x_g = max(0, d_g − bS)/a`` (``d = q − p``), so ``S`` is the root of the strictly
increasing piecewise-linear ``f(S) = aS − Σ_g max(0, d_g − bS)`` (slope
``c(1 − ρ + kρ) > 0`` for k active goods). The active goods are the k largest
``d_g`` and ``S = Σ_{top k} d / (a + kb)``: all G + 1 candidates are computed from one
sort and the one with ``f(S) = 0`` is kept.

**Prices.** There is no free disposal (a control right must be held by someone;
prices may be negative, as in the deep market's auctions), so the equilibrium is the
unconstrained minimiser of the convex dual

    D(p) = Σ_i φ_i(q_i − p) + p · s,   φ_i(d) = max_{x >= 0} d·x − ½ xᵀ C_i x,

with ``∇D = −z(p)`` (excess demand). ``φ_i`` is piecewise quadratic, so a semismooth
Newton step is exact once the active sets are right: ``p ← p + t Δ`` with
``(H + R) Δ = z``, ``H = Σ_i ∂x_i/∂d`` (on agent i's active set ``A``,
``C_AA⁻¹ = (1/a)(I − b/(a + kb) 11ᵀ)``), a small ridge ``R`` (and, for a good nobody
demands, a cut to the best agent's margin plus the price cut that one marginal agent
would need to absorb the supply), solved by conjugate
gradients (no batched LAPACK call: DESIGN.md's XLA CPU deadlock). The step ``t``
halves until Armijo's test on ``D`` holds or the largest excess demand halves (near
the solution float32 cannot resolve ``D``'s decrease). Newton on a piecewise-linear
``z`` terminates in a few steps from a warm start (Qi & Sun 1993; Facchinei & Pang
2003, §7.5).

Convergence is reported honestly, as by ``equilibrium.quasilinear``: ``converged``
means ``max_g |z_g| <= tol · max(1, max_g s_g)`` at the returned prices; a run out
of iterations or a stalled line search returns ``converged = False`` with its
residual.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from marketjax.mechanisms.tatonnement import Equilibrium

_ARMIJO = 1e-4
_MIN_STEP = 2.0**-20
_RIDGE = 1e-6


def coupling_bounds(num_goods: int) -> tuple[float, float]:
    """The open interval of couplings ρ for which C = c((1−ρ)I + ρ11ᵀ) is PD."""
    return (-1.0 / (num_goods - 1) if num_goods > 1 else -1e30), 1.0


def curvature_matrix(curvature, coupling, num_goods: int) -> jax.Array:
    """C = c((1 − ρ) I + ρ 11ᵀ), f32[G, G] (for tests and valuations)."""
    eye = jnp.eye(num_goods, dtype=jnp.float32)
    return curvature * ((1.0 - coupling) * eye + coupling)


def inverse_form(q: jax.Array, curvature, coupling) -> jax.Array:
    """½ qᵀ C⁻¹ q for q f[..., G]: the unconstrained supremum of the valuation.

    ``C⁻¹ = (1/a)(I − b/(a + Gb) 11ᵀ)`` with ``a = c(1 − ρ)``, ``b = cρ``.
    """
    g = q.shape[-1]
    a = curvature * (1.0 - coupling)
    b = curvature * coupling
    total = jnp.sum(q, axis=-1)
    return 0.5 * (jnp.sum(q * q, axis=-1) - b / (a + g * b) * total**2) / a


def demand(d: jax.Array, curvature, coupling) -> jax.Array:
    """x = argmax_{x >= 0} d·x − ½ xᵀ C x (closed form, module docstring).

    Args:
      d: f32[..., G] net values q − p.
      curvature: c > 0, f32 broadcastable to ``d.shape[:-1]``.
      coupling: ρ in ``coupling_bounds(G)``, broadcastable likewise.

    Returns:
      f32[..., G] the unique demanded bundle.
    """
    g = d.shape[-1]
    lead = d.shape[:-1]
    a = jnp.broadcast_to(jnp.asarray(curvature * (1.0 - coupling), d.dtype), lead)
    b = jnp.broadcast_to(jnp.asarray(curvature * coupling, d.dtype), lead)
    a, b = a[..., None], b[..., None]
    ranked = -jnp.sort(-d, axis=-1)
    k = jnp.arange(1, g + 1, dtype=d.dtype).reshape((1,) * len(lead) + (g,))
    candidates = jnp.maximum(jnp.cumsum(ranked, axis=-1) / (a + k * b), 0.0)
    candidates = jnp.concatenate([jnp.zeros_like(candidates[..., :1]), candidates], -1)
    # f(S) at every candidate S (k = 0..G): the root has f = 0.
    gap = d[..., None, :] - b[..., None] * candidates[..., :, None]
    f = a * candidates - jnp.sum(jnp.maximum(gap, 0.0), axis=-1)
    best = jnp.argmin(jnp.abs(f), axis=-1)
    s = jnp.take_along_axis(candidates, best[..., None], axis=-1)
    return jnp.maximum(d - b * s, 0.0) / a


def _surplus(d, x, curvature, coupling):
    """φ(d) = d·x − ½ xᵀ C x at the demanded x (f32[...])."""
    a = curvature * (1.0 - coupling)
    b = curvature * coupling
    total = jnp.sum(x, axis=-1)
    return jnp.sum(d * x, -1) - 0.5 * (a * jnp.sum(x * x, -1) + b * total**2)


def _conjugate_gradient(h: jax.Array, r: jax.Array, iters: int) -> jax.Array:
    """Solves h Δ = r (h f32[G, G] SPD) by Jacobi-preconditioned CG."""
    inv_diag = 1.0 / jnp.diagonal(h)

    def body(_, carry):
        x, res, direction, rz = carry
        hd = h @ direction
        alpha = rz / jnp.maximum(jnp.dot(direction, hd), 1e-30)
        x = x + alpha * direction
        res = res - alpha * hd
        zz = inv_diag * res
        rz_new = jnp.dot(res, zz)
        direction = zz + rz_new / jnp.maximum(rz, 1e-30) * direction
        return x, res, direction, rz_new

    z0 = inv_diag * r
    init = (jnp.zeros_like(r), r, z0, jnp.dot(r, z0))
    return jax.lax.fori_loop(0, iters, body, init)[0]


def solve(
    q: jax.Array,
    curvature,
    coupling,
    supply: jax.Array,
    p0: jax.Array,
    *,
    tol: float | jax.Array = 1e-4,
    max_iters: int = 50,
) -> Equilibrium:
    """The Walrasian equilibrium of ONE market of N coupled quadratic agents.

    Args:
      q: f32[N, G] every agent's linear values q_i.
      curvature: c, f32[] or f32[N].
      coupling: ρ, f32[] or f32[N], in ``coupling_bounds(G)``.
      supply: f32[G] (or scalar) supply s > 0.
      p0: f32[G] warm-start prices (e.g. the previous step's).
      tol: relative excess-demand tolerance (module docstring).
      max_iters: the most trial points (demand evaluations after p0).

    Returns:
      :class:`Equilibrium` with prices f32[G], allocation f32[N, G], excess demand
      f32[G], converged, iterations (trial points) and residual max_g |z_g|.
    """
    n, g = q.shape
    c = jnp.broadcast_to(jnp.asarray(curvature, q.dtype), (n,))
    rho = jnp.broadcast_to(jnp.asarray(coupling, q.dtype), (n,))
    supply = jnp.broadcast_to(jnp.asarray(supply, q.dtype), (g,))
    limit = jnp.asarray(tol, q.dtype) * jnp.maximum(1.0, jnp.max(supply))
    a = c * (1.0 - rho)
    b = c * rho
    total_w = jnp.sum(1.0 / a)

    def evaluate(p):
        d = q - p[None, :]
        x = demand(d, c, rho)
        z = jnp.sum(x, axis=0) - supply
        dual = jnp.sum(_surplus(d, x, c, rho)) + jnp.dot(p, supply)
        return x, z, dual

    def direction(p, x, z):
        m = (x > 0.0).astype(q.dtype)  # [N, G] active goods
        k = jnp.sum(m, axis=-1)
        w = 1.0 / a
        beta = b / (a + k * b)
        diag = jnp.sum(w[:, None] * m, axis=0)
        h = jnp.diag(diag) - jnp.einsum("n,ng,nh->gh", w * beta, m, m)
        ridge = _RIDGE * total_w + jnp.where(diag > 0.0, 0.0, total_w / n)
        step = _conjugate_gradient(h + jnp.diag(ridge), z, 2 * g)
        # A good nobody demands: first cut its price to the best agent's margin
        # (d_g = b S for that agent), then as far as the ridge step would.
        margin = jnp.max(q - p[None, :] - (b * jnp.sum(x, -1))[:, None], axis=0)
        return jnp.where(diag > 0.0, step, jnp.minimum(margin, 0.0) + step)

    x0, z0, d0 = evaluate(p0)
    res0 = jnp.max(jnp.abs(z0))
    init = (p0, x0, z0, d0, res0, direction(p0, x0, z0), jnp.float32(1.0), jnp.int32(0))

    def cond(s):
        *_, res, _, t, it = s
        return (res > limit) & (it < max_iters) & (t >= _MIN_STEP)

    def body(s):
        p, x, z, dual, res, step, t, it = s
        trial = p + t * step
        xt, zt, dt = evaluate(trial)
        rt = jnp.max(jnp.abs(zt))
        ok = jnp.isfinite(dt) & (
            (dt <= dual - _ARMIJO * t * jnp.dot(z, step)) | (rt <= 0.5 * res)
        )
        new_step = direction(trial, xt, zt)
        pick = lambda new, old: jnp.where(ok, new, old)
        return (
            pick(trial, p),
            pick(xt, x),
            pick(zt, z),
            pick(dt, dual),
            pick(rt, res),
            pick(new_step, step),
            jnp.where(ok, 1.0, 0.5 * t),
            it + 1,
        )

    p, x, z, _, res, _, _, it = jax.lax.while_loop(cond, body, init)
    return Equilibrium(
        prices=p,
        allocation=x,
        excess_demand=z,
        converged=res <= limit,
        iterations=jnp.asarray(it, jnp.int32),
        residual=res,
    )


def solve_batch(q, curvature, coupling, supply, p0, *, tol=1e-4, max_iters=50):
    """:func:`solve` for B markets at once: q f32[B, N, G], p0 f32[B, G].

    ``curvature``, ``coupling`` and ``supply`` are shared by the B markets.
    Returns an :class:`Equilibrium` with a leading B axis on every field.
    """
    return jax.vmap(
        lambda qb, pb: solve(
            qb, curvature, coupling, supply, pb, tol=tol, max_iters=max_iters
        )
    )(q, p0)
