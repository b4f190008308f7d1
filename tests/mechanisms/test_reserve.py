"""Complete feedback: the reserve price found by jax.grad equals the grid's best."""

import jax
import numpy as np

from marketjax.mechanisms import reserve


def test_gradient_ascent_and_grid_search_agree():
    markets = reserve.random_markets(jax.random.key(0), 8, 2, 2)
    value = jax.jit(lambda r: reserve.revenue(r, markets))
    value_and_grad = jax.jit(lambda r: reserve.revenue_and_grad(r, markets))
    grid = np.arange(0.0, 8.01, 0.1, dtype=np.float32)
    curve = np.array([float(value(r)) for r in grid])
    best = float(grid[np.argmax(curve)])
    assert 0.5 < best < 7.5  # an interior optimum: the reserve matters
    r = np.float32(1.0)
    for _ in range(200):
        _, d, _ = value_and_grad(r)
        r = np.float32(r + 0.5 * float(d))
    assert abs(float(d)) < 1e-3
    assert abs(float(r) - best) <= 0.1
    # the implicit gradient is the slope of the revenue curve (central differences)
    h = np.float32(0.01)  # no buyer crosses its margin within r +- h here
    fd = (float(value(np.float32(3.0) + h)) - float(value(np.float32(3.0) - h))) / (
        2 * h
    )
    np.testing.assert_allclose(float(value_and_grad(np.float32(3.0))[1]), fd, rtol=2e-2)
