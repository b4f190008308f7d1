"""The ledger: one rent rule, transfers, diagnostics, axis metadata."""

import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.core.axes import leaf_axes
from marketjax.markets.deep import DeepMarketState
from marketjax.markets.diagnostics import gini, ownership_diagnostics
from marketjax.markets.ledger import (
    BUDGET_HEADROOM,
    rent_due,
    scaled_commitment,
    transfer,
)


def test_proportional_rent_drains_a_sole_owner_as_one_minus_eps_to_the_t():
    eps, b = 0.03, 64
    wealth = jnp.array([100.0, 50.0])
    held = jnp.array([float(b), 0.0])  # agent 0 owns all B episodes; 1 is idle
    for _ in range(50):
        wealth = wealth - rent_due(wealth, held, b, eps)
    np.testing.assert_allclose(wealth[0], 100.0 * (1 - eps) ** 50, rtol=1e-5)
    assert float(wealth[1]) == 50.0


def test_flat_rent_is_eps_per_holding_and_unknown_rules_are_refused():
    np.testing.assert_allclose(
        rent_due(jnp.array([5.0]), jnp.array([3.0]), 8, 0.5, "flat"), [1.5]
    )
    with pytest.raises(ValueError, match="rent rule"):
        rent_due(jnp.array([5.0]), jnp.array([3.0]), 8, 0.5, "progressive")


def test_transfer_sums_payments_per_account_with_the_bank_last():
    delta = transfer(jnp.array([0, 2, 0, 1]), jnp.array([1.0, -2.0, 0.5, 3.0]), 2)
    np.testing.assert_allclose(delta, [1.5, 3.0, -2.0])


def test_gini_of_known_distributions():
    assert float(gini(jnp.ones(10))) == pytest.approx(0.0, abs=1e-6)
    one_holds_all = jnp.array([0.0, 0.0, 0.0, 8.0])
    assert float(gini(one_holds_all)) == pytest.approx(0.75, rel=1e-6)  # (n-1)/n
    assert float(gini(jnp.array([1.0, 3.0]))) == pytest.approx(0.25, rel=1e-6)


def test_ownership_diagnostics_count_wins_caps_and_ages():
    winner = jnp.array([[0, 1], [1, -1], [1, 1]])
    capped = jnp.array([[True, False], [False, False], [True, False]])
    age = jnp.array([4, 10, 0])
    d = ownership_diagnostics(winner, capped, age, 3)
    assert float(d["win_top_share"]) == pytest.approx(4 / 5)
    assert float(d["capped_fraction"]) == pytest.approx(2 / 5)
    assert float(d["owner_age"]) == pytest.approx((4 + 10 * 4) / 5)


def test_market_state_fields_name_their_axes():
    from marketjax.agents.population import Population
    from marketjax.markets.ledger import Books

    pop = Population(
        jnp.zeros((3, 2)), jnp.zeros(3), jnp.ones(3, bool), jnp.zeros(3), jnp.zeros(3)
    )
    state = DeepMarketState(
        pop, None, jnp.zeros((4, 2)), jnp.zeros(4), None, Books.open(pop.wealth)
    )
    axes = leaf_axes(state)
    assert axes["obs"] == ("B", "D")
    assert axes["owner"] == ("B",)
    assert axes["population.wealth"] == ("N",)


def test_scaled_commitment_scales_each_agents_positive_bids_by_one_factor():
    # B = 2 episodes, N = 3 agents. Agent 0 commits 4 + 2 = 6 > budget 3: both bids
    # halved (ratio 2:1 kept). Agent 1 commits 2 <= 10: unchanged. Agent 2 commits
    # only its positive bid, 3 > 1.5: halved; its negative bid passes unchanged.
    raw = jnp.array([[4.0, 1.0, -2.0], [2.0, 1.0, 3.0]])
    budget = jnp.array([3.0, 10.0, 1.5])
    out = scaled_commitment(raw, budget)
    h = 1.0 - BUDGET_HEADROOM
    np.testing.assert_allclose(
        out, [[2.0 * h, 1.0, -2.0], [1.0 * h, 1.0, 1.5 * h]], rtol=1e-6
    )
    committed = jnp.sum(jnp.maximum(out, 0.0), axis=0)
    assert bool(jnp.all(committed <= budget))


def test_limited_liability_covers_only_resale_that_would_overdraw():
    """By hand: an agent 3 below zero that paid 5 to hand rights on is covered 3;
    one above zero nothing; one 1 below zero that paid 0.5 is covered 0.5 (the
    other 0.5 came from the world, which the bank does not cover)."""
    from marketjax.markets.ledger import limited_liability

    after = jnp.asarray([-3.0, 2.0, -1.0], jnp.float32)
    resale = jnp.asarray([5.0, 1.0, 0.5], jnp.float32)
    np.testing.assert_allclose(limited_liability(after, resale), [3.0, 0.0, 0.5])
