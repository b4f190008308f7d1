"""Auctions: fixtures, ties, masks, batching, and Vickrey truthfulness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketjax import auctions


def test_first_and_second_price_fixture():
    bids = jnp.array([0.2, 0.7, 0.5, 0.1])
    fp = auctions.first_price(bids)
    sp = auctions.second_price(bids)
    assert int(fp.winner) == 1 and float(fp.price) == np.float32(0.7)
    assert int(sp.winner) == 1 and float(sp.price) == np.float32(0.5)


def test_ties_go_to_lowest_index():
    bids = jnp.array([0.3, 0.9, 0.9, 0.9])
    assert int(auctions.first_price(bids).winner) == 1
    r = auctions.second_price(bids)
    assert int(r.winner) == 1 and float(r.price) == np.float32(0.9)


def test_valid_mask_excludes_bids_and_nobody_valid_gives_minus_one():
    bids = jnp.array([0.9, 0.4, 0.6])
    valid = jnp.array([False, True, True])
    fp = auctions.first_price(bids, valid)
    sp = auctions.second_price(bids, valid)
    assert int(fp.winner) == 2 and float(fp.price) == np.float32(0.6)
    assert float(sp.price) == np.float32(0.4)
    none = auctions.second_price(bids, jnp.zeros(3, bool))
    assert int(none.winner) == -1 and float(none.price) == 0.0
    assert int(auctions.first_price(bids, jnp.zeros(3, bool)).winner) == -1


def test_lone_bidder_pays_zero_under_second_price():
    bids = jnp.array([0.1, 5.0, 0.2])
    r = auctions.second_price(bids, jnp.array([False, True, False]))
    assert int(r.winner) == 1 and float(r.price) == 0.0


def test_batched_over_leading_axes_equals_loop():
    bids = jax.random.uniform(jax.random.key(0), (3, 5, 7))
    valid = jax.random.bernoulli(jax.random.key(1), 0.7, (3, 5, 7))
    batched = auctions.second_price(bids, valid)
    assert batched.winner.shape == (3, 5) and batched.winner.dtype == jnp.int32
    for i in range(3):
        for j in range(5):
            single = auctions.second_price(bids[i, j], valid[i, j])
            assert int(single.winner) == int(batched.winner[i, j])
            assert float(single.price) == float(batched.price[i, j])


def test_negative_bids_are_ranked():
    r = auctions.second_price(jnp.array([-3.0, -1.0, -2.0]))
    assert int(r.winner) == 1 and float(r.price) == -2.0


@settings(deadline=None, max_examples=60)
@given(
    others=st.lists(st.floats(0.0, 10.0, width=32), min_size=1, max_size=6),
    value=st.floats(0.0, 10.0, width=32),
    deviation=st.floats(0.0, 10.0, width=32),
)
def test_vickrey_truthful_bidding_is_a_best_response(others, value, deviation):
    """Bidding one's value weakly dominates any other bid (Vickrey 1961)."""

    def utility(my_bid):
        bids = jnp.array([my_bid, *others], jnp.float32)
        r = auctions.second_price(bids)
        won = int(r.winner) == 0
        return (np.float32(value) - float(r.price)) if won else 0.0

    assert utility(value) >= utility(deviation) - 1e-6


def test_nan_bids_are_invalid_and_masks_may_be_lists():
    # A NaN bid used to name winner N (out of range) and a NaN price.
    bids = jnp.array([0.2, jnp.nan, 0.5])
    sp = auctions.second_price(bids)
    assert int(sp.winner) == 2 and float(sp.price) == np.float32(0.2)
    none = auctions.first_price(jnp.full((2, 3), jnp.nan))
    assert none.winner.tolist() == [-1, -1] and none.price.tolist() == [0.0, 0.0]
    fp = auctions.first_price(jnp.array([0.2, 0.7, 0.5]), [True, False, True])
    assert int(fp.winner) == 2 and float(fp.price) == np.float32(0.5)


def test_infinite_bids_are_invalid_like_nan():
    """Nobody can pay inf: +inf and -inf bids do not count (issue 14)."""
    r = auctions.second_price(jnp.array([jnp.inf, jnp.inf]))
    assert int(r.winner) == -1 and float(r.price) == 0.0
    r = auctions.second_price(jnp.array([jnp.inf, 0.4, 0.7, -jnp.inf]))
    assert int(r.winner) == 2 and float(r.price) == np.float32(0.4)
    r = auctions.first_price(jnp.array([jnp.nan, jnp.inf, 0.3]))
    assert int(r.winner) == 2 and float(r.price) == np.float32(0.3)


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="bids"):
        auctions.first_price(jnp.float32(1.0))
    with pytest.raises(ValueError, match="valid"):
        auctions.second_price(jnp.ones(3), jnp.ones(2, bool))
