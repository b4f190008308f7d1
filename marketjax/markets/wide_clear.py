"""The wide market's pure kernels: Equ in closed form, budget caps, property rights.

Valuations (seed Def. 2.2, "α_b is an agent's valuation function over bundles"):
agent ``i`` values a bundle ``x ∈ R^G_+`` of control rights at

    v_i(x) = Σ_g q_ig x_g − (c/2) ||x||²,

with ``q_ig`` its learned bid per unit of good ``g`` and ``c > 0`` a fixed curvature
(diminishing returns: without it, demand is set-valued and Equ has no unique answer).
Such an economy is separable across goods and Equ has a closed form: agent ``i``
demands ``x_ig(p) = max(0, q_ig − p_g) / c`` and the market for ``g`` clears at the
unique ``p_g`` with ``Σ_i max(0, q_ig − p_g) = c s_g`` (water filling: the Euclidean
projection of ``q_·g / c`` onto the simplex of size ``s_g``). Every unit is allocated
(the paper's first condition) and ``p · x_i <= v_i(x_i)`` (second and third: each
bundle is a utility maximiser, so its utility is at least that of the empty bundle).
There is no free disposal: a control right that must be held by someone is a *bad*
when every agent expects to lose from it, and its price is then negative (as in the
deep market's auctions). Where the price is positive it equals the Walrasian
equilibrium price computed by ``equilibrium.quasilinear`` (tested).

Coupled valuations (``wide.valuation: coupled``) add cross terms,
``v_i(x) = q_i·x − ½ xᵀ C x`` with ``C = c((1 − ρ)I + ρ11ᵀ)`` (ρ < 0: complements,
ρ > 0: substitutes); Equ is then the batched Newton solver of
``mechanisms/quadratic_equ.py`` (``ρ = 0`` gives back the closed form, tested).

Budget caps (Algorithm 2, ``b[α] <- min(α_b, w[α])``): bids are scaled down so that
no bundle the market can allocate is worth more than the agent's room. At equilibrium
``p·x_i <= v_i(x_i)`` (each bundle maximises ``v_i(x) − p·x``, and the empty bundle
is worth 0), and an allocated bundle lies in the box ``0 <= x <= s`` (nobody holds
more than the supply), so the payment is bounded by either of

    A_i = ½ q_i⁺ᵀ C⁻¹ q_i⁺    the unconstrained supremum of v_i
                              (for ρ = 0: Σ_g max(q_ig, 0)² / (2c)), and
    S_i = q_i⁺·s              since v_i(x) <= q_i·x on the box,

and the cap uses the smaller. Scaling the bids by κ scales the first by κ² and the
second by κ, so ``κ_i = min(1, max(sqrt(room_i / A_i), room_i / S_i))``. With goods
in unit supply and values far above ``c`` (CartPole: q ≈ 100, c = 0.1) the box bound
is ~q instead of q²/2c ≈ 50,000, so a budget binds when the agent could actually be
asked to pay it, not when an unreachable bundle would be worth it. The room is, by
default (``wide.budget: shared``), the deep market's equal 1/B share of the agent's
shared budget (``ledger.bid_budget`` / ``ledger.episode_share``), so that B episodes
together never overdraw the account; ``per_episode`` (the first wave's rule: the
whole wealth in each episode) is kept for reproducing old runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from marketjax.mechanisms.quadratic_equ import inverse_form

VALUATIONS = ("separable", "coupled")  # wide.valuation
BUDGETS = ("shared", "per_episode")  # wide.budget (the first is the default)
SUPPLY = 1.0  # each good's supply: one divisible control right per factor


def clear(bids: jax.Array, supply: jax.Array, curvature: jax.Array):
    """Equ in closed form for the quadratic valuations above, one market per good.

    Args:
      bids: f32[..., N] every agent's (capped) bid q for one good, per market.
      supply: f32[...] or scalar, the good's supply s > 0.
      curvature: f32[] c > 0.

    Returns:
      ``(price f32[...], allocation f32[..., N])`` with ``Σ_N allocation = supply``
      (to float32 rounding) and ``allocation_i = max(0, q_i − price) / c``.
    """
    n = bids.shape[-1]
    supply = jnp.broadcast_to(jnp.asarray(supply, bids.dtype), bids.shape[:-1])
    ranked = -jnp.sort(-bids, axis=-1)
    counts = jnp.arange(1, n + 1, dtype=bids.dtype).reshape((1,) * supply.ndim + (n,))
    candidate = (jnp.cumsum(ranked, axis=-1) - (curvature * supply)[..., None]) / counts
    active = jnp.sum((ranked > candidate).astype(jnp.int32), axis=-1)
    k = jnp.maximum(active, 1)[..., None]
    price = jnp.take_along_axis(candidate, k - 1, axis=-1)[..., 0]
    allocation = jnp.maximum(bids - price[..., None], 0.0) / curvature
    return price, allocation


def cap_bids(
    bids: jax.Array,
    wealth: jax.Array,
    curvature: jax.Array,
    coupling=0.0,
    supply=None,
) -> jax.Array:
    """Scales each agent's bids so that what it can be made to pay stays in its room.

    Args:
      bids: f32[B, N, G] raw bids q_ig per episode.
      wealth: f32[N] the room per episode (wealth, or its 1/B budget share).
      curvature: f32[] c.
      coupling: f32[] ρ (0: separable).
      supply: each good's supply s (scalar or f32[G]); None drops the box bound
        (the first wave's rule, ``½ q⁺ᵀ C⁻¹ q⁺`` alone).

    Returns:
      f32[B, N, G] bids κ_i q_i with κ_i = min(1, max(sqrt(w_i⁺ / A_i), w_i⁺ / S_i)),
      A_i = ½ q_i⁺ᵀ C⁻¹ q_i⁺ and S_i = q_i⁺·s (module docstring).
    """
    room = jnp.maximum(wealth, 0.0)[None, :]
    positive = jnp.maximum(bids, 0.0)
    if isinstance(coupling, float) and coupling == 0.0:
        sup = jnp.sum(jnp.square(positive), axis=-1) / (2.0 * curvature)  # [B, N]
    else:
        sup = inverse_form(positive, curvature, coupling)  # [B, N]
    tiny = 1e-30
    bound, scale = sup, jnp.sqrt(room / jnp.maximum(sup, tiny))
    if supply is not None:
        g = bids.shape[-1]
        per_good = jnp.broadcast_to(jnp.asarray(supply, bids.dtype), (g,))  # f32[G]
        per_good = per_good.reshape((1,) * (bids.ndim - 1) + (g,))
        box = jnp.sum(positive * per_good, axis=-1)  # [B, N]
        bound = jnp.minimum(sup, box)
        scale = jnp.maximum(scale, room / jnp.maximum(box, tiny))
    scale = jnp.where(bound > room, jnp.minimum(scale, 1.0), 1.0)
    return bids * scale[..., None]


def valuation(bids: jax.Array, bundle: jax.Array, curvature: jax.Array) -> jax.Array:
    """v(x) = q · x − (c/2)||x||² for one agent (bids, bundle f32[G])."""
    return jnp.dot(bids, bundle) - 0.5 * curvature * jnp.dot(bundle, bundle)


def draw_controllers(
    key: jax.Array, holdings: jax.Array, proportional: bool = True
) -> jax.Array:
    """Who exercises each good's control right (exercised property right s_x(ω)).

    Args:
      key: typed PRNG key.
      holdings: f32[B, N, G] allocations; each good's column sums to its supply.
      proportional: draw the controller with probability proportional to its
        holding (its expected share of control equals its share of the good);
        otherwise the largest holder controls.

    Returns:
      i32[B, G], an agent holding a positive amount of the good.
    """
    if not proportional:
        return jnp.argmax(holdings, axis=1).astype(jnp.int32)
    n = holdings.shape[1]
    cum = jnp.cumsum(holdings, axis=1)  # [B, N, G]
    total = cum[:, -1, :]
    u = jax.random.uniform(key, total.shape) * total
    idx = jnp.sum((cum <= u[:, None, :]).astype(jnp.int32), axis=1)
    positive = holdings > 0.0
    last = n - 1 - jnp.argmax(jnp.flip(positive, axis=1), axis=1)  # last holder
    return jnp.minimum(idx, last).astype(jnp.int32)


def sole_controller(controller: jax.Array) -> jax.Array:
    """i32[...]: the agent that controls every good (controller i32[..., G]), or -1
    where two or more agents share the goods' control."""
    first = controller[..., 0]
    alone = jnp.all(controller == first[..., None], axis=-1)
    return jnp.where(alone, first, -1).astype(jnp.int32)


def exercise(
    key: jax.Array,
    holdings: jax.Array,
    proposals: jax.Array,
    explore: jax.Array,
    num_actions: int,
    proportional: bool = True,
    joint_proposals: jax.Array | None = None,
):
    """Forms the world's factored action from the allocation (property rights).

    The action on good g is the one proposed for g by its controller, a holder of
    g; with probability ``explore`` the controller explores (a uniform action on g).
    No agent's proposal for a good it does not hold can reach the world. Where one
    agent controls every good of an episode and ``joint_proposals`` are given, its
    joint proposal (the greedy action of its joint head) acts on all of them: it
    still acts only on goods it holds.

    Args:
      key: typed PRNG key.
      holdings: f32[B, N, G] the allocation.
      proposals: i32[B, N, G] every agent's action for every good.
      explore: f32[] ε of the controller's ε-greedy choice.
      num_actions: actions per good.
      proportional: see :func:`draw_controllers`.
      joint_proposals: i32[B, N, G] every agent's joint action, or None.

    Returns:
      ``(controller i32[B, G], action i32[B, G], explored bool[B, G])``.
    """
    k_control, k_coin, k_random = jax.random.split(key, 3)
    controller = draw_controllers(k_control, holdings, proportional)
    chosen = jnp.take_along_axis(proposals, controller[:, None, :], axis=1)[:, 0]
    if joint_proposals is not None:
        sole = sole_controller(controller)  # [B]
        own = jnp.take_along_axis(
            joint_proposals, jnp.maximum(sole, 0)[:, None, None], axis=1
        )[:, 0]
        chosen = jnp.where((sole >= 0)[:, None], own, chosen)
    explored = jax.random.uniform(k_coin, chosen.shape) < explore
    random = jax.random.randint(k_random, chosen.shape, 0, num_actions)
    action = jnp.where(explored, random, chosen).astype(jnp.int32)
    return controller, action, explored
