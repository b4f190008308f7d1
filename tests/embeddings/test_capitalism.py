"""CAPITALISM training of the Theorem 3.1 market improves the loss, money conserved."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.embeddings import capitalism, nn_market


def _task(np_mlp):
    init, apply = np_mlp
    x = np.random.default_rng(0).standard_normal((128, 2)).astype(np.float32)
    y = apply(init(1, (2, 6, 1), scale=2.0), x, "tanh").astype(np.float32)
    return init(2, (2, 6, 1)), x, y


def _loss(np_mlp, layers, x, y):
    out = np_mlp[1]([(np.asarray(w), np.asarray(b)) for w, b in layers], x, "tanh")
    return float(np.mean(0.5 * np.sum((out - y) ** 2, axis=-1)))


def test_capitalism_improves_the_loss(np_mlp):
    student, x, y = _task(np_mlp)
    before = _loss(np_mlp, student, x, y)
    params = capitalism.default_params(2 * before, sigma=0.3)

    @jax.jit
    def train(key, student):
        state = capitalism.init(
            student, activation="tanh", pool=6, entrants=3, auction="second_price"
        )
        total0 = jnp.sum(state.market.wealth) + state.founder
        state, metrics = capitalism.train(key, state, x, y, params, rounds=40, batch=64)
        # the trained pools are still a Theorem 3.1 market: give only the owners
        # wealth and the auctions hand each layer to its owner, whose program runs
        n = state.market.wealth.shape[0]
        is_owner = jnp.any(jnp.arange(n)[:, None] == state.owners[None, :], axis=1)
        market = state.market.replace(
            wealth=is_owner.astype(jnp.float32), bids=jnp.ones((n,), jnp.float32)
        )
        return state, metrics, total0, nn_market.run(market, x)

    state, metrics, total0, trace = train(jax.random.key(1), student)
    network = capitalism.network(state)
    after = _loss(np_mlp, network, x, y)
    assert after < 0.5 * before, (before, after)
    assert int(metrics["changes"].sum()) > 0  # entrants bought layers
    assert np.isfinite(np.asarray(metrics["loss"])).all()
    # money: Σ wealth + founder moves only by counted allowances, exits, rewards, rent
    total = float(jnp.sum(state.market.wealth) + state.founder)
    np.testing.assert_allclose(
        total, float(total0) + float(state.money_in), rtol=1e-5, atol=1e-3
    )
    reference = np_mlp[1](
        [(np.asarray(w), np.asarray(b)) for w, b in network], x, "tanh"
    )
    np.testing.assert_allclose(trace.states[-1], reference, rtol=1e-4, atol=1e-5)


def test_refuses_bad_pool(np_mlp):
    student, _, _ = _task(np_mlp)
    with pytest.raises(ValueError, match="entrants"):
        capitalism.init(student, pool=2, entrants=2)
