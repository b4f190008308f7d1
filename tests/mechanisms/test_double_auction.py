"""Gode & Sunder (1993) double auction: the protocol on hand-made sequences, against
a plain-Python reference, the issue's surplus identity, ZI-C's no-loss property,
efficiency's shape and input validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax import double_auction as da

VALUES = np.array([150.0, 100.0])  # buyers 0, 1
COSTS = np.array([50.0, 80.0])  # sellers 0, 1 are traders 2, 3


def test_hand_made_sequence():
    who = [0, 1, 3, 2, 1, 0, 3, 0]
    quotes = [90.0, 85.0, 120.0, 95.0, 96.0, 70.0, 60.0, 199.0]
    # 1 bid 90 stands; 2 bid 85 does not improve; 3 ask 120 stands; 4 ask 95
    # improves; 5 buyer 1 bids 96 >= 95: trade at 95 with seller 0, book cleared;
    # 6 buyer 0 bids 70 (the old 90 is gone); 7 seller 1 asks 60 <= 70: trade at
    # 70; 8 buyer 0 has traded, its quote is ignored.
    st = da.replay(VALUES, COSTS, who, quotes)
    np.testing.assert_array_equal(np.asarray(st.prices), [95.0, 70.0])
    np.testing.assert_array_equal(np.asarray(st.buyers), [1, 0])
    np.testing.assert_array_equal(np.asarray(st.sellers), [0, 1])
    assert int(st.num_trades) == 2
    assert float(st.surplus) == (100 - 50) + (150 - 80)
    assert int(st.bidder) == -1 and float(st.bid) == -np.inf


def test_quotes_are_cancelled_after_a_trade_and_improvement_is_strict():
    values, costs = np.array([150.0, 100.0, 120.0]), np.array([50.0, 80.0])
    # bid 90 (buyer 0), ask 60 (seller 0) trades at 90; then ask 85 (seller 1)
    # must NOT trade with buyer 0's old bid, which was cancelled.
    st = da.replay(values, costs, [0, 3, 4], [90.0, 60.0, 85.0])
    assert int(st.num_trades) == 1 and float(st.prices[0]) == 90.0
    assert float(st.ask) == 85.0 and int(st.asker) == 1
    # an equal bid does not replace the standing one (strict improvement)
    st = da.replay(values, costs, [0, 1], [90.0, 90.0])
    assert int(st.bidder) == 0
    # a bid equal to the ask trades, at the ask
    st = da.replay(values, costs, [3, 2], [70.0, 70.0])
    assert int(st.num_trades) == 1 and int(st.buyers[0]) == 2


def reference(values, costs, who, quotes):
    """Plain-Python statement of the protocol."""
    nb = len(values)
    bought, sold, bid, ask, trades = set(), set(), None, None, []
    for w, x in zip(who, quotes, strict=True):
        if w < nb and w not in bought:
            if ask is not None and x >= ask[0]:
                trades.append((ask[0], w, ask[1]))
                bought.add(w), sold.add(ask[1])
                bid = ask = None
            elif bid is None or x > bid[0]:
                bid = (x, w)
        elif w >= nb and (w - nb) not in sold:
            if bid is not None and x <= bid[0]:
                trades.append((bid[0], bid[1], w - nb))
                bought.add(bid[1]), sold.add(w - nb)
                bid = ask = None
            elif ask is None or x < ask[0]:
                ask = (x, w - nb)
    return trades


def test_random_sequences_match_the_reference():
    rng = np.random.default_rng(0)
    for _ in range(20):
        nb, ns = rng.integers(1, 6, size=2)
        values = rng.uniform(1, 200, nb).astype(np.float32)
        costs = rng.uniform(1, 200, ns).astype(np.float32)
        who = rng.integers(0, nb + ns, 60)
        quotes = rng.uniform(1, 200, 60).astype(np.float32)
        st = da.replay(values, costs, who, quotes)
        trades = reference(
            values.tolist(), costs.tolist(), who.tolist(), quotes.tolist()
        )
        n = len(trades)
        assert int(st.num_trades) == n
        if n:
            p, b, s = map(np.array, zip(*trades, strict=True))
            np.testing.assert_array_equal(np.asarray(st.prices[:n]), p)
            np.testing.assert_array_equal(np.asarray(st.buyers[:n]), b)
            np.testing.assert_array_equal(np.asarray(st.sellers[:n]), s)
        assert np.all(np.isnan(np.asarray(st.prices[n:])))


def test_zi_u_when_every_unit_trades_surplus_is_sum_v_minus_sum_c():
    values, costs = np.array([150.0, 30.0, 120.0]), np.array([100.0, 40.0, 10.0])
    # CE pairs 150-10 and 120-40 (the 30-100 pair loses): 220. Σv − Σc = 150.
    assert da.competitive_equilibrium(values, costs)[3] == 220.0
    r = da.simulate(jax.random.key(0), values, costs, trader="zi_u", num_sessions=200)
    assert np.all(np.asarray(r.num_trades) == 3)
    np.testing.assert_allclose(np.asarray(r.efficiency), 150.0 / 220.0, rtol=1e-6)


def test_zi_c_never_trades_at_a_loss():
    values = np.array([190.0, 150.0, 120.0, 90.0, 40.0])
    costs = np.array([20.0, 60.0, 100.0, 130.0, 170.0])
    st = da.simulate_sessions(
        jax.random.key(1), jnp.asarray(values, jnp.float32),
        jnp.asarray(costs, jnp.float32), 1.0, 200.0,
        trader="zi_c", num_sessions=500, max_steps=300,
    )  # fmt: skip
    traded = np.asarray(st.buyers) >= 0
    p = np.asarray(st.prices)[traded]
    assert traded.sum() > 500  # plenty of trades were checked
    assert np.all(p <= values[np.asarray(st.buyers)[traded]])
    assert np.all(p >= costs[np.asarray(st.sellers)[traded]])
    eff = np.asarray(st.surplus) / da.competitive_equilibrium(values, costs)[3]
    assert eff.min() >= 0.0 and eff.max() <= 1.0 + 1e-6


def test_zi_c_is_efficient_and_zi_u_is_not():
    values = np.linspace(60, 190, 12)
    costs = np.linspace(20, 150, 12)
    key = jax.random.key(2)
    zc = da.simulate(key, values, costs, trader="zi_c", num_sessions=500, max_steps=500)
    zu = da.simulate(key, values, costs, trader="zi_u", num_sessions=500, max_steps=500)
    assert float(jnp.mean(zc.efficiency)) > 0.93
    assert float(jnp.mean(zu.efficiency)) < float(jnp.mean(zc.efficiency)) - 0.15
    assert zc.prices.shape == (500, 12) and zc.num_trades.dtype == jnp.int32
    # same key, same numbers; a new key compiles nothing new
    again = da.simulate(
        key, values, costs, trader="zi_c", num_sessions=500, max_steps=500
    )
    np.testing.assert_array_equal(
        np.asarray(zc.efficiency), np.asarray(again.efficiency)
    )
    before = da.simulate_queue._cache_size()
    da.simulate(jax.random.key(9), values, costs, trader="zi_c", num_sessions=500,
                max_steps=500)  # fmt: skip
    assert da.simulate_queue._cache_size() == before


@pytest.mark.parametrize("trader", da.TRADERS)
def test_work_queue_gives_the_same_sessions_as_the_plain_vmap(trader):
    values = jnp.linspace(60.0, 190.0, 6)
    costs = jnp.linspace(20.0, 150.0, 7)
    kw = {"trader": trader, "num_sessions": 150, "max_steps": 700}
    plain = da.simulate_sessions(jax.random.key(4), values, costs, 1.0, 200.0, **kw)
    queued = da.simulate_queue(
        jax.random.key(4), values, costs, 1.0, 200.0, lanes=16, **kw
    )
    np.testing.assert_array_equal(np.asarray(plain.surplus), np.asarray(queued[0]))
    np.testing.assert_array_equal(np.asarray(plain.num_trades), np.asarray(queued[1]))
    np.testing.assert_array_equal(np.asarray(plain.prices), np.asarray(queued[2]))


def test_competitive_equilibrium_by_hand():
    q, low, high, surplus = da.competitive_equilibrium([150, 100, 30], [50, 80, 120])
    # units 150-50 and 100-80 trade; the price lies in [80, 100]
    assert (q, low, high, surplus) == (2, 80.0, 100.0, 120.0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"trader": "zi_x"}, "trader"),
        ({"num_sessions": 0}, "num_sessions"),
        ({"max_steps": -1}, "max_steps"),
        ({"price_range": (200.0, 1.0)}, "price_range"),
        ({"values": [[100.0]]}, "values"),
        ({"costs": [250.0]}, "costs"),
        ({"values": [float("nan")]}, "values"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, name):
    args = {"values": [100.0], "costs": [50.0], "trader": "zi_c", "num_sessions": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        da.simulate(jax.random.key(0), **args)
