"""The wide market's Equ (closed form vs the engine), budget caps, property rights."""

import jax
import jax.numpy as jnp
import numpy as np

from marketjax import equilibrium
from marketjax.envs.gymnax_adapter import BatchedEnv
from marketjax.markets.wide_clear import (
    cap_bids,
    clear,
    draw_controllers,
    exercise,
    valuation,
)

C = jnp.float32(0.5)


def _value(params_i, bundle):
    return valuation(params_i["q"], bundle, params_i["c"])


def test_closed_form_clears_and_matches_the_equilibrium_engine():
    """Allocations sum to supply, prices >= 0 for valued goods, and Equ agrees with
    ``equilibrium.quasilinear`` (projected dual descent) vmapped over B episodes."""
    b, n, g = 6, 5, 3
    bids = jax.random.uniform(jax.random.key(0), (b, n, g), minval=0.5, maxval=3.0)
    supply = jnp.float32(1.0)
    price, alloc = clear(jnp.swapaxes(bids, 1, 2), supply, C)
    alloc = jnp.swapaxes(alloc, 1, 2)  # [B, N, G]
    np.testing.assert_allclose(jnp.sum(alloc, axis=1), 1.0, atol=1e-5)
    assert bool(jnp.all(price >= 0.0)) and bool(jnp.all(alloc >= 0.0))
    # each bundle maximises v_i(x) - p.x: x = max(0, q - p) / c
    np.testing.assert_allclose(
        alloc, jnp.maximum(bids - price[:, None, :], 0.0) / C, atol=1e-6
    )
    # no agent pays for what it does not value: p.x_i <= v_i(x_i)
    spend = jnp.einsum("bg,bng->bn", price, alloc)
    values = jax.vmap(jax.vmap(lambda q, x: valuation(q, x, C)))(bids, alloc)
    assert bool(jnp.all(spend <= values + 1e-5))

    params = {"q": bids, "c": jnp.full((b, n), C)}
    engine = jax.vmap(
        lambda p: equilibrium.quasilinear(
            _value, p, jnp.ones((g,), jnp.float32), tol=1e-5, max_iters=500
        )
    )(params)
    assert bool(jnp.all(engine.converged))
    np.testing.assert_allclose(engine.prices, price, atol=2e-4)
    np.testing.assert_allclose(engine.allocation, alloc, atol=2e-3)


def test_bads_clear_at_negative_prices_and_are_fully_allocated():
    bids = jnp.asarray([[-1.0, -0.5, -2.0], [0.3, -0.1, 0.2]], jnp.float32)
    price, alloc = clear(bids, jnp.float32(1.0), C)
    np.testing.assert_allclose(jnp.sum(alloc, axis=-1), 1.0, atol=1e-6)
    assert float(price[0]) < -0.5  # everybody loses from good 0: it is a bad
    # shifting every bid for a good shifts its price and leaves the allocation
    price2, alloc2 = clear(bids + 3.0, jnp.float32(1.0), C)
    np.testing.assert_allclose(price2, price + 3.0, atol=1e-6)
    np.testing.assert_allclose(alloc2, alloc, atol=1e-6)


def test_capped_valuations_never_exceed_wealth():
    bids = jax.random.uniform(jax.random.key(1), (4, 3, 2), minval=-1.0, maxval=5.0)
    wealth = jnp.asarray([0.0, 0.3, 1e6], jnp.float32)
    capped = cap_bids(bids, wealth, C)
    best = jnp.sum(jnp.maximum(capped, 0.0) ** 2, axis=-1) / (2 * C)  # sup_x v(x)
    assert bool(jnp.all(best <= wealth[None, :] * (1 + 1e-5)))
    np.testing.assert_allclose(capped[:, 2], bids[:, 2])  # the rich are not capped
    price, alloc = clear(jnp.swapaxes(capped, 1, 2), jnp.float32(1.0), C)
    spend = jnp.einsum("bg,bgn->bn", price, alloc)
    assert bool(jnp.all(spend <= wealth[None, :] + 1e-5))


def test_controllers_hold_what_they_control():
    key = jax.random.key(2)
    raw = jax.random.uniform(key, (64, 5, 3))
    holdings = jnp.where(raw > 0.6, raw, 0.0).at[:, 4, :].set(0.01)
    holdings = holdings / jnp.sum(holdings, axis=1, keepdims=True)
    for k in range(5):
        who = draw_controllers(jax.random.key(k), holdings)
        held = jnp.take_along_axis(holdings, who[:, None, :], axis=1)[:, 0]
        assert bool(jnp.all(held > 0.0))
    largest = draw_controllers(key, holdings, proportional=False)
    np.testing.assert_array_equal(largest, jnp.argmax(holdings, axis=1))


def test_an_agent_never_changes_goods_it_does_not_own():
    """Agent 0 holds board 0 only, agent 1 board 1 only: whatever agent 0 proposes
    for board 1 (or agent 1 for board 0), the world's board 1 (0) moves the same."""
    env = BatchedEnv("MultiCatch-2", 4)
    _, state = env.reset(jax.random.key(3))
    holdings = jnp.broadcast_to(jnp.eye(2, dtype=jnp.float32), (4, 2, 2))
    base = jnp.asarray([[0, 2], [1, 1]], jnp.int32)  # [N, G]

    def world(proposals):
        _, action, _ = exercise(jax.random.key(4), holdings, proposals, 0.0, 3)
        _, new, _, _, info = env.step(jax.random.key(5), state, env.env.encode(action))
        return action, new.paddle_x, info["factor_rewards"]

    ref = world(jnp.broadcast_to(base, (4, 2, 2)))
    np.testing.assert_array_equal(ref[0], jnp.broadcast_to(jnp.asarray([0, 1]), (4, 2)))
    for foreign in range(3):
        changed = base.at[0, 1].set(foreign).at[1, 0].set(2 - foreign)
        out = world(jnp.broadcast_to(changed, (4, 2, 2)))
        for a, b in zip(ref, out, strict=True):
            np.testing.assert_array_equal(a, b)
    # and an owner's own proposal does move its board
    moved = world(jnp.broadcast_to(base.at[0, 0].set(2), (4, 2, 2)))
    assert not np.array_equal(moved[1][:, 0], ref[1][:, 0])
    np.testing.assert_array_equal(moved[1][:, 1], ref[1][:, 1])
