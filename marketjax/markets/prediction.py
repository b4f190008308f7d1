"""A prediction market as a supervised learner (seed 004, "Prediction markets =
supervised learning").

Each example is its own K-outcome LMSR market (Hanson 2003; :mod:`marketjax.lmsr`)
opened at uniform prices. N traders, each holding a belief π_i f[K] about the
example's label (a weak model's prediction), trade in turn for ``rounds`` rounds; the
closing price is the market's prediction; the label resolves, every share of it pays
1, and wealth moves to the traders who were right.

Traders are Kelly (1956) bettors: each maximises its expected log wealth under its
belief, Σ_y π_y ln W_y, over its contingent wealth W f[K] in this market. Against an
LMSR this has a closed form up to one scalar (derived in :func:`kelly_trade`); it
never risks more than the trader's stake, so no account can be overdrawn. Beygelzimer,
Langford & Pennock (2012, "Learning performance of prediction markets with Kelly
bettors") show such markets price at a wealth-weighted average of beliefs and move
wealth like Bayes' rule, w_i ← w_i π_i(y) / p(y); the stake fraction tempers that
update (fractional Kelly), acting as a learning rate.

Footnote 2's shared wealth: a batch of B example markets runs in parallel; trader i
stakes ``stake · wealth_i / B`` in each, so its commitments across the batch never
exceed ``stake · wealth_i``. The market maker's account is the :class:`Books` bank: it
pays the subsidy (at most b ln K per market), and Σ wealth + bank is conserved.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from marketjax.markets.ledger import Books
from marketjax.mechanisms import lmsr

BELIEF_FLOOR = 1e-4  # beliefs are clipped to [floor, 1] and renormalised
MIN_STAKE = 1e-6  # traders holding less than MIN_STAKE * b in a market sit out
_BISECTION_ITERS = 40
_NEWTON_ITERS = 8


@struct.dataclass
class PredictionParams:
    """Numbers one might sweep (array leaves, so a sweep is a vmap)."""

    liquidity: jax.Array  # f32[], b of every example's LMSR
    stake: jax.Array  # f32[], fraction of wealth staked across one batch of markets


@struct.dataclass
class PredictionState:
    """The traders' wealth and the market maker's books, shared by all markets."""

    wealth: jax.Array  # f32[N]
    books: Books  # bank = the market maker's account (minus the subsidies paid)


class BatchRecord(NamedTuple):
    """What one batch of markets did (per market, and per trader)."""

    prices: jax.Array  # f32[B, K], closing prices (the predictions)
    maker_loss: jax.Array  # f32[B], what each market cost its maker
    payoff: jax.Array  # f32[N], each trader's net gain over the batch


def init(num_traders: int, wealth: float = 1.0) -> PredictionState:
    """Every trader starts with ``wealth``; the market maker's account at 0."""
    w = jnp.full(num_traders, wealth, jnp.float32)
    return PredictionState(wealth=w, books=Books.open(w))


def clean_beliefs(beliefs: jax.Array) -> jax.Array:
    """Clips beliefs f[..., K] to at least :data:`BELIEF_FLOOR` and renormalises."""
    p = jnp.maximum(jnp.asarray(beliefs, jnp.float32), BELIEF_FLOOR)
    return p / jnp.sum(p, axis=-1, keepdims=True)


def _solve_u(r: jax.Array) -> jax.Array:
    """u > 0 with u + ln u = r, by Newton on v = ln u from the right (monotone)."""
    v = jnp.where(r > 1.0, jnp.log(jnp.maximum(r, 1.0)), r)
    for _ in range(_NEWTON_ITERS):
        ev = jnp.exp(v)
        v = v - (ev + v - r) / (ev + 1.0)
    return jnp.exp(v)


def kelly_trade(q: jax.Array, held: jax.Array, belief: jax.Array, b) -> jax.Array:
    """The shares a Kelly bettor buys: argmax_dq Σ_y π_y ln(W_y + dq_y − cost(dq)).

    Derivation: after buying dq at cost ΔC the trader holds W′ = W + dq − ΔC and
    the prices are p′_y = p_y exp((dq_y − ΔC)/b), so W′_y = W_y + b ln(p′_y / p_y)
    (the log scoring rule) with Σ p′ = 1. The first-order condition
    W′_y p′_y = b π_y / μ gives, with u_y = W′_y / b,
    u_y + ln u_y = ln π_y − ln p_y + W_y / b − ln μ; ln μ is found by bisection so
    that Σ_y p′_y = 1, and the trade dq_y = b u_y − W_y costs exactly 0.

    Args:
      q: f[K] shares outstanding.
      held: f[K] the trader's contingent wealth W (positive).
      belief: f[K] its belief π (positive, summing to 1).
      b: liquidity.

    Returns:
      f[K] the shares to buy (negative entries sell); W′_y > 0 for every y.
    """
    log_p = lmsr.log_prices(q, b)
    w_b = held / b
    base = jnp.log(belief) - log_p + w_b
    c0 = base - w_b - jnp.log(w_b)  # where u_y = W_y / b: no trade in outcome y
    lo, hi = jnp.min(c0), jnp.max(c0)

    def excess(c):  # ln Σ p′ at ln μ = c; decreasing in c, zero at the optimum
        return jax.nn.logsumexp(log_p + _solve_u(base - c) - w_b)

    def bisect(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        above = excess(mid) > 0.0
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    lo, hi = jax.lax.fori_loop(0, _BISECTION_ITERS, bisect, (lo, hi))
    return b * _solve_u(base - hi) - held


def run_markets(
    key: jax.Array, beliefs: jax.Array, stakes: jax.Array, b, *, rounds: int
) -> tuple[jax.Array, jax.Array]:
    """Opens one market per example and lets every trader trade ``rounds`` times.

    Args:
      key: orders the traders (a fresh random order each round, shared by the batch).
      beliefs: f[B, N, K] trader beliefs per example (cleaned here).
      stakes: f[N] what each trader brings to each market.
      b: liquidity.
      rounds: passes over the traders.

    Returns:
      (q f[B, K] closing shares outstanding, held f[B, N, K] contingent wealth).
    """
    beliefs = clean_beliefs(beliefs)
    num_b, n, k = beliefs.shape
    order = jnp.concatenate(
        [jax.random.permutation(kr, n) for kr in jax.random.split(key, rounds)]
    )
    held = jnp.broadcast_to(stakes[None, :, None], (num_b, n, k)).astype(jnp.float32)

    def one(carry, i):
        q, held = carry  # f[B, K], f[B, N, K]
        mine = held[:, i]
        dq = jax.vmap(kelly_trade, (0, 0, 0, None))(q, mine, beliefs[:, i], b)
        paid = lmsr.trade_cost(q, dq, b)
        new = (mine + dq) - paid[:, None]
        # A trader too poor to matter, or a trade whose rounding would leave an
        # outcome at W <= 0, is skipped: the books stay exact and W stays positive.
        ok = (jnp.min(mine, -1) > MIN_STAKE * b) & jnp.all(new > 0, -1)
        ok = ok & jnp.all(jnp.isfinite(new), -1)
        dq = jnp.where(ok[:, None], dq, 0.0)
        held = held.at[:, i].set(jnp.where(ok[:, None], new, mine))
        return (q + dq, held), None

    q0 = jnp.zeros((num_b, k), jnp.float32)
    return jax.lax.scan(one, (q0, held), order)[0]


def step(
    key: jax.Array,
    state: PredictionState,
    beliefs: jax.Array,
    outcomes: jax.Array,
    params: PredictionParams,
    *,
    rounds: int = 2,
) -> tuple[PredictionState, BatchRecord]:
    """One batch: B markets open, trade, resolve and settle into shared wealth.

    Args:
      key: orders the traders.
      state: wealth f[N] and books.
      beliefs: f[B, N, K].
      outcomes: i32[B] the labels.
      params: liquidity and stake.
      rounds: passes over the traders per market.
    """
    num_b = beliefs.shape[0]
    stakes = params.stake * state.wealth / num_b
    q, held = run_markets(key, beliefs, stakes, params.liquidity, rounds=rounds)
    y = jnp.asarray(outcomes, jnp.int32)
    won = jnp.take_along_axis(held, y[:, None, None], axis=-1)[..., 0]  # f[B, N]
    payoff = jnp.sum(won, axis=0) - num_b * stakes
    maker_loss = lmsr.market_maker_loss(jnp.zeros_like(q), q, y, params.liquidity)
    books = state.books.record(bank_delta=-jnp.sum(maker_loss))
    new = PredictionState(wealth=state.wealth + payoff, books=books)
    return new, BatchRecord(lmsr.prices(q, params.liquidity), maker_loss, payoff)


def train(
    key: jax.Array,
    state: PredictionState,
    beliefs: jax.Array,
    outcomes: jax.Array,
    params: PredictionParams,
    *,
    batch: int,
    rounds: int = 2,
) -> tuple[PredictionState, BatchRecord]:
    """Runs the examples in batches of ``batch`` markets, one ``lax.scan``.

    Args:
      beliefs: f[E, N, K] with E a multiple of ``batch``.
      outcomes: i32[E].

    Returns:
      The final state and the stacked :class:`BatchRecord` (leading axis E / batch);
      the prices it holds are prequential: made before each label resolved.
    """
    e, n, k = beliefs.shape
    if e % batch:
        raise ValueError(f"batch must divide the number of examples {e}, got {batch}")
    xs = (
        jax.random.split(key, e // batch),
        beliefs.reshape(e // batch, batch, n, k),
        jnp.asarray(outcomes).reshape(e // batch, batch),
    )

    def body(st, x):
        return step(x[0], st, x[1], x[2], params, rounds=rounds)

    return jax.lax.scan(body, state, xs)


def predict(
    key: jax.Array,
    wealth: jax.Array,
    beliefs: jax.Array,
    params: PredictionParams,
    *,
    batch: int,
    rounds: int = 2,
) -> jax.Array:
    """Closing prices f[E, K] of markets on ``beliefs`` f[E, N, K] with frozen wealth.

    Each trader stakes ``stake · wealth / batch`` per market, as in training.
    """
    stakes = params.stake * wealth / batch
    q, _ = run_markets(key, beliefs, stakes, params.liquidity, rounds=rounds)
    return lmsr.prices(q, params.liquidity)
