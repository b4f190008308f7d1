"""Latent-variable prediction market (seed 001): payments telescope to the joint's
log score, money is conserved, the planted latent is recovered as well as EM does,
and informative specialists out-earn the noise trader."""

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.markets import latent as lt

P0 = np.array([0.2, 0.2, 0.2, 0.5, 0.5])
TRUTH = lt.LatentModel(
    jnp.log(jnp.array([0.4, 0.6])),
    jnp.asarray(np.log(np.stack([P0, 1 - P0], 1) / np.stack([1 - P0, P0], 1)),
                jnp.float32),
)  # fmt: skip
PARAMS = lt.LatentParams(*(jnp.float32(v) for v in (1.0, 8.0, 20.0, 0.3)))


def test_log_marginal_by_hand():
    m = lt.LatentModel(jnp.log(jnp.array([0.25, 0.75])), jnp.array([[0.0, 2.0]]))
    # P(x=1) = 0.25 * 0.5 + 0.75 * sigmoid(2)
    want = np.log(0.25 * 0.5 + 0.75 / (1 + np.exp(-2.0)))
    np.testing.assert_allclose(float(lt.log_marginal(m, jnp.ones((1, 1)))[0]), want,
                               rtol=1e-6)  # fmt: skip


def test_one_round_payments_telescope_and_money_is_conserved():
    _, x = lt.sample(jax.random.key(0), TRUTH, 128)
    state = lt.init(jax.random.key(1), 5, 2)
    new, pay = jax.jit(lt.round_step)(jax.random.key(2), state, x[:64], x[64:], PARAMS)
    total = float(jnp.mean(lt.log_marginal(new.model, x[64:])
                           - lt.log_marginal(state.model, x[64:])))  # fmt: skip
    np.testing.assert_allclose(float(jnp.sum(pay)), total, atol=1e-5)
    np.testing.assert_allclose(float(new.maker), -float(jnp.sum(pay)), atol=1e-6)
    np.testing.assert_allclose(
        float(jnp.sum(new.wealth) + new.maker), float(jnp.sum(state.wealth)), atol=1e-5
    )


def test_market_recovers_the_planted_latent_like_em():
    _, x = lt.sample(jax.random.key(3), TRUTH, 150 * 64)
    y_test, x_test = lt.sample(jax.random.key(4), TRUTH, 2000)
    state0 = lt.init(jax.random.key(5), 5, 2)
    state, _ = jax.jit(lt.run)(jax.random.key(6), state0, x.reshape(150, 64, 5), PARAMS)
    market = lt.latent_accuracy(state.model, x_test, y_test)
    em = lt.latent_accuracy(lt.em(state0.model, x), x_test, y_test)
    bayes = lt.latent_accuracy(TRUTH, x_test, y_test)
    ll = lambda m: float(jnp.mean(lt.log_marginal(m, x_test)))
    assert ll(state.model) > ll(state0.model) + 0.1
    assert ll(state.model) > ll(TRUTH) - 0.05  # SGD noise
    assert market > bayes - 0.02 and abs(market - em) < 0.02
    w = np.asarray(state.wealth)
    # specialists of the informative features 0-2 (traders 1-3) earn on average;
    # the noise trader ends poorest, below what it started with
    assert w[1:4].mean() > 1.0 and w[-1] < w[:-1].min() and w[-1] < 1.0
    np.testing.assert_allclose(w.sum() + float(state.maker), 7.0, atol=1e-4)
