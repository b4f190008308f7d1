"""The three payment rules against Chang et al. (2020)'s own payoff code."""

import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.mechanisms import payments

BIDS_NOW = jnp.array([0.20, 0.70, 0.50, 0.10, 0.25, 0.65, 0.45, 0.05])
BIDS_NEXT = jnp.array([0.30, 0.10, 0.90, 0.40, 0.35, 0.15, 0.80, 0.60])


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("credit_conserving", 0.3 + 0.99 * 0.80 - 0.65),  # 0.442
        ("bucket_brigade", 0.3 + 0.99 * 0.90 - 0.70),  # 0.491
        ("vickrey", 0.3 + 0.99 * 0.90 - 0.65),  # 0.541
        ("env_reward", 0.3),  # the reward alone
    ],
)
def test_winner_utility_fixture(rule, expected):
    u = payments.winner_utility(rule, 0.3, 0.99, BIDS_NOW, BIDS_NEXT)
    np.testing.assert_allclose(float(u), expected, atol=1e-6)


def test_issue_fixture_values():
    ccv = payments.winner_utility("credit_conserving", 0.3, 0.99, BIDS_NOW, BIDS_NEXT)
    bb = payments.winner_utility("bucket_brigade", 0.3, 0.99, BIDS_NOW, BIDS_NEXT)
    np.testing.assert_allclose([float(ccv), float(bb)], [0.442, 0.491], atol=1e-6)


@pytest.mark.parametrize("rule", payments.RULES)
def test_last_step_next_price_counts_as_zero(rule):
    u = payments.winner_utility(rule, 0.3, 0.99, BIDS_NOW, BIDS_NEXT, last_step=True)
    paid = {"bucket_brigade": 0.70, "env_reward": 0.0}.get(rule, 0.65)
    np.testing.assert_allclose(float(u), 0.3 - paid, atol=1e-6)


def test_payment_table():
    top, second = jnp.float32(0.9), jnp.float32(0.8)
    assert payments.payment("bucket_brigade", top, second) == (top, top)
    assert payments.payment("vickrey", top, second) == (second, top)
    assert payments.payment("credit_conserving", top, second) == (second, second)
    # An exploration-lottery winner never pays more than its own bid.
    lottery = payments.payment("vickrey", top, second, jnp.float32(0.3))
    assert float(lottery.paid) == np.float32(0.3) and float(
        lottery.credit
    ) == np.float32(0.9)


def test_chang_names_cover_every_rule_once():
    assert sorted(payments.CHANG_NAMES.values()) == sorted(payments.RULES)
    assert payments.payment("env_reward", jnp.float32(0.9), jnp.float32(0.8)) == (0, 0)


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="unknown payment rule 'dutch'"):
        payments.payment("dutch", 1.0, 0.5)


def test_one_vocabulary_of_auction_rules():
    """Every payment rule is priced by a rule of ``auctions.AUCTIONS``, whose
    prices it charges; nn_market uses the same dictionary."""
    import jax.numpy as jnp

    from marketjax.embeddings import nn_market
    from marketjax.mechanisms import auctions, payments

    assert nn_market.AUCTIONS is auctions.AUCTIONS
    assert set(payments.PRICING) == set(payments.RULES)
    bids = jnp.array([0.2, 0.9, 0.5])
    for rule, auction in payments.PRICING.items():
        pay = payments.payment(rule, jnp.float32(0.9), jnp.float32(0.5))
        price = 0.0 if auction is None else auctions.AUCTIONS[auction](bids).price
        assert float(pay.paid) == float(price), rule
