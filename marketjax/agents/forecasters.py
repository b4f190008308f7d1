"""Weak forecasters: the traders of a prediction market (seed 004).

Each forecaster is a multinomial logistic regression that sees only a random subset of
the features (a "small logistic model on a subset of features"), so each is weak and
the population is diverse; a few noise forecasters, whose beliefs are random and
confident, test that a market learns whom not to trust. Written for one forecaster and
lifted to the population with ``vmap`` (STYLE.md point 4).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class Forecasters(NamedTuple):
    """A population of N masked logistic regressions over D features, K classes."""

    mask: jax.Array  # f32[N, D], 1 where forecaster i sees feature d
    weights: jax.Array  # f32[N, D, K]
    bias: jax.Array  # f32[N, K]


def random_masks(key: jax.Array, num: int, num_features: int, sizes) -> jax.Array:
    """f32[num, D] masks: forecaster i sees ``sizes[i % len(sizes)]`` features."""
    rows = []
    for i, k in enumerate(jax.random.split(key, num)):
        size = int(sizes[i % len(sizes)])
        chosen = jax.random.permutation(k, num_features)[:size]
        rows.append(jnp.zeros(num_features).at[chosen].set(1.0))
    return jnp.stack(rows)


def _loss(params, mask, x, y, l2):
    weights, bias = params
    logits = (x * mask[None]) @ weights + bias[None]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return nll + 0.5 * l2 * jnp.sum(weights**2)


def fit(
    mask: jax.Array,
    x: jax.Array,
    y: jax.Array,
    num_classes: int,
    *,
    l2: float = 1e-3,
    steps: int = 300,
    learning_rate: float = 0.1,
) -> Forecasters:
    """Fits every forecaster on (x f[E, D], y i32[E]) by full-batch Adam.

    Args:
      mask: f32[N, D] which features each forecaster sees.
      x: f32[E, D] standardised features.
      y: i32[E] labels in [0, num_classes).
      num_classes: K.
      l2: ridge penalty on the weights.
      steps, learning_rate: Adam iterations and step size.
    """
    opt = optax.adam(learning_rate)
    d = x.shape[1]

    def one(m):
        params = (jnp.zeros((d, num_classes)), jnp.zeros(num_classes))

        def body(carry, _):
            params, opt_state = carry
            grads = jax.grad(_loss)(params, m, x, y, l2)
            updates, opt_state = opt.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, steps)
        return params

    weights, bias = jax.jit(jax.vmap(one))(mask)
    return Forecasters(mask, weights * mask[..., None], bias)


def beliefs(forecasters: Forecasters, x: jax.Array) -> jax.Array:
    """Each forecaster's class probabilities: f32[E, N, K] for x f32[E, D]."""
    logits = (
        jnp.einsum("ed,nd,ndk->enk", x, forecasters.mask, forecasters.weights)
        + forecasters.bias[None]
    )
    return jax.nn.softmax(logits, axis=-1)


def noise_beliefs(key: jax.Array, num_examples: int, num: int, num_classes: int,
                  *, confidence: float = 3.0) -> jax.Array:  # fmt: skip
    """f32[E, num, K] random confident beliefs, fresh per example (pure noise)."""
    z = jax.random.normal(key, (num_examples, num, num_classes))
    return jax.nn.softmax(confidence * z, axis=-1)
