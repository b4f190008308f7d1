"""Production economies on a layered DAG of firms, priced by tâtonnement (Eq. (1)).

The economy behind the seed paper's Eq. (1), ``∇α_b = Dα̂ · p``, and Wentworth's
"Competitive markets as distributed backprop" (2018):

* goods come in levels ``0..n``: level 0 is the raw endowment, level ``l+1`` is made
  by the firms of stage ``l``; a level holds ``m_l`` goods (scalar quantities);
* firm ``k`` of stage ``l`` has a scalar technology ``y_k = g_k(c_{·k})`` of the
  goods it reads (``reads_l[i, k]``); a good read by several firms is a joint
  product: a constant-returns *splitter* turns one unit of good ``i`` into one unit
  of each reader's copy ``c_{ik}``, so each copy has its own price ``q_{ik}``;
* the consumer buys the last level's goods and is quasilinear with a concave value
  ``V``; its willingness to pay for good ``j`` is ``∂V/∂y_j``.

Quantities are produced once (the forward pass: every splitter delivers one unit of
every copy per unit of input, and every firm runs on what it bought). Prices are
then found by tâtonnement, each price moving toward what its buyer is willing to pay
at the current prices (the inverse of the buyer's profit-maximising demand at the
quantity offered):

* an output good: ``p_n ← p_n + η (V'(y) - p_n)``;
* a copy, bought by firm ``k`` of stage ``l``: ``q_{ik} ← q + η (p_{l+1,k} ∂g_k/∂c_{ik}
  - q)`` (value of marginal product: the firm's first-order condition);
* a good of level ``l < n``, bought by its splitter: ``p_{l,i} ← p + η (Σ_k q_{ik} -
  p)`` (zero profit of a constant-returns firm).

Every technology knows its own derivative (:class:`Technology`); nothing here
differentiates the whole economy. With ``η = 1`` the prices settle exactly in
``2n + 1`` updates (one level per update, a DAG); a smaller step converges
geometrically and a tiny budget leaves it unconverged, reported as such. The loop
stops when every level's residual, relative to that level's price scale, is at most
``tol``, when the budget is spent, or when the prices stop changing (a float32
stall).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct


class Technology(NamedTuple):
    """The production functions of one stage's firms, with their derivatives.

    ``output(params, c f[m_in]) -> f[m_out]``: every firm's output when each copy it
    buys equals the input good (the splitters deliver one copy per reader).
    ``marginal(params, c f[m_in]) -> f[m_in, m_out]``: ``∂y_k/∂c_{ik}``, the firm's
    own marginal products (zero where ``reads`` is false).
    """

    output: Callable[[Any, jax.Array], jax.Array]
    marginal: Callable[[Any, jax.Array], jax.Array]


@struct.dataclass
class Economy:
    """One production economy (one sample); ``vmap`` :func:`equilibrium` for many."""

    params: tuple[Any, ...]  # per stage l: the technology parameters (pytree)
    reads: tuple[jax.Array, ...]  # per stage l: bool[m_l, m_{l+1}] firm k reads good i
    endowment: jax.Array  # f32[m_0] raw goods supplied
    consumer: Any  # pytree: the consumer's parameters (e.g. a target)
    technologies: tuple[Technology, ...] = struct.field(pytree_node=False)
    # marginal_value(consumer, y f[m_n]) -> f[m_n] = ∂V/∂y (V concave)
    marginal_value: Callable[[Any, jax.Array], jax.Array] = struct.field(
        pytree_node=False
    )


class Equilibrium(NamedTuple):
    """Quantities and prices of a production economy."""

    quantities: tuple[jax.Array, ...]  # levels 0..n: f32[m_l] goods produced
    prices: tuple[jax.Array, ...]  # levels 0..n: f32[m_l] goods' prices
    copy_prices: tuple[jax.Array, ...]  # stages 0..n-1: f32[m_l, m_{l+1}] q_{ik}
    residual: jax.Array  # f32[n+1] per level max |target - price| / price scale
    converged: jax.Array  # bool[] every level's residual <= tol
    iterations: jax.Array  # i32[] price updates made
    level_iterations: jax.Array  # i32[n+1] updates after which a level stayed settled


def produce(economy: Economy) -> tuple[jax.Array, ...]:
    """The market-clearing quantities: level ``l+1`` = stage ``l``'s output."""
    q = [jnp.asarray(economy.endowment, jnp.float32)]
    for tech, params in zip(economy.technologies, economy.params, strict=True):
        q.append(tech.output(params, q[-1]))
    return tuple(q)


def _relative(diff: jax.Array, target: jax.Array, price: jax.Array) -> jax.Array:
    scale = jnp.maximum(jnp.max(jnp.abs(target)), jnp.max(jnp.abs(price)))
    scale = jnp.maximum(scale, jnp.finfo(jnp.float32).tiny)
    return jnp.max(jnp.abs(diff)) / scale


class _Loop(NamedTuple):
    prices: tuple[jax.Array, ...]  # levels 0..n: f32[m_l]
    up: tuple[jax.Array, ...]  # stages: f32[m_{l+1}] bid level on positive products
    down: tuple[jax.Array, ...]  # stages: f32[m_{l+1}] bid level on negative ones
    good_t: tuple[jax.Array, ...]  # buyers' willingness to pay at `prices`
    up_t: tuple[jax.Array, ...]  # the same for the copies' bid levels
    down_t: tuple[jax.Array, ...]
    residual: jax.Array  # f32[n+1]
    it: jax.Array  # i32[]
    last_bad: jax.Array  # i32[n+1]
    stalled: jax.Array  # bool[]


def equilibrium(
    economy: Economy,
    *,
    step_size: float | jax.Array = 1.0,
    max_iters: int | jax.Array = 100,
    tol: float | jax.Array = 1e-6,
    free_disposal: bool = False,
) -> Equilibrium:
    """Equilibrium quantities and prices of one production economy, by tâtonnement.

    Copy prices are stored factored, exactly: the willingness to pay of firm ``k``
    for copy ``c_ik`` is ``p_k ∂g_k/∂c_ik``, a firm-wide price level times the
    marginal product, so starting from zero every copy price stays
    ``q_ik = M⁺_ik u_k + M⁻_ik v_k`` (``M = ∂g/∂c`` split by sign; ``u = v`` without
    disposal). Each step moves ``u_k, v_k`` toward the firm's price level, which
    moves every copy price toward its buyer's willingness to pay, as the dense
    update would, at the cost of a matrix-vector product per stage.

    Args:
      economy: the economy.
      step_size: ``η`` in ``p ← p + η (willingness to pay - p)``; 1 settles a DAG
        exactly in ``2n + 1`` updates, values in (0, 1) converge geometrically,
        values above 1 overshoot (and amplify rounding).
      max_iters: the budget of price updates.
      tol: stop once every level's residual, relative to the level's price scale
        ``max(|target|, |price|)``, is at most ``tol`` (float32: >= ~1e-6).
      free_disposal: if True, any good may be thrown away at no cost, so no price
        goes below zero: each price moves toward ``max(0, willingness to pay)``,
        the KKT multiplier of "use <= supply" (>= the buyer's marginal value; a
        corner where the good is a "bad" priced at 0). Default False: no disposal,
        and bads carry negative prices, as Eq. (1) needs.

    Returns:
      An :class:`Equilibrium`; ``converged`` is False if the budget ran out or the
      prices stalled first.
    """
    quantities = produce(economy)
    n = len(economy.technologies)
    marginals = tuple(
        jnp.where(economy.reads[i], tech.marginal(params, quantities[i]), 0.0)
        for i, (tech, params) in enumerate(
            zip(economy.technologies, economy.params, strict=True)
        )
    )
    pos = tuple(jnp.maximum(m, 0.0) for m in marginals)
    neg = tuple(jnp.minimum(m, 0.0) for m in marginals)
    col_pos = tuple(jnp.max(m, axis=0) for m in pos)  # f32[m_{l+1}]
    col_neg = tuple(jnp.max(-m, axis=0) for m in neg)
    value = economy.marginal_value(economy.consumer, quantities[-1])
    if free_disposal:
        value = jnp.maximum(value, 0.0)
    step = jnp.asarray(step_size, jnp.float32)

    def targets(prices, up, down):
        nxt = prices[1:]
        if free_disposal:
            up_t = tuple(jnp.maximum(p, 0.0) for p in nxt)
            down_t = tuple(jnp.minimum(p, 0.0) for p in nxt)
        else:
            up_t = down_t = nxt
        # a splitter pays what its copies fetch: sum_k q_ik
        if free_disposal:
            good_t = tuple(pos[i] @ up[i] + neg[i] @ down[i] for i in range(n))
        else:  # up == down throughout: one product per stage
            good_t = tuple(marginals[i] @ up[i] for i in range(n))
        return (*good_t, value), up_t, down_t

    def residual(prices, up, down):
        good_t, up_t, down_t = targets(prices, up, down)
        res = [_relative(t - p, t, p) for t, p in zip(good_t, prices, strict=True)]
        for i in range(n):  # a copy's residual counts toward its good's level
            diff = jnp.maximum(
                jnp.max(col_pos[i] * jnp.abs(up_t[i] - up[i])),
                jnp.max(col_neg[i] * jnp.abs(down_t[i] - down[i])),
            )
            scale = jnp.max(
                jnp.stack(
                    [
                        jnp.max(col_pos[i] * jnp.abs(up_t[i])),
                        jnp.max(col_neg[i] * jnp.abs(down_t[i])),
                        jnp.max(col_pos[i] * jnp.abs(up[i])),
                        jnp.max(col_neg[i] * jnp.abs(down[i])),
                        jnp.finfo(jnp.float32).tiny,
                    ]
                )
            )
            res[i] = jnp.maximum(res[i], diff / scale)
        return jnp.stack(res), good_t, up_t, down_t

    prices0 = tuple(jnp.zeros_like(q) for q in quantities)
    levels0 = tuple(jnp.zeros_like(q) for q in quantities[1:])
    res0, good_t0, up_t0, down_t0 = residual(prices0, levels0, levels0)
    init = _Loop(
        prices0,
        levels0,
        levels0,
        good_t0,
        up_t0,
        down_t0,
        res0,
        jnp.int32(0),
        jnp.where(res0 > tol, 0, -1).astype(jnp.int32),
        jnp.bool_(False),
    )

    def cond(c: _Loop):
        return (c.it < max_iters) & jnp.any(c.residual > tol) & ~c.stalled

    def move(old, target):
        new = tuple(p + step * (t - p) for p, t in zip(old, target, strict=True))
        moved = [jnp.any(a != b) for a, b in zip(new, old, strict=True)]
        return new, moved

    def body(c: _Loop):
        # every price moves toward its buyer's willingness to pay (the targets at
        # the current prices were computed with the residual, and carried)
        prices, m1 = move(c.prices, c.good_t)
        up, m2 = move(c.up, c.up_t)
        down, m3 = move(c.down, c.down_t)
        res, good_t, up_t, down_t = residual(prices, up, down)
        it = c.it + 1
        return _Loop(
            prices,
            up,
            down,
            good_t,
            up_t,
            down_t,
            res,
            it,
            jnp.where(res > tol, it, c.last_bad),
            ~jnp.any(jnp.stack(m1 + m2 + m3)),
        )

    out = jax.lax.while_loop(cond, body, init)
    copies = tuple(
        pos[i] * jnp.broadcast_to(out.up[i][None, :], pos[i].shape)
        + neg[i] * jnp.broadcast_to(out.down[i][None, :], neg[i].shape)
        for i in range(n)
    )
    return Equilibrium(
        quantities=quantities,
        prices=out.prices,
        copy_prices=copies,
        residual=out.residual,
        converged=jnp.all(out.residual <= tol),
        iterations=out.it,
        level_iterations=out.last_bad + 1,
    )


def chain(
    technologies: tuple[Technology, ...],
    params: tuple[Any, ...],
    endowment: jax.Array,
    marginal_value: Callable[[Any, jax.Array], jax.Array],
    consumer: Any = None,
) -> Economy:
    """An economy whose stages read every good of the previous level (dense DAG).

    Args:
      technologies: one :class:`Technology` per stage.
      params: one parameter pytree per stage.
      endowment: f32[m_0] raw goods.
      marginal_value: ``∂V/∂y`` of the consumer.
      consumer: the consumer's parameters.
    """
    quantities = produce(
        Economy(params, (), endowment, consumer, technologies, marginal_value)
    )
    reads = tuple(
        jnp.ones((a.shape[0], b.shape[0]), bool)
        for a, b in itertools.pairwise(quantities)
    )
    return Economy(params, reads, endowment, consumer, technologies, marginal_value)
