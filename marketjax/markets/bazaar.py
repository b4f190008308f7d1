"""The information bazaar: the buyer's inspection paradox, as a jitted toy (seed 003).

Arrow (1962) / the seed's "Buyer's Inspection Paradox": information cannot be
inspected before purchase, since inspecting it is obtaining it. Rahaman, Weiss et al.
(2024, "Language models can reduce asymmetry in information markets") propose the
Information Bazaar: a contractor inspects on the buyer's behalf and then forgets,
keeping only the buy / no-buy decision (Wentworth's "amnestic").

The toy. Each round each of M buyers faces a fresh decision: act (gain G if θ = 1,
lose L if θ = 0, θ ~ Bernoulli(prior)) or not (0). J informers each sell a signal of
θ with accuracy a_j ∈ [0.5, 1] (their quality, invisible from outside) at an asking
price c_j (independent of quality); producing signals costs each live informer
κ (a_j − ½) per round, and an informer whose wealth falls to 0 leaves. A buyer is
shown ``offers`` live informers per round, in random order, and by protocol:

* ``"inspect"`` — pays a fee f; the contractor reads the offer (signal and quality),
  buys iff the value of information VOI(a_j | the buyer's belief) exceeds c_j, then
  forgets: the buyer's belief changes only if it bought;
* ``"blind"`` — no inspection: the buyer values every offer at the population's
  mean quality ``believed_quality`` (quality is not observable), buys iff that VOI
  exceeds c_j, and updates as if the signal had that quality;
* ``"no_forget"`` — the buyer inspects the offer itself (pays f), so it learns the
  signal, and rationally declines to pay for what it already knows.

Money: nature pays decision payoffs in, fees go to the contractor, production costs go
out; buyers pay informers. Σ buyers + Σ informers + fees + costs − nature is constant
(``BazaarState.books`` counts the three outside flows, tested).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

PROTOCOLS = ("inspect", "blind", "no_forget")


@struct.dataclass
class BazaarParams:
    """Numbers one might sweep."""

    prior: jax.Array  # f32[], P(θ = 1)
    gain: jax.Array  # f32[], G: payoff of acting when θ = 1
    loss: jax.Array  # f32[], L: loss of acting when θ = 0
    fee: jax.Array  # f32[], inspection fee (paid to the contractor)
    production_cost: jax.Array  # f32[], κ: an informer pays κ (a − ½) per round
    believed_quality: jax.Array  # f32[], what a blind buyer assumes an offer is worth


class Informers(NamedTuple):
    """Fixed informer types."""

    quality: jax.Array  # f32[J], signal accuracy a_j in [0.5, 1]
    price: jax.Array  # f32[J], asking price c_j


@struct.dataclass
class BazaarState:
    """Wealth of everyone, who is still selling, and the outside flows."""

    buyer_wealth: jax.Array  # f32[M]
    informer_wealth: jax.Array  # f32[J]
    alive: jax.Array  # bool[J]
    fees: jax.Array  # f32[], paid to the contractor so far
    costs: jax.Array  # f32[], production costs paid so far
    nature: jax.Array  # f32[], decision payoffs paid in by nature so far


class Buyer(NamedTuple):
    """One buyer within one round: its belief, its wealth, its purchases."""

    log_odds: jax.Array  # f32[], log P(θ=1 | bought info) / P(θ=0 | ...)
    wealth: jax.Array  # f32[]
    bought: jax.Array  # bool[J], which informers it bought from this round


class RoundRecord(NamedTuple):
    """Per-round scalars (means over buyers) and the informers' wealth."""

    payoff: jax.Array  # f32[], mean decision payoff
    spend: jax.Array  # f32[], mean paid to informers
    fees: jax.Array  # f32[], mean fees paid
    correct: jax.Array  # f32[], fraction of decisions that were right
    purchases: jax.Array  # f32[], mean signals bought
    useful_purchases: jax.Array  # f32[], mean signals bought with VOI(a) > price
    alive: jax.Array  # i32[], live informers after the round
    informer_wealth: jax.Array  # f32[J], after the round
    revenue: jax.Array  # f32[J], what each informer was paid this round


def init(num_buyers: int, num_informers: int, buyer_wealth=5.0, informer_wealth=5.0):
    """Everyone starts with the given wealth; every informer is selling."""
    return BazaarState(
        buyer_wealth=jnp.full(num_buyers, buyer_wealth, jnp.float32),
        informer_wealth=jnp.full(num_informers, informer_wealth, jnp.float32),
        alive=jnp.ones(num_informers, bool),
        fees=jnp.float32(0.0),
        costs=jnp.float32(0.0),
        nature=jnp.float32(0.0),
    )


def decision_value(log_odds: jax.Array, params: BazaarParams) -> jax.Array:
    """Payoff of the best action at belief P = σ(log_odds): max(0, P G − (1−P) L)."""
    p = jax.nn.sigmoid(log_odds)
    return jnp.maximum(0.0, p * params.gain - (1 - p) * params.loss)


def value_of_information(log_odds, accuracy, params: BazaarParams) -> jax.Array:
    """VOI of one more signal of the given accuracy (≥ 0): E[value | s] − value."""
    p = jax.nn.sigmoid(log_odds)
    g, l_ = params.gain, params.loss
    says_one = jnp.maximum(0.0, p * accuracy * g - (1 - p) * (1 - accuracy) * l_)
    says_zero = jnp.maximum(0.0, p * (1 - accuracy) * g - (1 - p) * accuracy * l_)
    return says_one + says_zero - decision_value(log_odds, params)


def _evidence(signal, accuracy):
    """Log-likelihood ratio of a signal (True means "θ = 1") of the given accuracy."""
    llr = jnp.log(accuracy) - jnp.log1p(-accuracy)
    return jnp.where(signal, llr, -llr)


def consider_offer(buyer: Buyer, j, quality, price, signal, shown, params, protocol):
    """One offer from informer ``j``. Returns (buyer, paid_fee f32[], paid f32[]).

    Under ``"inspect"`` the contractor sees ``signal`` and ``quality``; what comes
    back is the decision alone, so a rejected offer leaves the belief untouched.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    fee = jnp.where(protocol == "blind", 0.0, params.fee)
    can = shown & (buyer.wealth >= fee + price)
    if protocol == "inspect":
        # --- the contractor: reads the offer, decides, and is then erased ---
        buy = can & (value_of_information(buyer.log_odds, quality, params) > price)
        learned = jnp.where(buy, _evidence(signal, quality), 0.0)
    elif protocol == "blind":
        assumed = params.believed_quality
        buy = can & (value_of_information(buyer.log_odds, assumed, params) > price)
        learned = jnp.where(buy, _evidence(signal, assumed), 0.0)
    else:  # no_forget: the buyer read it, so it knows it, and never pays
        buy = jnp.zeros((), bool)
        learned = jnp.where(can, _evidence(signal, quality), 0.0)
    paid_fee = jnp.where(can, fee, 0.0)
    paid = jnp.where(buy, price, 0.0)
    new = Buyer(
        log_odds=buyer.log_odds + learned,
        wealth=buyer.wealth - paid_fee - paid,
        bought=buyer.bought | (buy & (jnp.arange(buyer.bought.shape[0]) == j)),
    )
    return new, paid_fee, paid


def buyer_round(key, wealth, theta, informers, alive, params, *, protocol, offers):
    """One buyer's round: ``offers`` offers, then the decision. Returns
    (Buyer, fees f32[], spend f32[], payoff f32[], correct bool[])."""
    k_order, k_signal = jax.random.split(key)
    num_j = informers.quality.shape[0]
    flip = jax.random.uniform(k_signal, (num_j,)) > informers.quality
    signals = jnp.logical_xor(theta, flip)  # bool[J], each informer's signal
    # live informers first, in random order
    order = jnp.argsort(
        jax.random.uniform(k_order, (num_j,)) + jnp.where(alive, 0.0, 2.0)
    )[:offers]
    start = Buyer(jnp.log(params.prior) - jnp.log1p(-params.prior), wealth,
                  jnp.zeros(num_j, bool))  # fmt: skip

    def body(b, j):
        b, fee, paid = consider_offer(
            b, j, informers.quality[j], informers.price[j], signals[j], alive[j],
            params, protocol,
        )  # fmt: skip
        return b, (fee, paid)

    buyer, (fees, paid) = jax.lax.scan(body, start, order)
    act = buyer.log_odds + jnp.log(params.gain / params.loss) > 0
    payoff = jnp.where(act, jnp.where(theta, params.gain, -params.loss), 0.0)
    correct = act == theta
    buyer = buyer._replace(wealth=buyer.wealth + payoff)
    return buyer, jnp.sum(fees), jnp.sum(paid), payoff, correct


def round_step(key, state: BazaarState, informers, params, *, protocol, offers):
    """One round for all buyers (vmapped), then informers are paid and pay costs."""
    k_theta, k_buyers = jax.random.split(key)
    m = state.buyer_wealth.shape[0]
    theta = jax.random.uniform(k_theta, (m,)) < params.prior
    one = lambda k, w, t: buyer_round(
        k, w, t, informers, state.alive, params, protocol=protocol, offers=offers
    )
    buyers, fees, spend, payoff, correct = jax.vmap(one)(
        jax.random.split(k_buyers, m), state.buyer_wealth, theta
    )
    revenue = jnp.sum(jnp.where(buyers.bought, informers.price[None], 0.0), axis=0)
    cost = jnp.where(
        state.alive, params.production_cost * (informers.quality - 0.5), 0.0
    )
    informer_wealth = state.informer_wealth + revenue - cost
    useful = (
        value_of_information(
            jnp.log(params.prior) - jnp.log1p(-params.prior), informers.quality, params
        )
        > informers.price
    )
    new = BazaarState(
        buyer_wealth=buyers.wealth,
        informer_wealth=informer_wealth,
        alive=state.alive & (informer_wealth > 0),
        fees=state.fees + jnp.sum(fees),
        costs=state.costs + jnp.sum(cost),
        nature=state.nature + jnp.sum(payoff),
    )
    record = RoundRecord(
        payoff=jnp.mean(payoff),
        spend=jnp.mean(spend),
        fees=jnp.mean(fees),
        correct=jnp.mean(correct.astype(jnp.float32)),
        purchases=jnp.mean(jnp.sum(buyers.bought, axis=1).astype(jnp.float32)),
        useful_purchases=jnp.mean(jnp.sum(buyers.bought & useful[None], axis=1)),
        alive=jnp.sum(new.alive.astype(jnp.int32)),
        informer_wealth=informer_wealth,
        revenue=revenue,
    )
    return new, record


def simulate(key, state, informers, params, *, protocol, offers, num_rounds):
    """``num_rounds`` rounds as one ``lax.scan``: (final state, stacked RoundRecord)."""

    def body(st, k):
        return round_step(k, st, informers, params, protocol=protocol, offers=offers)

    return jax.lax.scan(body, state, jax.random.split(key, num_rounds))


def money(state: BazaarState) -> jax.Array:
    """Σ buyers + Σ informers + fees + costs − nature: constant over a run."""
    return (
        jnp.sum(state.buyer_wealth)
        + jnp.sum(state.informer_wealth)
        + state.fees
        + state.costs
        - state.nature
    )
