"""Theorem 3.1: the deep market's forward pass is the MLP's."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.embeddings import nn_market


def _close(a, b):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(1.0, float(np.abs(b).max()))
    assert np.abs(a - b).max() <= 1e-5 * scale, np.abs(a - b).max()


@pytest.mark.parametrize(
    "sizes,batch,activation",
    [
        ((3, 2), (), "relu"),
        ((3, 5, 2), (7,), "tanh"),
        ((4, 16, 16, 3), (2, 3), "relu"),
        ((2, 64, 8, 8, 32, 1), (5,), "softplus"),
    ],
)
def test_forward_equals_mlp(np_mlp, sizes, batch, activation):
    init, apply = np_mlp
    layers = init(len(sizes), sizes)
    x = np.random.default_rng(1).standard_normal((*batch, sizes[0])).astype("f4")
    market = nn_market.from_mlp(layers, activation=activation)
    out = jax.jit(nn_market.forward)(market, x)
    assert out.shape == (*batch, sizes[-1])
    assert out.dtype == jnp.float32
    _close(out, apply(layers, x, activation))


class _Flax(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(6)(x))
        x = nn.relu(nn.Dense(5)(x))
        return nn.Dense(2)(x)


@pytest.mark.parametrize("unwrap", [False, True])
def test_flax_params(unwrap):
    model = _Flax()
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 3)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.key(1), x)
    params = variables["params"] if unwrap else variables
    out = jax.jit(nn_market.forward)(nn_market.from_mlp(params), x)
    _close(out, jax.jit(model.apply)(variables, x))


def test_vmap_over_inputs_and_networks(np_mlp):
    init, apply = np_mlp
    nets = [init(seed, (3, 8, 2)) for seed in range(3)]
    markets = jax.tree.map(
        lambda *a: jnp.stack(a), *[nn_market.from_mlp(n) for n in nets]
    )
    x = np.random.default_rng(1).standard_normal((10, 3)).astype("f4")
    per_net = jax.jit(jax.vmap(nn_market.forward, in_axes=(0, None)))(markets, x)
    per_input = jax.jit(jax.vmap(nn_market.forward, in_axes=(None, 0)))(
        nn_market.from_mlp(nets[0]), x
    )
    assert per_net.shape == (3, 10, 2)
    _close(per_input, per_net[0])
    for i, net in enumerate(nets):
        _close(per_net[i], apply(net, x, "relu"))


def test_compiles_once(np_mlp):
    market = nn_market.from_mlp(np_mlp[0](0, (3, 4, 2)))
    fwd = jax.jit(chex.assert_max_traces(nn_market.forward, n=1))
    for i in range(3):
        fwd(market.replace(wealth=market.wealth + i), jnp.ones((5, 3)))


RUN = jax.jit(nn_market.run)


def test_ownership_runs_through_the_auction(np_mlp):
    init, apply = np_mlp
    layers = init(0, (3, 4, 2))
    market = nn_market.from_mlp(layers)
    x = np.random.default_rng(1).standard_normal((6, 3)).astype("f4")
    rival_w = np.zeros((2, 3, 4), np.float32)
    rival_b = np.full((2, 4), 0.5, np.float32)
    # Zero-wealth rivals (every other constant map) cannot bid: output unchanged.
    poor = nn_market.enter(market, 0, rival_w, rival_b, wealth=0.0, bids=5.0)
    trace = RUN(poor, x)
    np.testing.assert_array_equal(trace.owners, [0, 3])
    _close(trace.states[-1], apply(layers, x, "relu"))
    # A rival with wealth and a higher bid buys layer 0; its program acts.
    rich = poor.replace(wealth=jnp.asarray([1.0, 0.0, 3.0, 1.0]))
    trace = RUN(rich, x)
    np.testing.assert_array_equal(trace.owners, [2, 3])
    np.testing.assert_allclose(trace.prices, [3.0, 1.0])  # bid capped by wealth
    _close(trace.states[1], np.full((6, 4), 0.5))
    _close(trace.states[-1], apply([(rival_w[0], rival_b[0]), layers[1]], x, "relu"))
    second = RUN(rich.replace(auction="second_price"), x)
    np.testing.assert_allclose(second.prices, [1.0, 0.0])


def test_nobody_can_bid_gives_nan(np_mlp):
    market = nn_market.from_mlp(np_mlp[0](0, (3, 4, 2)))
    broke = market.replace(wealth=jnp.asarray([1.0, 0.0]))
    trace = RUN(broke, np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(trace.owners, [0, -1])
    assert np.isnan(np.asarray(trace.states[-1])).all()


def test_refuses_bad_input(np_mlp):
    good = np_mlp[0](0, (3, 4, 2))
    nan_w = good[1][0].copy()
    nan_w[0, 0] = np.nan
    inf_b = good[0][1].copy()
    inf_b[1] = np.inf
    with pytest.raises(ValueError, match="layer 1: input width 5"):
        nn_market.from_mlp([good[0], (np.ones((5, 2)), np.ones(2))])
    with pytest.raises(ValueError, match="layer 0: bias shape"):
        nn_market.from_mlp([(np.ones((3, 4)), np.ones(3))])
    with pytest.raises(ValueError, match="layer 1: kernel has non-finite"):
        nn_market.from_mlp([good[0], (nan_w, good[1][1])])
    with pytest.raises(ValueError, match="layer 0: bias has non-finite"):
        nn_market.from_mlp([(good[0][0], inf_b), good[1]])
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        nn_market.from_mlp(good, activation="gelu")
    with pytest.raises(ValueError, match="kernel must be 2-D"):
        nn_market.from_mlp([(np.ones(3), np.ones(3))])
    with pytest.raises(ValueError, match="no layers"):
        nn_market.from_mlp([])
    with pytest.raises(ValueError, match="input width 3"):
        nn_market.forward(nn_market.from_mlp(good), np.ones((2, 4), np.float32))
