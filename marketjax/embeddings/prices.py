"""Market prices vs backprop gradients: the seed paper's Eq. (1) on an MLP.

``compare(params, x, y)`` builds one production economy per sample
(:mod:`marketjax.embeddings.economy`, after Wentworth 2018, "Competitive markets as
distributed backprop"):

* goods: the input ``x`` (the raw endowment), every activation ``h_l`` of every
  layer, one copy of each activation per neuron that reads it, and the outputs;
* firms: each neuron ``k`` of layer ``l`` is a firm with technology
  ``h_{l,k} = σ(Σ_i W_ik c_ik + b_k)`` (linear for the output layer), buying copies
  ``c_ik`` of the previous layer's activations; each activation has a
  constant-returns splitter (one unit in, one unit of every copy out);
* the consumer buys the outputs and is quasilinear with value ``-loss(ŷ, y)``.

Equilibrium prices come from the market mechanism (tâtonnement: each price moves
toward what its buyer is willing to pay), never from ``jax.grad`` on the network.
At an interior equilibrium with price-taking firms they equal the backprop
gradients, ``p_l = -∂loss/∂h_l`` (Eq. (1), ``∇α_b = Dα̂ · p``), which the report
computes separately with ``jax.grad`` for comparison.

Losses (per sample): ``"mse"`` is ``0.5 ||ŷ - y||²`` with ``y f[batch, out]``;
``"xent"`` is the softmax cross-entropy ``logsumexp(ŷ) - ŷ·y`` with ``y`` either
integer labels ``i[batch]`` in ``[0, out)`` or one-hot (or any probability) rows
``f[batch, out]``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from marketjax.embeddings import economy as econ
from marketjax.embeddings import mlp

LOSSES = ("mse", "xent")


@struct.dataclass
class PriceReport:
    """Market prices of every layer's activations next to backprop's gradients.

    Layer ``l`` (0-based) is the output of the network's ``l``-th dense layer: the
    hidden layers' activations, then the network output (``L`` = number of layers).
    """

    prices: tuple[jax.Array, ...]  # per layer l: f32[batch, width_l] market prices
    gradients: tuple[jax.Array, ...]  # per layer l: f32[batch, width_l] -dloss/dh_l
    input_prices: jax.Array  # f32[batch, in] prices of the raw goods (the inputs x)
    rel_error: jax.Array  # f32[L] ||p_l - g_l|| / ||g_l|| over the batch
    cosine: jax.Array  # f32[L] cosine similarity of p_l and g_l over the batch
    residual: jax.Array  # f32[L] worst relative price residual over the batch
    layer_converged: jax.Array  # bool[L] residual_l <= tol for every sample
    layer_iterations: jax.Array  # i32[L] updates until layer l settled (max over batch)
    converged: jax.Array  # bool[] every layer of every sample's economy converged
    iterations: jax.Array  # i32[] price updates made (max over the batch)


@functools.cache
def neuron_technology(activation: str, linear: bool) -> econ.Technology:
    """The firms of one layer: ``h_k = σ(c @ W + b)_k`` and ``σ'(a_k) W_ik``."""
    sigma, dsigma = mlp.ACTIVATIONS["identity" if linear else activation]

    def output(params, c):
        w, b = params
        return sigma(c @ w + b)

    def marginal(params, c):
        w, b = params
        return w * jnp.broadcast_to(dsigma(c @ w + b)[None, :], w.shape)

    return econ.Technology(output, marginal)


def _mse_value(target: jax.Array, y: jax.Array) -> jax.Array:
    return target - y  # ∂/∂y of -0.5 ||y - target||²


def _xent_value(target: jax.Array, y: jax.Array) -> jax.Array:
    return target - jax.nn.softmax(y) * jnp.sum(target)  # ∂/∂y of -xent


MARGINAL_VALUES = {"mse": _mse_value, "xent": _xent_value}


def per_sample_loss(loss: str, out: jax.Array, target: jax.Array) -> jax.Array:
    """``f32[batch]`` per-sample loss; ``target f32[batch, out]`` (one-hot for xent)."""
    if loss == "mse":
        return 0.5 * jnp.sum((out - target) ** 2, axis=-1)
    logz = jax.nn.logsumexp(out, axis=-1)
    return logz * jnp.sum(target, axis=-1) - jnp.sum(out * target, axis=-1)


def mlp_economy(
    layers: mlp.Layers, x: jax.Array, target: jax.Array, activation: str, loss: str
) -> econ.Economy:
    """The production economy of one sample ``x f[in]`` with ``target f[out]``."""
    n = len(layers)
    techs = tuple(neuron_technology(activation, i == n - 1) for i in range(n))
    return econ.chain(techs, tuple(layers), x, MARGINAL_VALUES[loss], target)


def backprop_gradients(layers, x, target, activation, loss) -> tuple[jax.Array, ...]:
    """``-∂loss/∂h_l`` for every layer output, by ``jax.grad`` (the reference)."""
    sigma = mlp.ACTIVATIONS[activation][0]

    def total(deltas):
        h = x
        for i, (w, b) in enumerate(layers):
            a = mlp.add_bias(h @ w, b)
            h = (a if i == len(layers) - 1 else sigma(a)) + deltas[i]
        return jnp.sum(per_sample_loss(loss, h, target))

    deltas = tuple(jnp.zeros((x.shape[0], w.shape[1]), jnp.float32) for w, _ in layers)
    return tuple(-g for g in jax.grad(total)(deltas))


def _agreement(p: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(rel_error, cosine)``; both NaN if either side holds NaN or inf (a NaN
    would otherwise fall through the ``where`` guards and read as agreement)."""
    finite = jnp.all(jnp.isfinite(p)) & jnp.all(jnp.isfinite(g))
    rel, cos = _agreement_finite(p, g)
    return jnp.where(finite, rel, jnp.nan), jnp.where(finite, cos, jnp.nan)


def _agreement_finite(p: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    norm_p, norm_g = jnp.linalg.norm(p), jnp.linalg.norm(g)
    diff = jnp.linalg.norm(p - g)
    rel = jnp.where(
        norm_g > 0, diff / jnp.maximum(norm_g, 1e-30), jnp.where(diff > 0, jnp.inf, 0.0)
    )
    den = norm_p * norm_g
    cos = jnp.where(
        den > 0,
        jnp.sum(p * g) / jnp.maximum(den, 1e-30),
        jnp.where((norm_p == 0) & (norm_g == 0), 1.0, 0.0),
    )
    return rel, jnp.clip(cos, -1.0, 1.0)


@functools.partial(jax.jit, static_argnames=("activation", "loss", "free_disposal"))
def _compare(
    layers, x, target, step_size, max_iters, tol, *, activation, loss, free_disposal
):
    def one(xi, ti):
        eco = mlp_economy(layers, xi, ti, activation, loss)
        return econ.equilibrium(
            eco,
            step_size=step_size,
            max_iters=max_iters,
            tol=tol,
            free_disposal=free_disposal,
        )

    eq = jax.vmap(one)(x, target)
    grads = backprop_gradients(layers, x, target, activation, loss)
    prices = eq.prices[1:]
    agree = [_agreement(p, g) for p, g in zip(prices, grads, strict=True)]
    residual = jnp.max(eq.residual[:, 1:], axis=0)
    return PriceReport(
        prices=prices,
        gradients=grads,
        input_prices=eq.prices[0],
        rel_error=jnp.stack([a[0] for a in agree]),
        cosine=jnp.stack([a[1] for a in agree]),
        residual=residual,
        layer_converged=jnp.all(eq.residual[:, 1:] <= tol, axis=0),
        layer_iterations=jnp.max(eq.level_iterations[:, 1:], axis=0),
        converged=jnp.all(eq.converged),
        iterations=jnp.max(eq.iterations),
    )


def _targets(y, loss: str, batch: int, width: int) -> jax.Array:
    y = jnp.asarray(y)
    if loss == "xent" and y.shape == (batch,):
        if not jnp.issubdtype(y.dtype, jnp.integer):
            raise ValueError("xent labels of shape [batch] must be integers")
        if not isinstance(y, jax.core.Tracer) and (
            np.any(np.asarray(y) < 0) or np.any(np.asarray(y) >= width)
        ):
            raise ValueError(f"xent labels must lie in [0, {width})")
        return jax.nn.one_hot(y, width, dtype=jnp.float32)
    if y.shape != (batch, width):
        want = f"[{batch}, {width}]" + (
            f" or labels [{batch}]" if loss == "xent" else ""
        )
        raise ValueError(f"y has shape {y.shape}; expected {want}")
    return y.astype(jnp.float32)


MECHANISMS = ("recursion", "discovery")


def check_inputs(params, x, y, *, activation, loss, step_size, max_iters, tol):
    """Validates ``compare``'s arguments; returns ``(layers, x f32, target f32)``."""
    mlp.check_activation(activation)
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")
    if max_iters < 0:
        raise ValueError(f"max_iters must be >= 0, got {max_iters}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    layers = mlp.as_layers(params)
    x = jnp.asarray(x, jnp.float32)
    if x.ndim != 2 or x.shape[1] != layers[0][0].shape[0]:
        raise ValueError(
            f"x has shape {x.shape}; expected [batch, {layers[0][0].shape[0]}]"
        )
    target = _targets(y, loss, x.shape[0], layers[-1][0].shape[1])
    return layers, x, target


def compare(
    params,
    x: jax.Array,
    y: jax.Array,
    *,
    activation: str = "tanh",
    loss: str = "mse",
    step_size: float = 1.0,
    max_iters: int = 100,
    tol: float = 1e-6,
    free_disposal: bool = False,
    mechanism: str = "recursion",
) -> PriceReport:
    """Equilibrium prices of the network's production economy vs backprop gradients.

    Args:
      params: MLP parameters (list of ``(W, b)`` or a flax Dense dict).
      x: f32[batch, in] inputs (one economy per row).
      y: targets: f32[batch, out] for ``"mse"``; for ``"xent"`` integer labels
        i32[batch] or one-hot rows f32[batch, out].
      activation: hidden activation (tanh, softplus, relu, sigmoid, identity).
      loss: ``"mse"`` or ``"xent"``.
      step_size: the tâtonnement step ``η`` (1 settles exactly in ``2L + 1``
        updates).
      max_iters: the budget of price updates.
      tol: convergence tolerance on each layer's residual relative to its price
        scale.
      free_disposal: let firms and the consumer throw goods away (prices >= 0).
        Breaks Eq. (1) wherever a gradient is negative: such a price is the KKT
        multiplier 0 instead (see docs/prices_vs_gradients.md).
      mechanism: ``"recursion"`` (default): quantities frozen at the forward pass,
        each price moves toward its buyer's willingness to pay (``economy.py``);
        ``"discovery"``: quantities free, firms follow marginal profit and prices
        follow excess demand (``discovery.py``; use e.g. ``step_size=0.3``,
        ``max_iters=5000``, ``tol=1e-5``). ``free_disposal`` is recursion-only.

    Returns:
      A :class:`PriceReport`. NaN or inf in ``x``, ``y`` or ``params`` gives NaN
      ``rel_error`` and ``cosine`` for the affected layers and ``converged=False``
      (never a reading of perfect agreement). Under ``"discovery"`` the per-layer
      ``residual`` / ``layer_converged`` / ``layer_iterations`` repeat the
      economy-wide values (its field does not split by layer).

    Raises:
      ValueError: bad parameters, shapes, labels, activation, loss, mechanism or
        mechanism settings.
    """
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
    if mechanism == "discovery":
        if free_disposal:
            raise ValueError("free_disposal applies to mechanism='recursion' only")
        from marketjax.embeddings import discovery  # discovery imports this module

        rep = discovery.discover(
            params,
            x,
            y,
            activation=activation,
            loss=loss,
            step_size=step_size,
            max_iters=max_iters,
            tol=tol,
        )
        n = len(rep.prices)
        worst = jnp.max(rep.residual)
        return PriceReport(
            prices=rep.prices,
            gradients=rep.gradients,
            input_prices=rep.input_prices,
            rel_error=rep.rel_error,
            cosine=rep.cosine,
            residual=jnp.full((n,), worst),
            layer_converged=jnp.full((n,), rep.converged),
            layer_iterations=jnp.full((n,), rep.iterations),
            converged=rep.converged,
            iterations=rep.iterations,
        )
    layers, x, target = check_inputs(
        params,
        x,
        y,
        activation=activation,
        loss=loss,
        step_size=step_size,
        max_iters=max_iters,
        tol=tol,
    )
    return _compare(
        layers,
        x,
        target,
        jnp.float32(step_size),
        jnp.int32(max_iters),
        jnp.float32(tol),
        activation=activation,
        loss=loss,
        free_disposal=bool(free_disposal),
    )
