"""Theorem 3.1: the deep market's forward pass is the MLP's."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.embeddings import mlp, nn_market


def _close(a, b):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(1.0, float(np.abs(b).max()))
    assert np.abs(a - b).max() <= 1e-5 * scale, np.abs(a - b).max()


@pytest.mark.parametrize(
    "sizes,batch",
    [
        ((3, 2), ()),
        ((3, 5, 2), (7,)),
        ((4, 16, 16, 3), (2, 3)),
        ((2, 64, 8, 8, 32, 1), (5,)),
    ],
)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_forward_equals_mlp(sizes, batch, activation):
    layers = mlp.init(jax.random.key(len(sizes)), sizes)
    x = jax.random.normal(jax.random.key(1), (*batch, sizes[0]))
    market = nn_market.from_mlp(layers, activation=activation)
    out = jax.jit(nn_market.forward)(market, x)
    assert out.shape == (*batch, sizes[-1])
    assert out.dtype == jnp.float32
    _close(out, mlp.apply(layers, x, activation))


class _Flax(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(6)(x))
        x = nn.relu(nn.Dense(5)(x))
        return nn.Dense(2)(x)


@pytest.mark.parametrize("unwrap", [False, True])
def test_flax_params(unwrap):
    model = _Flax()
    x = jax.random.normal(jax.random.key(0), (4, 3))
    variables = model.init(jax.random.key(1), x)
    params = variables["params"] if unwrap else variables
    out = nn_market.forward(nn_market.from_mlp(params), x)
    _close(out, model.apply(variables, x))


def test_vmap_over_inputs_and_networks():
    keys = jax.random.split(jax.random.key(0), 3)
    markets = jax.vmap(lambda k: nn_market.from_mlp(mlp.init(k, (3, 8, 2))))(keys)
    x = jax.random.normal(jax.random.key(1), (10, 3))
    per_net = jax.jit(jax.vmap(nn_market.forward, in_axes=(0, None)))(markets, x)
    per_input = jax.vmap(nn_market.forward, in_axes=(None, 0))(
        jax.tree.map(lambda a: a[0], markets), x
    )
    assert per_net.shape == (3, 10, 2)
    _close(per_input, per_net[0])
    for i, k in enumerate(keys):
        _close(per_net[i], mlp.apply(mlp.init(k, (3, 8, 2)), x, "relu"))


def test_compiles_once():
    market = nn_market.from_mlp(mlp.init(jax.random.key(0), (3, 4, 2)))
    fwd = jax.jit(chex.assert_max_traces(nn_market.forward, n=1))
    for i in range(3):
        fwd(market.replace(wealth=market.wealth + i), jnp.ones((5, 3)))


def test_ownership_runs_through_the_auction():
    layers = mlp.init(jax.random.key(0), (3, 4, 2))
    market = nn_market.from_mlp(layers)
    x = jax.random.normal(jax.random.key(1), (6, 3))
    rival_w = jnp.zeros((2, 3, 4))
    rival_b = jnp.full((2, 4), 0.5)
    # Zero-wealth rivals (every other constant map) cannot bid: output unchanged.
    poor = nn_market.enter(market, 0, rival_w, rival_b, wealth=0.0, bids=5.0)
    trace = nn_market.run(poor, x)
    np.testing.assert_array_equal(trace.owners, [0, 3])
    _close(trace.states[-1], mlp.apply(layers, x, "relu"))
    # A rival with wealth and a higher bid buys layer 0; its program acts.
    rich = poor.replace(wealth=poor.wealth.at[2].set(3.0))
    trace = nn_market.run(rich, x)
    np.testing.assert_array_equal(trace.owners, [2, 3])
    np.testing.assert_allclose(trace.prices, [3.0, 1.0])  # bid capped by wealth
    hidden = jnp.full((6, 4), 0.5)
    _close(
        trace.states[-1], mlp.apply([(rival_w[0], rival_b[0]), layers[1]], x, "relu")
    )
    _close(trace.states[1], hidden)
    second = nn_market.run(rich.replace(auction="second_price"), x)
    np.testing.assert_allclose(second.prices, [1.0, 0.0])


def test_nobody_can_bid_gives_nan():
    market = nn_market.from_mlp(mlp.init(jax.random.key(0), (3, 4, 2)))
    broke = market.replace(wealth=market.wealth.at[1].set(0.0))
    trace = nn_market.run(broke, jnp.ones((2, 3)))
    np.testing.assert_array_equal(trace.owners, [0, -1])
    assert np.isnan(np.asarray(trace.states[-1])).all()


def test_refuses_bad_input():
    good = mlp.init(jax.random.key(0), (3, 4, 2))
    with pytest.raises(ValueError, match="layer 1: input width 5"):
        nn_market.from_mlp([good[0], (jnp.ones((5, 2)), jnp.ones(2))])
    with pytest.raises(ValueError, match="layer 0: bias shape"):
        nn_market.from_mlp([(jnp.ones((3, 4)), jnp.ones(3))])
    with pytest.raises(ValueError, match="layer 1: kernel has non-finite"):
        nn_market.from_mlp([good[0], (good[1][0].at[0, 0].set(jnp.nan), good[1][1])])
    with pytest.raises(ValueError, match="layer 0: bias has non-finite"):
        nn_market.from_mlp([(good[0][0], good[0][1].at[1].set(jnp.inf)), good[1]])
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        nn_market.from_mlp(good, activation="gelu")
    with pytest.raises(ValueError, match="kernel must be 2-D"):
        nn_market.from_mlp([(jnp.ones(3), jnp.ones(3))])
    with pytest.raises(ValueError, match="no layers"):
        nn_market.from_mlp([])
    with pytest.raises(ValueError, match="input width 3"):
        nn_market.forward(nn_market.from_mlp(good), jnp.ones((2, 4)))
