"""The continuous double auction with zero-intelligence traders (Gode & Sunder 1993).

Gode, D. K. & Sunder, S. (1993), "Allocative efficiency of markets with
zero-intelligence traders: market as a partial substitute for individual rationality",
Journal of Political Economy 101(1). The seed paper's footnote 1 cites it: a market of
traders who bid at random, constrained only not to trade at a loss, extracts nearly all
the available surplus — the allocative efficiency comes from the market's rules.

Protocol (one session; Nb single-unit buyers with values v, Ns single-unit sellers with
costs c, prices on [lo, hi]):

1. each step, one trader who has not traded yet, drawn uniformly, quotes:
   ZI-U ("unconstrained"): a bid or ask ~ U[lo, hi];
   ZI-C ("constrained"): a buyer bids ~ U[lo, v], a seller asks ~ U[c, hi];
2. a bid ≥ the standing best ask (an ask ≤ the standing best bid) trades at the
   standing quote's price; otherwise the quote replaces the standing one only if it
   improves it (a higher bid, a lower ask);
3. after every trade all standing quotes are cancelled.

Efficiency = realised surplus Σ (v_buyer − c_seller) over trades / the competitive
equilibrium's surplus (the most any allocation can realise). A session is a loop of
32-quote scans that stops once no trade is possible; sessions are ``vmap``-ed, so
10,000 sessions are one compiled program, and :func:`simulate` feeds them through a
work queue of ``LANES`` sessions in flight, so a few long sessions do not hold up the
rest. :func:`replay` runs the same step on a given sequence of (trader, quote) pairs,
for checking the protocol by hand.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

TRADERS = ("zi_u", "zi_c")
CHUNK = 32  # quotes per early-exit check in run_session
LANES = 512  # sessions in flight in simulate's work queue (fastest on 2 CPU cores)


class DAResult(NamedTuple):
    """What :func:`simulate` returns, one row per session."""

    efficiency: jax.Array  # f32[S], realised / competitive-equilibrium surplus
    num_trades: jax.Array  # i32[S]
    prices: (
        jax.Array
    )  # f32[S, T], transaction prices in order, NaN-padded; T=min(Nb,Ns)


@struct.dataclass
class SessionState:
    """The book of one session (also the per-session trace :func:`replay` returns)."""

    bought: jax.Array  # bool[Nb], buyer has traded its unit
    sold: jax.Array  # bool[Ns], seller has traded its unit
    bid: jax.Array  # f32[], standing best bid (-inf if none)
    bidder: jax.Array  # i32[], its buyer (-1 if none)
    ask: jax.Array  # f32[], standing best ask (+inf if none)
    asker: jax.Array  # i32[], its seller (-1 if none)
    num_trades: jax.Array  # i32[]
    surplus: jax.Array  # f32[], Σ v_buyer - c_seller over trades so far
    prices: jax.Array  # f32[T], transaction prices, NaN where no trade yet
    buyers: jax.Array  # i32[T], buyer of each trade (-1 padded)
    sellers: jax.Array  # i32[T], seller of each trade (-1 padded)


def init_session(num_buyers: int, num_sellers: int) -> SessionState:
    """An empty book: no quotes, nobody has traded."""
    t = min(num_buyers, num_sellers)
    return SessionState(
        bought=jnp.zeros(num_buyers, bool),
        sold=jnp.zeros(num_sellers, bool),
        bid=jnp.float32(-jnp.inf),
        bidder=jnp.int32(-1),
        ask=jnp.float32(jnp.inf),
        asker=jnp.int32(-1),
        num_trades=jnp.int32(0),
        surplus=jnp.float32(0.0),
        prices=jnp.full(t, jnp.nan, jnp.float32),
        buyers=jnp.full(t, -1, jnp.int32),
        sellers=jnp.full(t, -1, jnp.int32),
    )


def step(
    state: SessionState, who: jax.Array, quote: jax.Array, values, costs
) -> SessionState:
    """One quote. ``who`` < Nb is buyer ``who``; otherwise seller ``who - Nb``.

    A quote from a trader who has already traded, or ``who = -1``, changes nothing.
    """
    nb, ns = state.bought.shape[0], state.sold.shape[0]
    is_buyer = (who >= 0) & (who < nb)
    b = jnp.clip(who, 0, nb - 1)
    s = jnp.clip(who - nb, 0, ns - 1)
    active = jnp.where(is_buyer, ~state.bought[b], (who >= nb) & ~state.sold[s])
    buy = active & is_buyer & (state.asker >= 0) & (quote >= state.ask)
    sell = active & ~is_buyer & (state.bidder >= 0) & (quote <= state.bid)
    trade = buy | sell
    tb = jnp.where(buy, b, state.bidder)
    ts = jnp.where(buy, state.asker, s)
    price = jnp.where(buy, state.ask, state.bid)
    gain = (
        jnp.asarray(values)[jnp.maximum(tb, 0)] - jnp.asarray(costs)[jnp.maximum(ts, 0)]
    )
    slot = jnp.arange(state.prices.shape[0]) == state.num_trades
    record = trade & slot
    improve_bid = active & is_buyer & ~trade & (quote > state.bid)
    improve_ask = active & ~is_buyer & ~trade & (quote < state.ask)
    return SessionState(
        bought=state.bought | (trade & (jnp.arange(nb) == tb)),
        sold=state.sold | (trade & (jnp.arange(ns) == ts)),
        bid=jnp.where(trade, -jnp.inf, jnp.where(improve_bid, quote, state.bid)),
        bidder=jnp.where(trade, -1, jnp.where(improve_bid, b, state.bidder)),
        ask=jnp.where(trade, jnp.inf, jnp.where(improve_ask, quote, state.ask)),
        asker=jnp.where(trade, -1, jnp.where(improve_ask, s, state.asker)),
        num_trades=state.num_trades + trade.astype(jnp.int32),
        surplus=state.surplus + jnp.where(trade, gain, 0.0),
        prices=jnp.where(record, price, state.prices),
        buyers=jnp.where(record, tb, state.buyers),
        sellers=jnp.where(record, ts, state.sellers),
    )


def replay(values, costs, who, quotes) -> SessionState:
    """Runs the protocol on a given sequence: ``who`` i32[T'], ``quotes`` f32[T']."""
    values, costs = jnp.asarray(values, jnp.float32), jnp.asarray(costs, jnp.float32)
    state = init_session(values.shape[0], costs.shape[0])

    def body(st, x):
        return step(st, x[0], x[1], values, costs), None

    xs = (jnp.asarray(who, jnp.int32), jnp.asarray(quotes, jnp.float32))
    return jax.lax.scan(body, state, xs)[0]


def can_trade(state: SessionState, values, costs, constrained: bool) -> jax.Array:
    """bool[]: can any further trade happen? Only a trade changes the answer.

    ZI-U: someone is left on each side. ZI-C: some waiting buyer's value reaches
    some waiting seller's cost (a ZI-C trade's price lies in [c, v]).
    """
    if not constrained:
        return jnp.any(~state.bought) & jnp.any(~state.sold)
    top_value = jnp.max(jnp.where(state.bought, -jnp.inf, values))
    low_cost = jnp.min(jnp.where(state.sold, jnp.inf, costs))
    return top_value >= low_cost


def _quote_chunk(key, st, t, values, costs, lower, upper, max_steps):
    """CHUNK quotes of one session from quote t; uniforms: fold_in(key, t // CHUNK)."""

    def quote_once(st, x):
        t, u = x
        waiting = jnp.concatenate([~st.bought, ~st.sold]).astype(jnp.int32)
        count = jnp.sum(waiting)
        k = jnp.minimum((u[0] * count.astype(u.dtype)).astype(jnp.int32), count - 1)
        who = jnp.argmax(jnp.cumsum(waiting) > k).astype(jnp.int32)
        who = jnp.where((count > 0) & (t < max_steps), who, -1)
        w = jnp.maximum(who, 0)
        quote = lower[w] + u[1] * (upper[w] - lower[w])
        return step(st, who, quote, values, costs), None

    u = jax.random.uniform(jax.random.fold_in(key, t // CHUNK), (CHUNK, 2))
    return jax.lax.scan(quote_once, st, (t + jnp.arange(CHUNK), u))[0]


def _bounds(values, costs, trader, lo, hi):
    """Per-trader quote ranges f32[Nb + Ns]: buyers first, then sellers."""
    nb, ns = values.shape[0], costs.shape[0]
    zi_c = trader == "zi_c"
    lower = jnp.concatenate([jnp.full(nb, lo), costs if zi_c else jnp.full(ns, lo)])
    upper = jnp.concatenate([values if zi_c else jnp.full(nb, hi), jnp.full(ns, hi)])
    return lower, upper


def run_session(key, values, costs, *, trader, max_steps, lo, hi) -> SessionState:
    """One random session of up to ``max_steps`` quotes by not-yet-traded traders.

    The loop stops early once :func:`can_trade` is False: later quotes could only
    move standing quotes, never a trade, so the result is the same as running all
    ``max_steps`` (the uniforms of quotes t .. t + CHUNK - 1 are drawn together from
    ``fold_in(key, t // CHUNK)``, whether or not the loop goes on).
    """
    lower, upper = _bounds(values, costs, trader, lo, hi)

    def body(carry):  # CHUNK quotes between checks: a scan is cheaper than a while
        st, t = carry
        st = _quote_chunk(key, st, t, values, costs, lower, upper, max_steps)
        return st, t + CHUNK

    def cond(carry):
        st, t = carry
        return (t < max_steps) & can_trade(st, values, costs, trader == "zi_c")

    state = init_session(values.shape[0], costs.shape[0])
    return jax.lax.while_loop(cond, body, (state, jnp.int32(0)))[0]


@functools.partial(jax.jit, static_argnames=("trader", "num_sessions", "max_steps"))
def simulate_sessions(
    key, values, costs, lo, hi, *, trader, num_sessions, max_steps
) -> SessionState:
    """:func:`run_session` vmapped over S sessions (no input checks): every field of
    the returned book gains a leading S axis, so trades can be audited one by one."""
    run = functools.partial(
        run_session, values=values, costs=costs, trader=trader,
        max_steps=max_steps, lo=lo, hi=hi,
    )  # fmt: skip
    return jax.vmap(run)(jax.random.split(key, num_sessions))


@functools.partial(
    jax.jit, static_argnames=("trader", "num_sessions", "max_steps", "lanes")
)
def simulate_queue(
    key, values, costs, lo, hi, *, trader, num_sessions, max_steps, lanes
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The sessions of :func:`simulate_sessions` through a work queue of ``lanes``.

    A vmapped while-loop runs until its slowest session ends; here each of ``lanes``
    lanes takes the next session from the queue as soon as its own ends (checked
    every CHUNK quotes), so the work is the sum of the sessions' lengths, not S times
    the longest. Same sessions, same keys, same results.

    Returns:
      (surplus f32[S], num_trades i32[S], prices f32[S, T]).
    """
    nb, ns = values.shape[0], costs.shape[0]
    s, lanes = num_sessions, min(lanes, num_sessions)
    keys = jax.random.split(key, s)
    lower, upper = _bounds(values, costs, trader, lo, hi)
    fresh = jax.vmap(lambda _: init_session(nb, ns))(jnp.arange(lanes))
    chunk = jax.vmap(
        lambda k, st, t: _quote_chunk(k, st, t, values, costs, lower, upper, max_steps)
    )
    open_ = jax.vmap(lambda st: can_trade(st, values, costs, trader == "zi_c"))
    t_out = min(nb, ns)
    out = (jnp.zeros(s), jnp.zeros(s, jnp.int32), jnp.full((s, t_out), jnp.nan))

    def body(carry):
        st, t, idx, nxt, out = carry
        st = chunk(keys[jnp.maximum(idx, 0)], st, t)
        t = t + CHUNK
        done = (idx >= 0) & ~((t < max_steps) & open_(st))
        dest = jnp.where(done, idx, s)  # s is out of bounds: dropped
        out = (
            out[0].at[dest].set(st.surplus, mode="drop"),
            out[1].at[dest].set(st.num_trades, mode="drop"),
            out[2].at[dest].set(st.prices, mode="drop"),
        )
        new_idx = nxt + jnp.cumsum(done.astype(jnp.int32)) - 1
        take = done & (new_idx < s)
        idx = jnp.where(done, jnp.where(take, new_idx, -1), idx)
        st = jax.tree.map(lambda a, b: jnp.where(_rows(done, a), b, a), st, fresh)
        t = jnp.where(done, 0, t)
        return st, t, idx, nxt + jnp.sum(done.astype(jnp.int32)), out

    carry = (
        fresh,
        jnp.zeros(lanes, jnp.int32),
        jnp.arange(lanes),
        jnp.int32(lanes),
        out,
    )
    carry = jax.lax.while_loop(lambda c: jnp.any(c[2] >= 0), body, carry)
    return carry[4]


def _rows(mask: jax.Array, a: jax.Array) -> jax.Array:
    """``mask`` bool[L] reshaped to broadcast against ``a`` f[L, ...]."""
    return mask.reshape(mask.shape + (1,) * (a.ndim - 1))


def competitive_equilibrium(values, costs) -> tuple[int, float, float, float]:
    """(quantity Q, lowest and highest clearing price, surplus) of the CE.

    Q is the number of k with v_(k) ≥ c_(k) (values descending, costs ascending); any
    price in [max(c_(Q), v_(Q+1)), min(v_(Q), c_(Q+1))] clears the market.
    """
    v = np.sort(np.asarray(values, np.float64))[::-1]
    c = np.sort(np.asarray(costs, np.float64))
    n = min(v.size, c.size)
    gains = v[:n] - c[:n]
    q = int(np.sum(gains >= 0))
    lows = [c[q - 1]] if q else []
    highs = [v[q - 1]] if q else []
    if q < v.size:
        lows.append(v[q])
    if q < c.size:
        highs.append(c[q])
    low = max(lows) if lows else float("nan")
    high = min(highs) if highs else float("nan")
    return q, float(low), float(high), float(np.sum(gains[:q]))


def _check_side(name: str, x, lo: float, hi: float) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {x.shape}")
    if not np.all(np.isfinite(x)) or x.min() < lo or x.max() > hi:
        raise ValueError(f"{name} must be finite and lie in price_range [{lo}, {hi}]")
    return x


def simulate(
    key: jax.Array,
    values,
    costs,
    *,
    trader: str,
    num_sessions: int,
    max_steps: int = 2000,
    price_range: tuple[float, float] = (1.0, 200.0),
) -> DAResult:
    """Runs ``num_sessions`` independent continuous double auctions (Gode & Sunder).

    Args:
      key: a typed PRNG key.
      values: f[Nb] the buyers' values (one unit each), inside ``price_range``.
      costs: f[Ns] the sellers' costs (one unit each), inside ``price_range``.
      trader: "zi_u" (quotes uniform on the price range) or "zi_c" (never at a loss).
      num_sessions: S, the number of sessions.
      max_steps: quotes per session.
      price_range: (lo, hi), the range every quote is drawn from.

    Returns:
      A :class:`DAResult` with efficiency f32[S], num_trades i32[S] and prices
      f32[S, min(Nb, Ns)] (NaN after the last trade).

    Raises:
      ValueError: naming the argument, if an input is malformed.
    """
    if trader not in TRADERS:
        raise ValueError(f"trader must be one of {TRADERS}, got {trader!r}")
    if not isinstance(num_sessions, int | np.integer) or num_sessions < 1:
        raise ValueError(f"num_sessions must be a positive int, got {num_sessions!r}")
    if not isinstance(max_steps, int | np.integer) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
    lo, hi = (float(x) for x in price_range)
    if not lo < hi:
        raise ValueError(
            f"price_range must be (lo, hi) with lo < hi, got {price_range}"
        )
    v = _check_side("values", values, lo, hi)
    c = _check_side("costs", costs, lo, hi)
    ce = competitive_equilibrium(v, c)[3]
    if ce <= 0:
        raise ValueError("values and costs admit no gains from trade (CE surplus 0)")
    surplus, trades, prices = simulate_queue(
        key, jnp.asarray(v, jnp.float32), jnp.asarray(c, jnp.float32),
        jnp.float32(lo), jnp.float32(hi), trader=trader,
        num_sessions=int(num_sessions), max_steps=int(max_steps), lanes=LANES,
    )  # fmt: skip
    return DAResult(surplus / jnp.float32(ce), trades, prices)
