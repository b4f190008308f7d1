"""Q(λ) for agents that share a trunk: every owned sample learned, O(samples).

Used by :func:`marketjax.learners.q_lambda.q_lambda` when the family has
``features`` (the ``trunk`` family, ``agents/families.py``): the trunk reads each
sample once, the owner's head is gathered to it, and no agent needs a buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def sum_over_slices(fn: Callable[[tuple], Any], cols: tuple, max_rows: int) -> Any:
    """``fn(cols)`` summed over slices of at most ``max_rows`` rows (on CPU a
    [rows, 64] activation past ~4096 rows leaves the cache: issue 17).

    ``cols`` are arrays with one leading row axis of equal length; the last slice
    is padded with zero rows (``fn`` must give them no weight). A pytree ``fn``
    output is summed leaf by leaf. Without slicing it is ``fn(cols)`` itself.
    """
    rows = cols[0].shape[0]
    if rows <= max_rows:
        return fn(cols)
    j = -(-rows // max_rows)
    size = -(-rows // j)
    pad = j * size - rows
    sliced = tuple(
        jnp.pad(c, ((0, pad),) + ((0, 0),) * (c.ndim - 1)).reshape(
            (j, size, *c.shape[1:])
        )
        for c in cols
    )
    shape = jax.eval_shape(fn, tuple(c[0] for c in sliced))
    zero = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shape)

    def add(total, part):
        return jax.tree.map(jnp.add, total, fn(part)), None

    total, _ = jax.lax.scan(add, zero, sliced)
    return total


def trunk_loss(value_fn, features, heads, shared, obs, owner, output, y, weight, share):
    """Σ_j weight_j·(Q_{owner_j}(φ(obs_j))[output_j] − y_j)², each sample valued by
    its owner's head on the shared trunk's features.

    The heads' gradient is each agent's own mean squared error when ``weight`` is
    1 / (its owner's sample count): head i only meets its own samples. The
    gradient into the trunk is scaled by ``share`` (the owner's fraction of all
    owned samples) on its way back through the features, which turns Σ_i mean_i
    into the mean over all owned samples for the trunk; the forward value is
    unchanged (``stop_gradient(φ) + share·(φ − stop_gradient(φ))`` equals φ).

    Args:
      value_fn: ``(one agent's head, feature f32[H]) -> f32[O]``.
      features: ``(shared, obs f32[S, D]) -> f32[S, H]``.
      heads: every agent's head, leaves [N, ...].
      shared: the trunk's parameters.
      obs: f32[S, D]; owner i32[S] (clipped to a valid slot); output i32[S];
      y: f32[S] targets; weight, share: f32[S] (0 weight: not learned).

    Returns:
      f32[], the weighted sum of squared errors.
    """
    phi = features(shared, obs)  # f32[S, H]
    fixed = jax.lax.stop_gradient(phi)
    phi = fixed + share[:, None] * (phi - fixed)
    own_heads = jax.tree.map(lambda leaf: leaf[owner], heads)  # leaves [S, ...]
    values = jax.vmap(value_fn)(own_heads, phi)  # f32[S, O]
    taken = jnp.take_along_axis(values, output[:, None], axis=-1)[:, 0]
    return jnp.sum(weight * (taken - y) ** 2)
