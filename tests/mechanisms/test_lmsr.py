"""LMSR (Hanson 2003): the issue's known answers, the loss bound, path independence,
the scoring-rule identity and stability for large q / b."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax import lmsr

B = 100.0


def test_issue_fixture_buy_50_shares():
    q0 = jnp.zeros(2)
    dq = jnp.array([50.0, 0.0])
    # 100 ln((e^0.5 + 1) / 2) and e^0.5 / (1 + e^0.5)
    np.testing.assert_allclose(float(lmsr.trade_cost(q0, dq, B)), 28.0929803620, 1e-6)
    np.testing.assert_allclose(float(lmsr.prices(q0 + dq, B)[0]), 0.6224593312, 1e-6)


def test_issue_fixture_move_binary_market_to_80_percent():
    q0 = jnp.zeros(2)
    dq = lmsr.trade_to(q0, jnp.array([0.8, 0.2]), B)
    np.testing.assert_allclose(np.asarray(dq), [100 * math.log(4.0), 0.0], 1e-6)
    np.testing.assert_allclose(float(lmsr.trade_cost(q0, dq, B)), 91.6290731874, 1e-6)
    np.testing.assert_allclose(float(lmsr.prices(q0 + dq, B)[0]), 0.8, 1e-6)


def test_cost_and_prices_by_hand():
    q = jnp.array([10.0, -20.0, 30.0])
    b = 20.0
    by_hand = b * math.log(math.exp(0.5) + math.exp(-1.0) + math.exp(1.5))
    np.testing.assert_allclose(float(lmsr.cost(q, b)), by_hand, 1e-6)
    z = math.exp(0.5) + math.exp(-1.0) + math.exp(1.5)
    expected = [math.exp(0.5) / z, math.exp(-1.0) / z, math.exp(1.5) / z]
    np.testing.assert_allclose(np.asarray(lmsr.prices(q, b)), expected, 1e-6)
    # Prices are the gradient of the cost function.
    np.testing.assert_allclose(
        np.asarray(jax.grad(lmsr.cost)(q, b)), expected, rtol=1e-5
    )


def test_max_loss_and_the_bound_is_approached():
    assert lmsr.max_loss(B, 2) == pytest.approx(100 * math.log(2))
    assert lmsr.max_loss(B, 10) == pytest.approx(100 * math.log(10))
    # Buying M shares of outcome 0 from q = 0 in a 3-outcome market: the maker pays M
    # if outcome 0 happens and took 100 ln((e^(M/100) + 2) / 3).
    for m, loss in [(200.0, 200 - 100 * math.log((math.exp(2) + 2) / 3))]:
        got = lmsr.market_maker_loss(jnp.zeros(3), jnp.array([m, 0, 0]), 0, B)
        np.testing.assert_allclose(float(got), loss, rtol=1e-5)
    big = lmsr.market_maker_loss(jnp.zeros(3), jnp.array([3000.0, 0, 0]), 0, B)
    np.testing.assert_allclose(float(big), 100 * math.log(3), rtol=1e-5)


def test_loss_bound_holds_for_random_trades_and_outcomes():
    key_q, key_y = jax.random.split(jax.random.key(0))
    q1 = 400.0 * jax.random.normal(key_q, (2000, 5))
    y = jax.random.randint(key_y, (2000,), 0, 5)
    worst = jnp.max(lmsr.market_maker_loss(jnp.zeros((2000, 5)), q1, y, B))
    assert float(worst) <= lmsr.max_loss(B, 5) * (1 + 1e-6)
    assert float(worst) > 0.9 * lmsr.max_loss(B, 5)  # and it is nearly attained


def test_trades_sum_to_the_cost_path():
    dqs = jax.random.normal(jax.random.key(1), (50, 4)) * 30.0
    q0 = jnp.array([5.0, -3.0, 0.0, 12.0])
    qs = q0[None] + jnp.cumsum(dqs, axis=0)
    before = jnp.concatenate([q0[None], qs[:-1]])
    paid = jnp.sum(lmsr.trade_cost(before, dqs, B))
    np.testing.assert_allclose(
        float(paid), float(lmsr.cost(qs[-1], B) - lmsr.cost(q0, B)), atol=1e-3
    )


def test_trade_payoff_is_the_log_scoring_rule():
    """Moving prices p -> p' and holding: net gain b (ln p'_y - ln p_y), any y."""
    q = jnp.array([30.0, -10.0, 5.0])
    target = jnp.array([0.1, 0.6, 0.3])
    dq = lmsr.trade_to(q, target, B)
    gain = dq - lmsr.trade_cost(q, dq, B)
    expected = B * (jnp.log(target) - jnp.log(lmsr.prices(q, B)))
    np.testing.assert_allclose(np.asarray(gain), np.asarray(expected), atol=1e-3)


def test_translation_and_large_quantities_are_stable():
    q = jnp.array([1e6, 1e6 - 100.0])
    assert np.isfinite(float(lmsr.cost(q, 1.0)))
    # A share of every outcome costs 1, at any q (translation equivariance).
    seven = lmsr.trade_cost(q, jnp.full(2, 7.0), B)
    np.testing.assert_allclose(float(seven), 7.0, rtol=1e-6)
    dq = jnp.array([50.0, 0.0])
    # Same trade far from the origin: exact answer from float64 numpy.
    qq = np.array([5000.0, 5000.0 - 100.0])
    c64 = lambda x: 100 * np.log(np.sum(np.exp((x - x.max()) / 100))) + x.max()
    exact = c64(qq + np.array([50.0, 0.0])) - c64(qq)
    got = float(lmsr.trade_cost(jnp.asarray(qq, jnp.float32), dq, B))
    np.testing.assert_allclose(got, exact, rtol=1e-6)


def test_batched_with_per_market_liquidity():
    q = jnp.zeros((3, 2))
    b = jnp.array([50.0, 100.0, 200.0])
    dq = jnp.broadcast_to(jnp.array([50.0, 0.0]), (3, 2))
    got = jax.jit(lmsr.trade_cost)(q, dq, b)
    expected = [bb * math.log((math.exp(50 / bb) + 1) / 2) for bb in (50, 100, 200)]
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)
    assert lmsr.prices(q, b).shape == (3, 2)
