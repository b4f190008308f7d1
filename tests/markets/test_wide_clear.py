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


@jax.jit
def _economy(bids, wealth):
    """Capped bids, Equ on them, spending, values and the engine's equilibrium."""
    b, n, g = bids.shape
    capped = cap_bids(bids, wealth, C)
    price, alloc = clear(jnp.swapaxes(capped, 1, 2), jnp.float32(1.0), C)
    alloc = jnp.swapaxes(alloc, 1, 2)  # [B, N, G]
    spend = jnp.einsum("bg,bng->bn", price, alloc)
    values = jax.vmap(jax.vmap(lambda q, x: valuation(q, x, C)))(capped, alloc)
    params = {"q": capped, "c": jnp.full((b, n), C)}
    engine = jax.vmap(
        lambda p: equilibrium.quasilinear(
            _value, p, jnp.ones((g,), jnp.float32), tol=1e-5, max_iters=500
        )
    )(params)
    return capped, price, alloc, spend, values, engine


def test_closed_form_clears_and_matches_the_equilibrium_engine():
    """Allocations sum to supply, prices >= 0 for valued goods, and Equ agrees with
    ``equilibrium.quasilinear`` (projected dual descent) vmapped over B episodes."""
    bids = jax.random.uniform(jax.random.key(0), (6, 5, 3), minval=0.5, maxval=3.0)
    rich = jnp.full((5,), 1e6, jnp.float32)
    capped, price, alloc, spend, values, engine = _economy(bids, rich)
    np.testing.assert_array_equal(capped, bids)
    np.testing.assert_allclose(np.sum(alloc, axis=1), 1.0, atol=1e-5)
    assert np.all(price >= 0.0) and np.all(alloc >= 0.0)
    # each bundle maximises v_i(x) - p.x: x = max(0, q - p) / c
    np.testing.assert_allclose(
        alloc, np.maximum(bids - price[:, None, :], 0.0) / C, atol=1e-6
    )
    # no agent pays for what it does not value: p.x_i <= v_i(x_i)
    assert np.all(spend <= values + 1e-5)
    assert bool(jnp.all(engine.converged))
    np.testing.assert_allclose(engine.prices, price, atol=2e-4)
    np.testing.assert_allclose(engine.allocation, alloc, atol=2e-3)


def test_capped_valuations_never_exceed_wealth():
    bids = jax.random.uniform(jax.random.key(1), (6, 5, 3), minval=-1.0, maxval=5.0)
    wealth = jnp.asarray([0.0, 0.3, 2.0, 1e6, 0.01], jnp.float32)
    capped, _, _, spend, _, _ = _economy(bids, wealth)
    best = np.sum(np.maximum(capped, 0.0) ** 2, axis=-1) / (2 * C)  # sup_x v(x)
    assert np.all(best <= wealth[None, :] * (1 + 1e-5) + 1e-7)
    np.testing.assert_allclose(capped[:, 3], bids[:, 3])  # the rich are not capped
    assert np.all(spend <= wealth[None, :] + 1e-5)


def test_bads_clear_at_negative_prices_and_are_fully_allocated():
    bids = jnp.asarray([[-1.0, -0.5, -2.0], [0.3, -0.1, 0.2]], jnp.float32)
    shifted = jax.jit(lambda q: (clear(q, 1.0, C), clear(q + 3.0, 1.0, C)))
    (price, alloc), (price2, alloc2) = shifted(bids)
    np.testing.assert_allclose(np.sum(alloc, axis=-1), 1.0, atol=1e-6)
    assert float(price[0]) < -0.5  # everybody loses from good 0: it is a bad
    # shifting every bid for a good shifts its price and leaves the allocation
    np.testing.assert_allclose(price2, price + 3.0, atol=1e-6)
    np.testing.assert_allclose(alloc2, alloc, atol=1e-6)


def test_controllers_hold_what_they_control():
    raw = np.random.default_rng(2).uniform(size=(64, 5, 3)).astype(np.float32)
    holdings = np.where(raw > 0.6, raw, 0.0)
    holdings[:, 4, :] = 0.01
    holdings /= holdings.sum(axis=1, keepdims=True)

    @jax.jit
    def draw(keys, holdings):
        proportional = jax.vmap(draw_controllers, (0, None))(keys, holdings)
        return proportional, draw_controllers(keys[0], holdings, proportional=False)

    who, largest = draw(jax.random.split(jax.random.key(2), 8), holdings)
    held = np.take_along_axis(holdings[None], np.asarray(who)[:, :, None, :], axis=2)
    assert np.all(held > 0.0)  # [8 draws, B, 1, G]
    np.testing.assert_array_equal(largest, np.argmax(holdings, axis=1))


def test_an_agent_never_changes_goods_it_does_not_own():
    """Agent 0 holds board 0 only, agent 1 board 1 only: whatever agent 0 proposes
    for board 1 (or agent 1 for board 0), the world's board 1 (0) moves the same."""
    env = BatchedEnv("MultiCatch-2", 4)
    _, state = env.reset(jax.random.key(3))
    holdings = jnp.broadcast_to(jnp.eye(2, dtype=jnp.float32), (4, 2, 2))
    base = jnp.asarray([[0, 2], [1, 1]], jnp.int32)  # [N, G]

    @jax.jit
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
