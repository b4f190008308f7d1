"""Information bazaar (seed 003): the contractor's memory is really erased, VOI by
hand, money is conserved, and the three protocols separate as the paradox predicts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.markets import bazaar as bz

PARAMS = bz.BazaarParams(
    prior=jnp.float32(0.6),
    gain=jnp.float32(1.0),
    loss=jnp.float32(1.0),
    fee=jnp.float32(0.005),
    production_cost=jnp.float32(2.0),
    believed_quality=jnp.float32(0.725),
)
PRIOR = float(np.log(0.6 / 0.4))


def fresh(num_j=4, wealth=5.0):
    return bz.Buyer(jnp.float32(PRIOR), jnp.float32(wealth), jnp.zeros(num_j, bool))


def offer(buyer, j, quality, price, signal, protocol="inspect"):
    return bz.consider_offer(
        buyer, j, jnp.float32(quality), jnp.float32(price), jnp.asarray(signal),
        jnp.asarray(True), PARAMS, protocol,
    )  # fmt: skip


def test_value_of_information_by_hand():
    # At P = 0.6 with G = L = 1, a signal of accuracy a is worth max(0, a - 0.6).
    for a, voi in [(0.9, 0.3), (0.7, 0.1), (0.6, 0.0), (0.55, 0.0)]:
        got = bz.value_of_information(jnp.float32(PRIOR), jnp.float32(a), PARAMS)
        assert float(got) == pytest.approx(voi, abs=1e-6)
    assert float(bz.decision_value(jnp.float32(PRIOR), PARAMS)) == pytest.approx(0.2)


@pytest.mark.parametrize("signal", [True, False])
def test_rejected_offer_leaves_the_buyer_as_it_was_but_for_the_fee(signal):
    before = fresh()
    # VOI(0.7) = 0.1 < price 0.15: the contractor rejects, whatever the signal says
    after, fee, paid = offer(before, 2, 0.7, 0.15, signal)
    assert float(after.log_odds) == float(before.log_odds)
    np.testing.assert_array_equal(np.asarray(after.bought), np.asarray(before.bought))
    assert float(after.wealth) == float(before.wealth - PARAMS.fee)
    assert float(fee) == float(PARAMS.fee) and float(paid) == 0.0


def test_accepted_offer_is_learned_and_paid_for():
    after, _, paid = offer(fresh(), 1, 0.9, 0.1, True)
    np.testing.assert_allclose(float(after.log_odds), PRIOR + np.log(9.0), rtol=1e-6)
    assert bool(after.bought[1]) and float(paid) == pytest.approx(0.1)


def test_contents_of_rejected_offers_never_reach_the_buyer():
    """A buyer's whole round is the same whatever the rejected offers said; without
    forgetting it is not (so the test can fail)."""
    quality = [0.7, 0.9, 0.65, 0.8]
    price = [0.15, 0.05, 0.2, 0.12]  # offers 0 and 2 are worth less than they cost

    def run(signals, protocol):
        b = fresh()
        for j in range(4):
            b = offer(b, j, quality[j], price[j], signals[j], protocol)[0]
        return b

    base = [True, False, True, True]
    flipped = [False, False, False, True]  # only the rejected offers' contents differ
    a, b = run(base, "inspect"), run(flipped, "inspect")
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    a, b = run(base, "no_forget"), run(flipped, "no_forget")
    assert float(a.log_odds) != float(b.log_odds)


def small_run(protocol, rounds=60):
    informers = bz.Informers(
        quality=jnp.linspace(0.5, 0.95, 8),
        price=jnp.array([0.05, 0.1, 0.03, 0.08, 0.06, 0.04, 0.09, 0.07]),
    )
    state0 = bz.init(32, 8)
    run = jax.jit(bz.simulate, static_argnames=("protocol", "offers", "num_rounds"))
    final, rec = run(jax.random.key(0), state0, informers, PARAMS,
                     protocol=protocol, offers=3, num_rounds=rounds)  # fmt: skip
    return state0, final, rec


@pytest.mark.parametrize("protocol", bz.PROTOCOLS)
def test_money_is_conserved(protocol):
    state0, final, _ = small_run(protocol)
    scale = float(jnp.sum(jnp.abs(final.buyer_wealth))) + float(final.costs) + 1.0
    drift = abs(float(bz.money(final)) - float(bz.money(state0)))
    assert drift / scale < 1e-5
    assert float(final.fees) > 0 or protocol == "blind"


def test_protocols_separate_as_the_paradox_predicts():
    _, _, ins = small_run("inspect")
    _, _, blind = small_run("blind")
    _, _, nof = small_run("no_forget")
    rev = {k: np.asarray(r.revenue).sum(0) for k, r in
           [("inspect", ins), ("blind", blind), ("no_forget", nof)]}  # fmt: skip
    wealth = lambda r: np.asarray(r.informer_wealth[-1])
    # the pure-noise informer (a = 0.5) is worthless at any belief: with inspection
    # it is never paid; blind buyers pay it like anybody else
    assert rev["inspect"][0] == 0.0 and rev["blind"][0] > 0.0
    # with inspection, revenue rises with quality; blind, the better informers, who
    # pay more to produce and are paid no more, end poorer (adverse selection)
    ranks = np.argsort(np.argsort(rev["inspect"]))
    assert np.corrcoef(ranks, np.arange(8))[0, 1] > 0.5
    assert rev["inspect"][4:].sum() > 2 * rev["inspect"][:4].sum()
    assert wealth(blind)[4:].mean() < wealth(blind)[:4].mean()
    # inspecting without forgetting pays nobody, and sellers leave
    assert rev["no_forget"].sum() == 0.0 and int(nof.alive[-1]) <= 2
    # useful purchases: all of them with inspection, not so blind
    useful = lambda r: float(np.sum(r.useful_purchases) / np.sum(r.purchases))
    assert useful(ins) > 0.99 and useful(blind) < 0.8
    # buyers do best with the bazaar in the long run
    late = lambda r: float(np.mean(r.payoff[-20:]))
    assert late(ins) > late(blind) and late(ins) > late(nof) + 0.1
