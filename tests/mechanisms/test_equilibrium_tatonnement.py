"""Generic tâtonnement: known equilibria, Scarf's cycle, large steps, optax rules."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from marketjax import equilibrium


def linear_market(p):
    """Demand 10 - p, supply 2p - 2 (one good): z(p) = 12 - 3p, so p* = 4."""
    return 12.0 - 3.0 * p


def exchange_economy(p):
    """Two Cobb–Douglas consumers; consumer 1 owns one unit of good 1 and has
    exponents (1/2, 1/2); consumer 2 owns one unit of good 2, exponents (1/4, 3/4).
    Demand x_ij = a_ij (p . e_i) / p_j. Clearing good 1: 1/2 + (1/4) p_2 / p_1 = 1,
    so p_1 / p_2 = 1/2 (good 2 clears by Walras' law); the allocation is
    x_1 = (1/2, 1/4), x_2 = (1/2, 3/4)."""
    endowments = jnp.eye(2)
    exponents = jnp.array([[0.5, 0.5], [0.25, 0.75]])
    x = exponents * (endowments @ p)[:, None] / p[None, :]
    return x.sum(0) - 1.0, x


def scarf(p):
    """Scarf (1960): consumer i owns one unit of good i and has Leontief utility
    min(x_i, x_{i+1}), so it buys p_i / (p_i + p_{i+1}) of goods i and i + 1. The
    unique equilibrium ray is p ∝ (1, 1, 1), yet continuous tâtonnement dp/dt = z(p)
    conserves sum_j p_j^2 (Walras' law) and prod_j p_j, so it cycles forever around
    the ray from any other start."""
    nxt, prv = jnp.roll(p, -1), jnp.roll(p, 1)
    return p / (p + nxt) + prv / (prv + p) - 1.0


@pytest.mark.parametrize("price_update", equilibrium.PRICE_UPDATES)
def test_linear_market_known_price(price_update):
    eq = equilibrium.tatonnement(
        linear_market,
        jnp.array([1.0]),
        step_size=0.1,
        max_iters=200,
        tol=1e-5,
        price_update=price_update,
    )
    assert bool(eq.converged)
    np.testing.assert_allclose(eq.prices, [4.0], rtol=1e-5)
    assert eq.allocation.shape == (0, 1)
    assert float(eq.residual) <= 1e-5


def test_exchange_economy_with_allocation():
    eq = equilibrium.tatonnement(
        exchange_economy,
        jnp.ones(2),
        step_size=1.0,
        max_iters=100,
        tol=1e-6,
        has_aux=True,
    )
    assert bool(eq.converged)
    np.testing.assert_allclose(eq.prices[0] / eq.prices[1], 0.5, rtol=1e-5)
    np.testing.assert_allclose(eq.allocation, [[0.5, 0.25], [0.5, 0.75]], atol=1e-5)


@pytest.mark.parametrize("optimizer", [optax.sgd(0.1, momentum=0.5), optax.adam(0.05)])
def test_any_optax_rule(optimizer):
    eq = equilibrium.tatonnement(
        linear_market,
        jnp.array([1.0]),
        step_size=None,
        max_iters=2000,
        tol=1e-4,
        optimizer=optimizer,
    )
    assert bool(eq.converged)
    np.testing.assert_allclose(eq.prices, [4.0], rtol=1e-4)


def test_scarf_cycles_and_says_so():
    p0 = jnp.array([1.5, 1.0, 0.5])
    for iters in (200, 1000, 3000):
        eq = equilibrium.tatonnement(
            scarf,
            p0,
            step_size=0.01,
            max_iters=iters,
            tol=1e-3,
            price_update="additive",
        )
        assert not bool(eq.converged)
        assert float(eq.residual) > 0.2  # far from clearing, all along the orbit
        assert int(eq.iterations) == iters
        # Scarf's invariants hold up to the O(step) drift of the discrete rule.
        np.testing.assert_allclose(jnp.sum(eq.prices**2), 3.5, rtol=0.02)
        np.testing.assert_allclose(jnp.prod(eq.prices), 0.75, rtol=0.03)


def test_step_too_large_two_cycle():
    """z = 12 - 3p with additive step 2/3: p - 4 flips sign every round."""
    eq = equilibrium.tatonnement(
        linear_market,
        jnp.array([3.0]),
        step_size=2.0 / 3.0,
        max_iters=100,
        tol=1e-4,
        price_update="additive",
    )
    assert not bool(eq.converged)
    assert float(eq.residual) > 1.0
    assert bool(jnp.all(jnp.isfinite(eq.prices)))


def test_stall_is_reported_not_converged():
    """A step so small that float32 prices cannot move: stop early, unconverged."""
    eq = equilibrium.tatonnement(
        linear_market,
        jnp.array([1.0]),
        step_size=1e-12,
        max_iters=10_000,
        tol=1e-4,
    )
    assert not bool(eq.converged)
    assert int(eq.iterations) < 100
    np.testing.assert_allclose(eq.residual, 9.0, rtol=1e-5)


def test_nan_excess_demand_is_not_an_equilibrium():
    """A NaN excess demand at a zero price must not hide behind the projection."""
    eq = equilibrium.tatonnement(
        lambda p: jnp.where(p > 0, -1.0, jnp.nan),
        jnp.array([1.0]),
        step_size=2.0,
        max_iters=50,
        tol=1e-4,
        price_update="additive",
    )
    assert not bool(eq.converged)
    assert not bool(jnp.isfinite(eq.residual))


def test_jit_vmap_compiles_once():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def solve(p0, tol):
        return equilibrium.tatonnement(
            linear_market, p0, step_size=0.1, max_iters=500, tol=tol
        )

    starts = jnp.array([[0.5], [2.0], [9.0]])
    batched = jax.vmap(solve, in_axes=(0, None))(starts, 1e-5)
    for k in range(3):
        single = solve(starts[k], 1e-5)
        chex.assert_trees_all_close(
            jax.tree.map(lambda a, k=k: a[k], batched), single, rtol=1e-6
        )
    assert bool(jnp.all(batched.converged))


def test_barzilai_borwein_on_a_quadratic():
    rule = equilibrium.scale_by_barzilai_borwein(initial_step=0.1)
    eq = equilibrium.tatonnement(
        linear_market,
        jnp.array([1.0]),
        step_size=None,
        max_iters=20,
        tol=1e-5,
        optimizer=rule,
        price_update="additive",
    )
    assert bool(eq.converged)
    assert int(eq.iterations) <= 3  # one probe, then the exact secant step


def test_validation():
    with pytest.raises(ValueError, match="price_update"):
        equilibrium.tatonnement(
            linear_market,
            jnp.ones(1),
            step_size=0.1,
            max_iters=5,
            tol=1e-3,
            price_update="log",
        )
    with pytest.raises(ValueError, match="p0"):
        equilibrium.tatonnement(
            linear_market, jnp.ones((1, 1)), step_size=0.1, max_iters=5, tol=1e-3
        )
    with pytest.raises(ValueError, match="step_size"):
        equilibrium.tatonnement(
            linear_market, jnp.ones(1), step_size=None, max_iters=5, tol=1e-3
        )
    # An excess demand not shaped like p0 used to broadcast silently.
    with pytest.raises(ValueError, match="excess_demand must return shape"):
        equilibrium.tatonnement(
            lambda p: jnp.sum(1.0 - p), jnp.ones(2), step_size=0.1, max_iters=5, tol=1
        )
    with pytest.raises(ValueError, match="allocation must have shape"):
        equilibrium.tatonnement(
            lambda p: (1.0 - p, jnp.ones(3)),
            jnp.ones(2),
            step_size=0.1,
            max_iters=5,
            tol=1e-3,
            has_aux=True,
        )
