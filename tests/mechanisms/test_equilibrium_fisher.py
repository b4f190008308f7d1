"""Fisher markets: known answers, honest non-convergence, batching, compile-once."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from marketjax import equilibrium

METHODS = ("proportional_response", "tatonnement")

CD_BUDGETS = jnp.array([1.0, 2.0, 3.0])
CD_EXPONENTS = jnp.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])


@pytest.mark.parametrize("method", METHODS)
def test_cobb_douglas_known_prices(method):
    """Cobb–Douglas buyers spend the share a_ij of B_i on good j, so with unit supply
    p_j = sum_i B_i a_ij: (0.5 + 0.4 + 0.3, 0.3 + 1.0 + 0.3, 0.2 + 0.6 + 2.4)
    = (6/5, 8/5, 16/5)."""
    eq = equilibrium.fisher(
        CD_BUDGETS,
        CD_EXPONENTS,
        jnp.ones(3),
        kind="cobb_douglas",
        method=method,
        tol=1e-6,
        max_iters=500,
    )
    assert bool(eq.converged)
    np.testing.assert_allclose(eq.prices, [6 / 5, 8 / 5, 16 / 5], rtol=2e-6)
    np.testing.assert_allclose(eq.allocation.sum(0), jnp.ones(3), atol=2e-6)
    np.testing.assert_allclose(eq.allocation @ eq.prices, CD_BUDGETS, rtol=2e-6)
    assert float(eq.residual) <= 1e-6


def test_linear_two_by_two_by_hand():
    """Linear buyers, B = (1, 2), U = [[2, 1], [1, 1]], unit supplies.

    Eisenberg–Gale (1959): max sum_i B_i log(U_i . x_i) s.t. sum_i x_ij <= 1 has
    the KKT conditions U_ij / u_i <= p_j / B_i, with equality where x_ij > 0 (every
    buyer spends only on goods of maximum bang per buck U_ij / p_j). Guess: buyer 1
    buys good 1 only, buyer 2 buys both, so buyer 2 is indifferent, 1 / p_1 = 1 / p_2,
    and all money is spent, p_1 + p_2 = 3: p = (3/2, 3/2). Check buyer 1: 2 / 1.5 >
    1 / 1.5, so good 1 only, x_11 = 1 / 1.5 = 2/3; buyer 2 gets the remaining 1/3 of
    good 1 (cost 1/2) and, with the rest 3/2, all of good 2. Proportional response
    reaches this float32 fixed point; tâtonnement cannot (demand is set-valued at the
    equilibrium) and must say so.
    """
    budgets, utilities, supply = (
        jnp.array([1.0, 2.0]),
        jnp.array([[2.0, 1.0], [1.0, 1.0]]),
        jnp.ones(2),
    )
    eq = equilibrium.fisher(
        budgets,
        utilities,
        supply,
        kind="linear",
        method="proportional_response",
        tol=1e-7,
        max_iters=2000,
    )
    assert bool(eq.converged)
    np.testing.assert_allclose(eq.prices, [1.5, 1.5], rtol=1e-6)
    np.testing.assert_allclose(eq.allocation, [[2 / 3, 0.0], [1 / 3, 1.0]], atol=1e-6)

    tat = equilibrium.fisher(
        budgets,
        utilities,
        supply,
        kind="linear",
        method="tatonnement",
        tol=1e-6,
        max_iters=300,
    )
    assert not bool(tat.converged)
    assert float(tat.residual) > 1e-6
    assert bool(jnp.all(jnp.isfinite(tat.prices)))


@pytest.mark.parametrize("rho", [0.5, -2.0])
@pytest.mark.parametrize("method", METHODS)
def test_ces_identical_buyers_closed_form(rho, method):
    """Buyers with identical CES utilities u(x) = (sum_j U_j x_j^rho)^(1/rho) act
    like one buyer with the total budget B (demand is linear in income), who must
    consume the whole supply s. Its first-order condition at x = s gives prices
    proportional to the marginal utility, p_j ∝ U_j s_j^(rho - 1); spending the
    budget, sum_j p_j s_j = B, fixes p_j = B U_j s_j^(rho - 1) / sum_k U_k s_k^rho.
    Each buyer i gets the fraction B_i / B of every good."""
    u = jnp.array([1.0, 2.0, 3.0])
    utilities = jnp.stack([u, u])
    budgets, supply = jnp.array([1.0, 3.0]), jnp.array([1.0, 2.0, 0.5])
    expected = 4.0 * u * supply ** (rho - 1) / jnp.sum(u * supply**rho)
    eq = equilibrium.fisher(
        budgets,
        utilities,
        supply,
        kind="ces",
        method=method,
        tol=1e-6,
        max_iters=500,
        rho=rho,
    )
    assert bool(eq.converged)
    np.testing.assert_allclose(eq.prices, expected, rtol=1e-5)
    np.testing.assert_allclose(
        eq.allocation, jnp.outer(budgets / 4.0, supply), rtol=1e-5, atol=1e-6
    )


def test_step_too_large_is_not_converged():
    """Log-price tâtonnement on Cobb–Douglas has local gain 1 - eta; eta = 3
    overshoots by a factor 2 each round and never settles."""
    eq = equilibrium.fisher(
        CD_BUDGETS,
        CD_EXPONENTS,
        jnp.ones(3),
        kind="cobb_douglas",
        method="tatonnement",
        tol=1e-6,
        max_iters=300,
        step_size=3.0,
    )
    assert not bool(eq.converged)
    assert float(eq.residual) > 1e-6
    assert int(eq.iterations) == 300
    assert bool(jnp.all(jnp.isfinite(eq.prices)))


def _random_markets(n, m, g, seed=0):
    kb, ku, ks = jax.random.split(jax.random.key(seed), 3)
    budgets = jax.random.uniform(kb, (n, m), minval=0.5, maxval=2.0)
    utilities = jax.random.uniform(ku, (n, m, g), minval=0.1, maxval=1.0)
    supply = jax.random.uniform(ks, (n, g), minval=0.5, maxval=2.0)
    return budgets, utilities, supply


@pytest.mark.parametrize(
    ("kind", "method", "rho"),
    [
        ("ces", "proportional_response", 0.5),
        ("linear", "proportional_response", None),
        ("cobb_douglas", "tatonnement", None),
    ],
)
def test_batch_equals_loop_and_outputs_finite(kind, method, rho):
    budgets, utilities, supply = _random_markets(4, 4, 3)
    solve = functools.partial(
        equilibrium.fisher,
        kind=kind,
        method=method,
        tol=1e-6,
        max_iters=3000,
        rho=rho,
    )
    batched = jax.jit(jax.vmap(solve))(budgets, utilities, supply)
    for k in range(budgets.shape[0]):
        single = solve(budgets[k], utilities[k], supply[k])
        chex.assert_trees_all_close(
            jax.tree.map(lambda a, k=k: a[k], batched), single, rtol=1e-5, atol=1e-6
        )
    assert bool(jnp.all(batched.converged))
    for leaf in jax.tree.leaves(batched):
        assert bool(jnp.all(jnp.isfinite(leaf)))


def test_compiles_once():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def solve(budgets, utilities, supply, tol):
        return equilibrium.fisher(
            budgets,
            utilities,
            supply,
            kind="ces",
            method="proportional_response",
            tol=tol,
            max_iters=1000,
            rho=0.5,
        )

    budgets, utilities, supply = _random_markets(3, 3, 2, seed=1)
    for k in range(3):
        eq = solve(budgets[k], utilities[k], supply[k], 1e-6 * (k + 1))
        assert bool(eq.converged)


@settings(deadline=None, max_examples=15)
@given(
    budgets=hnp.arrays(np.float32, 3, elements=st.floats(0.125, 8.0, width=32)),
    exponents=hnp.arrays(np.float32, (3, 4), elements=st.floats(0.0625, 1.0, width=32)),
    supply=hnp.arrays(np.float32, 4, elements=st.floats(0.25, 4.0, width=32)),
)
def test_cobb_douglas_property(budgets, exponents, supply):
    """Random Cobb–Douglas markets: p_j = sum_i B_i a_ij / s_j, markets clear and
    every budget is spent, by both methods."""
    shares = exponents / exponents.sum(1, keepdims=True)
    expected = (budgets[:, None] * shares).sum(0) / supply
    for method in METHODS:
        eq = equilibrium.fisher(
            budgets,
            exponents,
            supply,
            kind="cobb_douglas",
            method=method,
            tol=1e-6,
            max_iters=200,
        )
        assert bool(eq.converged), method
        np.testing.assert_allclose(eq.prices, expected, rtol=1e-5)
        np.testing.assert_allclose(eq.allocation.sum(0), supply, rtol=1e-5)
        np.testing.assert_allclose(eq.allocation @ eq.prices, budgets, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"kind": "leontief"}, "kind"),
        ({"method": "newton"}, "method"),
        ({"kind": "ces", "rho": None}, "rho"),
        ({"kind": "ces", "rho": 1.0}, "rho"),
        ({"budgets": jnp.ones(3)}, "budgets"),
        ({"supply": jnp.ones((2, 1))}, "supply"),
        ({"utilities": jnp.ones(2)}, "utilities"),
    ],
)
def test_validation(kwargs, word):
    args = {
        "budgets": jnp.ones(2),
        "utilities": jnp.ones((2, 3)),
        "supply": jnp.ones(3),
        "kind": "linear",
        "method": "proportional_response",
        "tol": 1e-6,
        "max_iters": 10,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        equilibrium.fisher(**args)


@pytest.mark.parametrize(
    "name,budgets,utilities,supply",
    [
        ("budgets", [-1.0, 1.0], [[1.0, 1.0], [1.0, 2.0]], [1.0, 1.0]),
        ("budgets", [np.inf, 1.0], [[1.0, 1.0], [1.0, 2.0]], [1.0, 1.0]),
        ("utilities", [1.0, 1.0], [[-1.0, 1.0], [1.0, 2.0]], [1.0, 1.0]),
        ("utilities", [1.0, 1.0], [[np.nan, 1.0], [1.0, 2.0]], [1.0, 1.0]),
        ("supply", [1.0, 1.0], [[1.0, 1.0], [1.0, 2.0]], [0.0, 1.0]),
        ("supply", [1.0, 1.0], [[1.0, 1.0], [1.0, 2.0]], [np.inf, 1.0]),
    ],
)
def test_bad_values_rejected_or_never_converged(name, budgets, utilities, supply):
    """Concrete bad values: ValueError naming the argument; traced: not converged."""
    args = [np.asarray(a, np.float32) for a in (budgets, utilities, supply)]
    kw = dict(kind="linear", method="proportional_response", tol=1e-6, max_iters=50)
    with pytest.raises(ValueError, match=f"^{name} "):
        equilibrium.fisher(*args, **kw)
    eq = jax.jit(lambda b, u, s: equilibrium.fisher(b, u, s, **kw))(*args)
    assert not bool(eq.converged)
