"""Equ for coupled quadratic valuations: hand-derived fixtures, closed form, caps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.markets.wide_clear import cap_bids, clear
from marketjax.mechanisms import quadratic_equ as qe


@pytest.mark.parametrize(
    "d, rho, expected",
    [
        # complements, both goods active: x = C^-1 d, C^-1 = (4/3)[[1, .5], [.5, 1]]
        ([2.0, 1.0], -0.5, [10 / 3, 8 / 3]),
        # complements, good 2 inactive: S = 2/(a + b) = 2, d_2 - bS = -0.5 < 0
        ([2.0, -1.5], -0.5, [2.0, 0.0]),
        # substitutes: k = 1, S = 3/(a + b) = 3, x_1 = (3 - 1.5)/0.5, d_2 - bS < 0
        ([3.0, 1.0], 0.5, [3.0, 0.0]),
        # nothing worth having
        ([-1.0, -0.2], 0.5, [0.0, 0.0]),
    ],
)
def test_demand_matches_hand_derived_bundles(d, rho, expected):
    x = qe.demand(jnp.asarray(d, jnp.float32), 1.0, rho)
    np.testing.assert_allclose(x, expected, atol=1e-6)


def test_demand_meets_the_kkt_conditions_on_random_economies():
    """x >= 0, and d - Cx is 0 where x > 0 and <= 0 where x = 0."""
    k_d, k_r = jax.random.split(jax.random.key(0))
    g = 6
    d = 2.0 * jax.random.normal(k_d, (500, g))
    lo, _ = qe.coupling_bounds(g)
    rho = jax.random.uniform(k_r, (500,), minval=lo * 0.95, maxval=0.9)
    x = qe.demand(d, 0.7, rho)
    cmat = jax.vmap(lambda r: qe.curvature_matrix(0.7, r, g))(rho)
    grad = d - jnp.einsum("bgh,bh->bg", cmat, x)
    assert float(jnp.min(x)) >= 0.0
    assert float(jnp.max(jnp.abs(jnp.where(x > 0, grad, 0.0)))) <= 1e-4
    assert float(jnp.max(jnp.where(x > 0, -jnp.inf, grad))) <= 1e-4


def test_two_agents_two_complements_match_the_hand_derived_equilibrium():
    """c = 1, ρ = -0.5 (C = [[1, -.5], [-.5, 1]]), q_1 = (3, 1), q_2 = (1, 2), s = 1.

    Guess agent 2 holds none of good 1. Agent 1 interior: 3 - p_1 = 1 - x_12/2 and
    1 - p_2 = -1/2 + x_12; agent 2 on good 2: 2 - p_2 = x_22 = 1 - x_12. Hence
    x_12 = 1/4, p = (2.125, 1.25), x_2 = (0, 3/4); agent 2's good-1 condition
    1 - p_1 + x_22/2 = -0.75 <= 0 confirms the guess.
    """
    q = jnp.asarray([[3.0, 1.0], [1.0, 2.0]], jnp.float32)
    p0 = jnp.asarray([[0.0, 0.0], [10.0, -5.0], [2.1, 1.3]], jnp.float32)
    eq = jax.jit(
        lambda p0: qe.solve_batch(jnp.stack([q] * 3), 1.0, -0.5, 1.0, p0, tol=1e-6)
    )(p0)
    assert bool(jnp.all(eq.converged))
    np.testing.assert_allclose(eq.prices, [[2.125, 1.25]] * 3, atol=1e-5)
    np.testing.assert_allclose(
        eq.allocation, [[[1.0, 0.25], [0.0, 0.75]]] * 3, atol=1e-5
    )


def test_separable_case_equals_the_closed_form():
    """ρ = 0: the iterative solver gives water filling's prices and bundles, bads
    (negative prices) included."""
    q = 3.0 * jax.random.normal(jax.random.key(1), (64, 8, 4)) - 1.0
    eq = jax.jit(
        lambda q: qe.solve_batch(q, 0.2, 0.0, 1.0, jnp.zeros((64, 4)), tol=1e-6)
    )(q)
    price, alloc = clear(jnp.swapaxes(q, 1, 2), 1.0, 0.2)
    assert bool(jnp.all(eq.converged))
    assert float(jnp.min(price)) < 0.0
    np.testing.assert_allclose(eq.prices, price, atol=2e-5)
    np.testing.assert_allclose(eq.allocation, jnp.swapaxes(alloc, 1, 2), atol=1e-4)


def test_warm_start_at_the_equilibrium_needs_no_iteration_and_failure_is_reported():
    q = 2.0 * jax.random.normal(jax.random.key(2), (16, 6, 5))
    solve = jax.jit(
        lambda p0, it: qe.solve_batch(q, 0.1, 0.6, 1.0, p0, tol=1e-4, max_iters=it)
    )
    eq = solve(jnp.zeros((16, 5)), 50)
    assert bool(jnp.all(eq.converged))
    again = solve(eq.prices, 50)
    np.testing.assert_array_equal(again.iterations, 0)
    cold = solve(jnp.full((16, 5), 40.0), 1)
    assert not bool(jnp.all(cold.converged))
    fails = ~cold.converged
    assert bool(jnp.all(cold.residual[fails] > 1e-4))
    np.testing.assert_array_equal(cold.iterations, 1)


def test_coupled_caps_bound_the_valuation_and_shared_payments():
    """After the cap, ½ q⁺ᵀC⁻¹q⁺ <= room; at equilibrium p·x_i <= v_i(x_i) <= room,
    so an agent's payments over all B episodes stay within B · room."""
    k_q, k_w = jax.random.split(jax.random.key(3))
    b, n, g, c, rho = 32, 5, 4, 0.2, -0.2
    raw = 5.0 * jax.random.normal(k_q, (b, n, g)) + 2.0
    room = jax.random.uniform(k_w, (n,), minval=0.0, maxval=2.0)
    bids = cap_bids(raw, room, c, jnp.float32(rho))
    sup = qe.inverse_form(jnp.maximum(bids, 0.0), c, rho)
    assert bool(jnp.all(sup <= room[None] * (1 + 1e-5) + 1e-7))
    eq = jax.jit(lambda q: qe.solve_batch(q, c, rho, 1.0, jnp.zeros((b, g)), tol=1e-6))(
        bids
    )
    cmat = qe.curvature_matrix(c, rho, g)
    x = eq.allocation
    value = jnp.sum(bids * x, -1) - 0.5 * jnp.einsum("bng,gh,bnh->bn", x, cmat, x)
    paid = jnp.einsum("bg,bng->bn", eq.prices, x)
    assert bool(jnp.all(paid <= value + 1e-4))
    assert bool(jnp.all(jnp.sum(paid, 0) <= b * room + 1e-3))
    # ρ = 0 reduces to the first wave's rule exactly.
    np.testing.assert_allclose(
        cap_bids(raw, room, c, jnp.float32(0.0)), cap_bids(raw, room, c), rtol=1e-5
    )


def test_a_chunk_reports_the_worst_equ_iterations_and_residual_not_their_mean():
    from marketjax.experiment.runner import reduce_metrics

    per_update = {
        "episode_return_sum": jnp.zeros(3),
        "episode_count": jnp.ones(3),
        "equ_iterations_max": jnp.asarray([1.0, 7.0, 2.0]),
        "equ_residual_max": jnp.asarray([1e-6, 3e-5, 2e-6]),
        "equ_iterations_mean": jnp.asarray([1.0, 2.0, 3.0]),
    }
    out = reduce_metrics(per_update)
    assert float(out["equ_iterations_max"]) == 7.0
    assert float(out["equ_residual_max"]) == pytest.approx(3e-5)
    assert float(out["equ_iterations_mean"]) == pytest.approx(2.0)
