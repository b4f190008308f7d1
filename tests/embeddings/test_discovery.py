"""Price discovery with free quantities (Eq. (1) as a rest point, not a recursion)."""

import numpy as np
import pytest

from marketjax import prices
from marketjax.embeddings import discovery


def test_monopsony_pays_half_its_marginal_value():
    """V(a) = 2 sqrt(a), supply P(a) = a: competitive a = p = 1 = V'(1); the
    monopsonist clears at a = p = 4^(-1/3) where V'(a) = 2p (Robinson's markdown)."""
    r = discovery.monopsony()
    assert bool(r.converged)
    np.testing.assert_allclose(r.competitive_price, 1.0, rtol=1e-5)
    np.testing.assert_allclose(r.monopsony_price, 4 ** (-1 / 3), rtol=1e-5)
    np.testing.assert_allclose(r.marginal_value, 2 * 4 ** (-1 / 3), rtol=1e-5)
    np.testing.assert_allclose(r.markdown, 0.5, rtol=1e-5)
    r3 = discovery.monopsony(3.0)  # P(a) = 3a: p^3 = k/4, the markdown still 1/2
    np.testing.assert_allclose(r3.markdown, 0.5, rtol=1e-5)
    np.testing.assert_allclose(r3.monopsony_price, 0.75 ** (1 / 3), rtol=1e-5)


def _data(seed, batch):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 4)).astype(np.float32)
    y = rng.standard_normal((batch, 3)).astype(np.float32)
    return x, y


def test_linear_network_discovers_the_gradients(np_mlp):
    """Linear firms: the dynamics come to rest at the forward pass, prices = -dL/dh."""
    init, _ = np_mlp
    x, y = _data(1, 4)
    r = discovery.discover(init(0, [4, 8, 8, 3]), x, y, activation="identity")
    assert bool(r.converged)
    assert np.all(np.asarray(r.rel_error) < 1e-3)
    assert np.all(np.asarray(r.quantity_error) < 1e-3)


def test_tanh_firms_walk_away_and_the_report_says_so(np_mlp):
    """Some tanh firms sit at a profit minimum: those samples never come to rest,
    their quantities leave the forward pass and prices are far from gradients; the
    samples that do converge agree with backprop."""
    init, _ = np_mlp
    x, y = _data(1, 16)
    r = discovery.discover(init(0, [4, 8, 8, 3]), x, y, activation="tanh")
    ok = np.asarray(r.sample_converged)
    assert not bool(r.converged) and 0 < ok.sum() < ok.size
    assert float(r.rel_error[0]) > 0.1
    assert float(np.max(r.quantity_error)) > 0.1
    assert np.all(np.asarray(r.rel_error_converged) < 1e-3)


def test_compare_mechanism_choice(np_mlp):
    init, _ = np_mlp
    x, y = _data(2, 3)
    params = init(0, [4, 5, 3])
    rec = prices.compare(params, x, y, activation="identity")
    disc = prices.compare(
        params,
        x,
        y,
        activation="identity",
        mechanism="discovery",
        step_size=0.3,
        max_iters=5000,
        tol=1e-5,
    )
    assert bool(rec.converged) and bool(disc.converged)
    for a, b in zip(rec.prices, disc.prices, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-3)
    with pytest.raises(ValueError, match="mechanism"):
        prices.compare(params, x, y, mechanism="auction")
