"""Price discovery with quantities free: a second mechanism for Eq. (1).

``prices.compare`` (mechanism ``"recursion"``) freezes quantities at the forward pass
and moves each price toward its buyer's willingness to pay, one level per sweep: the
backprop recursion written as a market. Here nothing is frozen. In the production
economy of one sample (``economy.py``: neurons are firms, a splitter per activation,
a quasilinear consumer with value ``V = -loss``) every agent adjusts its *quantity*
by its marginal profit and every *price* moves on its market's excess demand
(Walras' tâtonnement; Marshall's quantity adjustment; together the Arrow–Hurwicz–
Uzawa (1958) gradient dynamics of the market's Lagrangian):

* firm ``k`` (layer ``l``) buys copies ``C_ik``: ``dC_ik = p_k σ'(a_k) W_ik - q_ik``,
  with ``a_k = Σ_i W_ik C_ik + b_k`` from what it actually bought;
* splitter ``i`` buys ``s_i`` units of ``h_i``: ``ds_i = Σ_k q_ik - p_i``;
* the consumer buys ``d`` outputs: ``dd = ∂V/∂d - p_out``;
* copy prices: ``dq_ik = C_ik - s_i``; activation prices: ``dp_i = s_i - h_i``
  (``h_i`` what firm ``i`` produced; the input ``x`` is an endowment); output price:
  ``dp_out = d - ŷ``.

Steps are extragradient (Korpelevich 1976: evaluate the field at a half step, move
by the field there), which converges on monotone (concave-convex) saddle problems
where plain simultaneous steps spiral. Quantities start at the forward pass, prices
at 0. A rest point clears every market with every first-order condition holding, so
its quantities are the forward pass and its prices are ``-∂loss/∂h`` (Eq. (1)).
Whether the dynamics *reach* it depends on the firms: a firm whose first-order point
is a profit minimum (tanh with ``p_k σ''(a_k) > 0``) walks away from it, and the
report says so (``converged``, ``quantity_error``); see docs/prices_vs_gradients.md.

``monopsony`` shows the other failure of Eq. (1): a buyer with market power.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from marketjax.embeddings import mlp
from marketjax.embeddings import prices as prices_mod
from marketjax.mechanisms import equilibrium


@struct.dataclass
class DiscoveryReport:
    """Discovered prices next to backprop's gradients (layers as in PriceReport)."""

    prices: tuple[jax.Array, ...]  # per layer l: f32[batch, width_l] discovered prices
    gradients: tuple[jax.Array, ...]  # per layer l: f32[batch, width_l] -dloss/dh_l
    input_prices: jax.Array  # f32[batch, in] prices of the raw goods
    rel_error: jax.Array  # f32[L] ||p_l - g_l|| / ||g_l|| over the batch
    cosine: jax.Array  # f32[L]
    quantity_error: (
        jax.Array
    )  # f32[L] max |quantity - forward pass| of layer l's output
    rel_error_converged: jax.Array  # f32[L] rel_error over converged samples only
    residual: jax.Array  # f32[batch] max |field| / price scale at the end
    sample_converged: jax.Array  # bool[batch] residual <= tol
    converged: jax.Array  # bool[] every sample's residual <= tol
    iterations: jax.Array  # i32[] extragradient steps (max over the batch)


def _field(layers, sigmas, x, target, marginal_value, z):
    """The adjustment field of one sample's economy (quantities up, prices on z)."""
    c, s, d, p, q = z
    produced, slopes = [x], []
    for (w, b), (sigma, dsigma), cl in zip(layers, sigmas, c, strict=True):
        a = jnp.sum(w * cl, axis=0) + b
        produced.append(sigma(a))
        slopes.append(dsigma(a))
    n = len(layers)
    dc = tuple(
        p[i + 1][None, :] * slopes[i][None, :] * layers[i][0] - q[i] for i in range(n)
    )
    ds = tuple(jnp.sum(q[i], axis=1) - p[i] for i in range(n))
    dd = marginal_value(target, d) - p[n]
    dq = tuple(c[i] - s[i][:, None] for i in range(n))
    dp = (*(s[i] - produced[i] for i in range(n)), d - produced[n])
    return (dc, ds, dd, dp, dq), produced


def _max_abs(tree) -> jax.Array:
    return jnp.max(jnp.stack([jnp.max(jnp.abs(v)) for v in jax.tree.leaves(tree)]))


def _discover_one(layers, x, target, step, max_iters, tol, *, activation, loss):
    n = len(layers)
    sigmas = tuple(
        mlp.ACTIVATIONS["identity" if i == n - 1 else activation] for i in range(n)
    )
    marginal_value = prices_mod.MARGINAL_VALUES[loss]
    h = [x]
    for (w, b), (sigma, _) in zip(layers, sigmas, strict=True):
        h.append(sigma(h[-1] @ w + b))
    z0 = (
        tuple(jnp.broadcast_to(h[i][:, None], layers[i][0].shape) for i in range(n)),
        tuple(h[:n]),
        h[n],
        tuple(jnp.zeros_like(v) for v in h),
        tuple(jnp.zeros_like(w) for w, _ in layers),
    )
    scale = jnp.maximum(
        jnp.max(jnp.abs(marginal_value(target, h[n]))), jnp.finfo(jnp.float32).tiny
    )
    field = functools.partial(_field, layers, sigmas, x, target, marginal_value)

    def move(z, f, eta):
        return jax.tree.map(lambda a, g: a + eta * g, z, f)

    def cond(state):
        _, res, it = state
        return (it < max_iters) & (res > tol) & jnp.isfinite(res)

    def body(state):
        z, _, it = state
        half = move(z, field(z)[0], step)
        z = move(z, field(half)[0], step)
        res = _max_abs(field(z)[0]) / scale
        return z, jnp.where(jnp.isnan(res), jnp.inf, res), it + 1

    res0 = _max_abs(field(z0)[0]) / scale
    z, res, it = jax.lax.while_loop(cond, body, (z0, res0, jnp.int32(0)))
    _, produced = field(z)
    qty = jnp.stack([jnp.max(jnp.abs(produced[i + 1] - h[i + 1])) for i in range(n)])
    return z[3], qty, res, it


@functools.partial(jax.jit, static_argnames=("activation", "loss"))
def _discover(layers, x, target, step, max_iters, tol, *, activation, loss):
    one = functools.partial(
        _discover_one,
        layers,
        step=step,
        max_iters=max_iters,
        tol=tol,
        activation=activation,
        loss=loss,
    )
    p, qty, res, it = jax.vmap(one)(x, target)
    grads = prices_mod.backprop_gradients(layers, x, target, activation, loss)
    found = p[1:]
    agree = [prices_mod._agreement(a, g) for a, g in zip(found, grads, strict=True)]
    ok = res <= tol  # bool[batch]
    masked = [
        prices_mod._agreement(
            jnp.where(ok[:, None], a, 0.0), jnp.where(ok[:, None], g, 0.0)
        )[0]
        for a, g in zip(found, grads, strict=True)
    ]
    return DiscoveryReport(
        prices=found,
        gradients=grads,
        input_prices=p[0],
        rel_error=jnp.stack([a[0] for a in agree]),
        cosine=jnp.stack([a[1] for a in agree]),
        quantity_error=jnp.max(qty, axis=0),
        rel_error_converged=jnp.where(jnp.any(ok), jnp.stack(masked), jnp.nan),
        residual=res,
        sample_converged=ok,
        converged=jnp.all(ok),
        iterations=jnp.max(it),
    )


def discover(
    params,
    x: jax.Array,
    y: jax.Array,
    *,
    activation: str = "tanh",
    loss: str = "mse",
    step_size: float = 0.3,
    max_iters: int = 5000,
    tol: float = 1e-5,
) -> DiscoveryReport:
    """Prices found by tâtonnement with free quantities, vs backprop's gradients.

    Args:
      params: MLP parameters (list of ``(W, b)`` or a flax Dense dict).
      x: f32[batch, in] inputs (one economy per row).
      y: targets as in ``prices.compare``.
      activation: hidden activation.
      loss: ``"mse"`` or ``"xent"``.
      step_size: the extragradient step ``η`` (quantities and prices alike).
      max_iters: the most extragradient steps.
      tol: stop when every field component is at most ``tol`` times the output's
        price scale ``max_j |∂V/∂ŷ_j|``.

    Returns:
      A :class:`DiscoveryReport`; ``converged`` False means the dynamics did not
      come to rest (the prices are then *not* claimed to be gradients).

    Raises:
      ValueError: as ``prices.compare`` for bad parameters, shapes or settings.
    """
    layers, x, target = prices_mod.check_inputs(
        params,
        x,
        y,
        activation=activation,
        loss=loss,
        step_size=step_size,
        max_iters=max_iters,
        tol=tol,
    )
    return _discover(
        layers,
        x,
        target,
        jnp.float32(step_size),
        jnp.int32(max_iters),
        jnp.float32(tol),
        activation=activation,
        loss=loss,
    )


@struct.dataclass
class MonopsonyReport:
    """A buyer valuing an input at ``V(a) = 2√a``, facing the supply ``P(a) = k a``."""

    competitive_price: jax.Array  # f32[] price-taking buyer: p = V'(a) = ∂W/∂a
    competitive_quantity: jax.Array  # f32[]
    monopsony_price: jax.Array  # f32[] the monopsonist's discovered price
    monopsony_quantity: jax.Array  # f32[]
    marginal_value: jax.Array  # f32[] V'(a) = ∂W/∂a at the monopsony quantity
    markdown: jax.Array  # f32[] monopsony_price / marginal_value (1/2 here)
    converged: jax.Array  # bool[] both tâtonnement runs converged


def monopsony(
    supply_slope: float | jax.Array = 1.0,
    *,
    step_size: float = 0.2,
    max_iters: int = 2000,
    tol: float = 1e-6,
) -> MonopsonyReport:
    """Eq. (1) with market power: a monopsonist pays half its marginal value.

    A seller supplies the input ``a`` at marginal cost ``P(a) = k a`` (it offers
    ``a = p / k`` at price ``p``). The buyer values it at ``V(a) = 2√a``. A price
    taker demands ``V'(a) = p``, ``a = 1/p²``; tâtonnement clears at
    ``p = V'(a) = ∂W/∂a`` (Eq. (1) holds). A monopsonist knows it moves the price
    and equates ``V'(a)`` with its marginal expenditure ``P(a) + a P'(a) = 2 k a``:
    at posted price ``p`` it demands ``1/(2p)²``. Tâtonnement on that demand clears
    at ``p = k a`` with ``V'(a) = 2 k a = 2p``: the price is *half* the marginal
    value (markdown ``ε/(1+ε) = 1/2`` for unit supply elasticity; Robinson 1933).
    For ``k = 1``: competitive ``a = p = 1``; monopsony ``a = p = 4^{-1/3} ≈ 0.63``.

    Args:
      supply_slope: ``k``.
      step_size: the multiplicative tâtonnement step.
      max_iters: the most price updates.
      tol: the excess-demand tolerance.

    Returns:
      A :class:`MonopsonyReport`.
    """
    k = jnp.asarray(supply_slope, jnp.float32)

    def excess(shade):
        def z(p, kk):
            return 1.0 / (shade * p) ** 2 - p / kk  # demand - supply

        return z

    run = functools.partial(
        equilibrium.tatonnement,
        p0=jnp.ones(1),
        step_size=step_size,
        max_iters=max_iters,
        tol=tol,
        params=k,
    )
    comp = run(excess(1.0))
    mono = run(excess(2.0))
    a_mono = mono.prices[0] / k
    marginal = 1.0 / jnp.sqrt(a_mono)
    return MonopsonyReport(
        competitive_price=comp.prices[0],
        competitive_quantity=comp.prices[0] / k,
        monopsony_price=mono.prices[0],
        monopsony_quantity=a_mono,
        marginal_value=marginal,
        markdown=mono.prices[0] / marginal,
        converged=comp.converged & mono.converged,
    )
