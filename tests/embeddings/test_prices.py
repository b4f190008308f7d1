"""Eq. (1): equilibrium prices of the production economy are backprop gradients."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.embeddings import economy as econ
from marketjax.embeddings import prices

# Wentworth's chain: x -> a = sqrt(x) -> b = 1 - 1/(a + 1), consumer values ln(b).
SQRT = econ.Technology(
    lambda _, c: jnp.sqrt(c), lambda _, c: (0.5 / jnp.sqrt(c))[:, None]
)
SATURATE = econ.Technology(
    lambda _, c: 1.0 - 1.0 / (c + 1.0), lambda _, c: (1.0 / (c + 1.0) ** 2)[:, None]
)


def _wentworth():
    return econ.chain(
        (SQRT, SATURATE), (None, None), jnp.array([4.0]), lambda _, b: 1.0 / b
    )


@pytest.mark.parametrize("step_size,max_iters", [(1.0, 10), (0.6, 200)])
def test_wentworth_chain_known_answer(step_size, max_iters):
    eq = jax.jit(
        lambda e: econ.equilibrium(
            e, step_size=step_size, max_iters=max_iters, tol=1e-7
        )
    )(_wentworth())
    assert bool(eq.converged)
    np.testing.assert_allclose(
        [float(q[0]) for q in eq.quantities], [4, 2, 2 / 3], rtol=1e-6
    )
    p_x, p_a, p_b = (float(p[0]) for p in eq.prices)
    np.testing.assert_allclose([p_b, p_a, p_x], [3 / 2, 1 / 6, 1 / 24], rtol=1e-6)
    if step_size == 1.0:  # a DAG of 2 stages settles in 2*2 + 1 updates
        assert int(eq.iterations) == 5


def _problem(sizes=(3, 8, 6, 2), batch=12, seed=0):
    rng = np.random.default_rng(seed)
    layers = [
        (
            (rng.standard_normal((i, o)) / np.sqrt(i)).astype(np.float32),
            (0.1 * rng.standard_normal(o)).astype(np.float32),
        )
        for i, o in itertools.pairwise(sizes)
    ]
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.standard_normal((batch, sizes[-1])).astype(np.float32)
    return layers, x, y


@pytest.mark.parametrize("loss", ["mse", "xent"])
@pytest.mark.parametrize("step_size,max_iters", [(1.0, 20), (0.5, 400)])
def test_prices_equal_gradients_tanh(loss, step_size, max_iters):
    layers, x, y = _problem()
    if loss == "xent":
        y = np.arange(x.shape[0]) % 2
    report = prices.compare(
        layers,
        x,
        y,
        activation="tanh",
        loss=loss,
        step_size=step_size,
        max_iters=max_iters,
        tol=1e-6,
    )
    assert bool(report.converged)
    assert report.rel_error.shape == (3,)
    assert [p.shape for p in report.prices] == [(12, 8), (12, 6), (12, 2)]
    assert float(report.rel_error.max()) <= 1e-4
    assert float(report.cosine.min()) >= 1 - 1e-4
    # the gradients really are jax.grad's; the prices only agree with them
    for p, g in zip(report.prices, report.gradients, strict=True):
        np.testing.assert_allclose(p, g, rtol=1e-4, atol=1e-5 * float(jnp.abs(g).max()))
    if step_size == 1.0:
        assert int(report.iterations) == 2 * 3 + 1


def test_onehot_labels_match_integer_labels():
    layers, x, _ = _problem()
    labels = np.arange(x.shape[0]) % 2
    a = prices.compare(layers, x, labels, loss="xent")
    b = prices.compare(layers, x, np.eye(2, dtype=np.float32)[labels], loss="xent")
    np.testing.assert_allclose(a.prices[0], b.prices[0], rtol=1e-6)


@pytest.mark.parametrize("activation", ["softplus", "relu", "sigmoid", "identity"])
def test_other_activations(activation):
    layers, x, y = _problem(sizes=(3, 6, 2), seed=1)
    report = prices.compare(layers, x, y, activation=activation)
    assert bool(report.converged)
    assert float(report.rel_error.max()) <= 1e-4


def test_tiny_budget_is_unconverged():
    layers, x, y = _problem()
    report = prices.compare(layers, x, y, step_size=0.05, max_iters=3)
    assert not bool(report.converged)
    assert int(report.iterations) == 3
    assert not bool(report.layer_converged[0])
    assert float(report.residual.max()) > 1e-2
    assert float(report.rel_error[0]) > 1e-2


def test_refuses_bad_arguments():
    layers, x, y = _problem()
    with pytest.raises(ValueError, match="unknown loss"):
        prices.compare(layers, x, y, loss="hinge")
    with pytest.raises(ValueError, match="unknown activation"):
        prices.compare(layers, x, y, activation="gelu")
    with pytest.raises(ValueError, match="y has shape"):
        prices.compare(layers, x, y[:, :1])
    with pytest.raises(ValueError, match="labels must lie"):
        prices.compare(layers, x, np.full(x.shape[0], 5), loss="xent")
    with pytest.raises(ValueError, match="step_size"):
        prices.compare(layers, x, y, step_size=0.0)


def test_free_disposal_prices_bads_at_zero():
    # consumer dislikes b (V = -b^2): without disposal p_b = V'(b) < 0, a "bad";
    # with free disposal it is thrown away, p_b = max(0, V'(b)) = 0 >= V'(b), and
    # nothing upstream is worth anything either.
    eco = econ.chain(
        (SQRT, SATURATE), (None, None), jnp.array([4.0]), lambda _, b: -2.0 * b
    )
    solve = jax.jit(econ.equilibrium, static_argnames=("free_disposal",))
    bad = solve(eco)
    np.testing.assert_allclose(float(bad.prices[2][0]), -4 / 3, rtol=1e-6)
    np.testing.assert_allclose(float(bad.prices[1][0]), -4 / 27, rtol=1e-6)
    free = solve(eco, free_disposal=True)
    assert bool(free.converged)
    assert [float(p[0]) for p in free.prices] == [0.0, 0.0, 0.0]


def test_nan_inputs_never_read_as_agreement(np_mlp):
    """Issue 14: NaN in x or y gave rel_error 0 (perfect agreement)."""
    init, _ = np_mlp
    params = init(0, [3, 4, 2])
    x = np.ones((2, 3), np.float32)
    y = np.zeros((2, 2), np.float32)
    for bad_x, bad_y in [(x.copy(), y), (x, y.copy())]:
        (bad_x if bad_x is not x else bad_y)[0, 0] = np.nan
        report = prices.compare(params, bad_x, bad_y)
        assert not bool(report.converged)
        assert np.all(np.isnan(np.asarray(report.rel_error)))
        assert np.all(np.isnan(np.asarray(report.cosine)))
