"""An adaptive tâtonnement step: Barzilai–Borwein as an optax transformation.

The Barzilai–Borwein (1988) step is the secant estimate of the inverse curvature,
``eta = <s, s> / <s, y>`` with ``s`` the last change of the parameters and ``y`` the
last change of the gradient. For the convex dual of a quasilinear economy the
gradient is ``-z(p)``, so ``eta`` is the inverse of the market's price sensitivity
``-dz/dp`` along the last move: the step a Walrasian auctioneer would take after
watching the market respond once. Used with a projection onto ``p >= 0`` this is the
spectral projected gradient method (Birgin, Martínez & Raydan 2000); on small
economies it reaches float32 accuracy in tens of iterations.

It follows optax's ``(init, update)`` convention, so any tâtonnement loop can use it.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax import tree_utils as otu


class BarzilaiBorweinState(NamedTuple):
    """State of ``scale_by_barzilai_borwein``."""

    prev_params: optax.Params  # like params: the parameters at the last update
    prev_grads: optax.Updates  # like params: the gradient at the last update
    step: jax.Array  # f32[] the step used last
    count: jax.Array  # i32[] updates so far


def scale_by_barzilai_borwein(
    initial_step: float | jax.Array | None = None,
    initial_move: float = 0.1,
    min_step: float = 1e-10,
    max_step: float = 1e10,
    growth: float = 2.0,
) -> optax.GradientTransformation:
    """Gradient descent with the Barzilai–Borwein step, clipped to a safe range.

    The first update uses ``initial_step``, or when it is None the step that moves the
    largest parameter by ``initial_move`` times ``max(1, max |params|)`` (a unit-free
    start: prices move 10% of their scale on the first round). Afterwards the step is
    ``<s, s> / <s, y>``; when ``<s, y> <= 0`` (no curvature seen along ``s``, e.g. a
    flat piece of a piecewise-linear demand) the previous step grows by ``growth``.

    Args:
        initial_step: the first step, or None for the relative rule.
        initial_move: the relative first move when ``initial_step`` is None.
        min_step: the smallest step allowed.
        max_step: the largest step allowed.
        growth: factor applied to the step when no positive curvature is seen.

    Returns:
        An optax ``GradientTransformation`` whose ``update`` needs ``params``.
    """

    def init_fn(params: optax.Params) -> BarzilaiBorweinState:
        return BarzilaiBorweinState(
            prev_params=otu.tree_zeros_like(params),
            prev_grads=otu.tree_zeros_like(params),
            step=jnp.asarray(
                jnp.nan if initial_step is None else initial_step, jnp.float32
            ),
            count=jnp.zeros((), jnp.int32),
        )

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("scale_by_barzilai_borwein needs params in update()")
        s = otu.tree_sub(params, state.prev_params)
        y = otu.tree_sub(updates, state.prev_grads)
        sy = otu.tree_vdot(s, y)
        ss = otu.tree_vdot(s, s)
        secant = ss / jnp.where(sy > 0, sy, 1.0)
        step = jnp.where(sy > 0, secant, growth * state.step)
        if initial_step is None:
            scale = jnp.maximum(1.0, otu.tree_max(jax.tree.map(jnp.abs, params)))
            g_max = otu.tree_max(jax.tree.map(jnp.abs, updates))
            first = initial_move * scale / jnp.where(g_max > 0, g_max, 1.0)
        else:
            first = state.step
        step = jnp.where(state.count == 0, first, step)
        step = jnp.clip(step, min_step, max_step)
        new_updates = otu.tree_scale(-step, updates)
        new_state = BarzilaiBorweinState(
            prev_params=params,
            prev_grads=updates,
            step=step,
            count=state.count + 1,
        )
        return new_updates, new_state

    return optax.GradientTransformation(init_fn, update_fn)
