"""Latent-variable prediction markets (seed 001; tailcalled 2023, "Latent variables
for prediction markets").

Nobody ever observes the latent Y; what resolves are the observed X = (X_1..X_D).
The market's state is a latent-class model — P(Y) over K values and P(X_d = 1 | Y)
for every feature — and traders bet on those pieces, but are *scored on the implied
joint* P(x) = Σ_y P(y) Π_d P(x_d | y) of the observed variables, by Hanson's log
market scoring rule: a trader who moves the state from θ to θ′ is paid
b · (ln P_θ′(x) − ln P_θ(x)) on each x that resolves afterwards. Payments telescope,
so the market maker pays b · (ln P_end(x) − ln P_start(x)) in all, and each trader
is paid exactly its marginal contribution to the joint's log score.

Traders are specialists: trader 0 owns P(Y), trader d + 1 owns P(X_d | Y); each round
each, in turn, moves its block by a gradient step on the log score of the data it has
seen (the last resolved batch), if it can still pay (wealth > 0); the step shrinks
as 1 / sqrt(1 + t / step_decay), as the market matures. An optional noise
trader moves a random block at random. The meaning of Y is whatever the market makes
it: recovery of a planted latent is measured up to relabelling, against EM
(Dempster, Laird & Rubin 1977) on the same model and data.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct


class LatentModel(NamedTuple):
    """Logits of a latent-class model with K classes and D binary features."""

    prior: jax.Array  # f32[K], logits of P(Y)
    cond: jax.Array  # f32[D, K], logits of P(X_d = 1 | Y = k)


@struct.dataclass
class LatentParams:
    """Numbers one might sweep."""

    liquidity: jax.Array  # f32[], b of the log scoring rule
    step_size: jax.Array  # f32[], each specialist's gradient step at round 0
    step_decay: jax.Array  # f32[], rounds over which the step falls by 1/sqrt(2)
    noise_scale: jax.Array  # f32[], size of the noise trader's random moves


@struct.dataclass
class LatentState:
    """The market's model, the traders' wealth and the maker's account."""

    model: LatentModel  # the consensus model (the market's "prices")
    wealth: jax.Array  # f32[D + 2], specialists 0..D, then the noise trader
    maker: jax.Array  # f32[], the market maker's account
    round: jax.Array  # i32[], rounds played


def log_marginal(model: LatentModel, x: jax.Array) -> jax.Array:
    """ln P(x) = ln Σ_y P(y) Π_d P(x_d | y): f32[B] for x f32[B, D] in {0, 1}."""
    log_py = jax.nn.log_softmax(model.prior)
    on, off = jax.nn.log_sigmoid(model.cond), jax.nn.log_sigmoid(-model.cond)
    ll = x @ on + (1.0 - x) @ off  # f32[B, K]
    return jax.nn.logsumexp(ll + log_py[None], axis=-1)


def posterior(model: LatentModel, x: jax.Array) -> jax.Array:
    """P(Y | x): f32[B, K]."""
    on, off = jax.nn.log_sigmoid(model.cond), jax.nn.log_sigmoid(-model.cond)
    ll = x @ on + (1.0 - x) @ off + jax.nn.log_softmax(model.prior)[None]
    return jax.nn.softmax(ll, axis=-1)


def sample(key, model: LatentModel, n: int) -> tuple[jax.Array, jax.Array]:
    """(y i32[n], x f32[n, D]) from the model."""
    ky, kx = jax.random.split(key)
    y = jax.random.categorical(ky, model.prior, shape=(n,))
    p = jax.nn.sigmoid(model.cond.T[y])  # f32[n, D]
    return y, (jax.random.uniform(kx, p.shape) < p).astype(jnp.float32)


def _block_masks(d: int, k: int) -> LatentModel:
    """Ownership: mask i selects trader i's block (0: prior, d + 1: feature d)."""
    prior = jnp.zeros((d + 1, k)).at[0].set(1.0)
    cond = jnp.zeros((d + 1, d, k)).at[jnp.arange(1, d + 1), jnp.arange(d)].set(1.0)
    return LatentModel(prior, cond)


def init(key, num_features: int, num_classes: int, wealth: float = 1.0) -> LatentState:
    """Uniform P(Y), slightly random P(X_d | Y) (to break the labels' symmetry)."""
    cond = 0.1 * jax.random.normal(key, (num_features, num_classes))
    model = LatentModel(jnp.zeros(num_classes), cond)
    wealth = jnp.full(num_features + 2, wealth, jnp.float32)
    return LatentState(model, wealth, jnp.float32(0.0), jnp.int32(0))


def round_step(key, state: LatentState, seen, fresh, params: LatentParams):
    """Specialists move in turn on ``seen`` f[B, D]; ``fresh`` f[B, D] resolves.

    Returns (state, payoff f32[D + 2]): each trader's score on the fresh batch.
    """
    d, k = state.model.cond.shape
    masks = _block_masks(d, k)
    grad = jax.grad(lambda m: jnp.mean(log_marginal(m, seen)))
    b = params.liquidity
    rounds = state.round.astype(jnp.float32)
    step = params.step_size / jnp.sqrt(1.0 + rounds / params.step_decay)

    def move(model, i):
        active = state.wealth[i] > 0
        g = grad(model)
        mask = jax.tree.map(lambda mm: mm[i], masks)
        new = jax.tree.map(
            lambda p, gg, mm: p + jnp.where(active, step, 0.0) * gg * mm,
            model, g, mask,
        )  # fmt: skip
        pay = b * jnp.mean(log_marginal(new, fresh) - log_marginal(model, fresh))
        return new, pay

    model, pays = jax.lax.scan(move, state.model, jnp.arange(d + 1))
    # the noise trader: a random move of one random block
    kb, kn = jax.random.split(key)
    i = jax.random.randint(kb, (), 0, d + 1)
    mask = jax.tree.map(lambda mm: mm[i], masks)
    noise = LatentModel(*(jax.random.normal(k_, m.shape) for k_, m in
                          zip(jax.random.split(kn), model, strict=True)))  # fmt: skip
    active = state.wealth[-1] > 0
    new = jax.tree.map(
        lambda p, z, mm: p + jnp.where(active, params.noise_scale, 0.0) * z * mm,
        model, noise, mask,
    )  # fmt: skip
    noise_pay = b * jnp.mean(log_marginal(new, fresh) - log_marginal(model, fresh))
    payoff = jnp.concatenate([pays, noise_pay[None]])
    wealth, maker = state.wealth + payoff, state.maker - jnp.sum(payoff)
    return LatentState(new, wealth, maker, state.round + 1), payoff


def run(key, state, batches, params):
    """Online market over ``batches`` f[T, B, D]: round t trades on batch t − 1 and
    resolves batch t. Returns (state, payoff f32[T − 1, D + 2])."""
    keys = jax.random.split(key, batches.shape[0] - 1)

    def body(st, xs):
        return round_step(xs[0], st, xs[1], xs[2], params)

    return jax.lax.scan(body, state, (keys, batches[:-1], batches[1:]))


def em(model: LatentModel, x: jax.Array, iters: int = 200) -> LatentModel:
    """EM for the latent-class model on x f[N, D] (Dempster, Laird & Rubin 1977)."""

    def body(m, _):
        r = posterior(m, x)  # E step, f[N, K]
        nk = jnp.sum(r, axis=0) + 1e-6
        p = jnp.clip((x.T @ r) / nk[None], 1e-4, 1 - 1e-4)  # M step, f[D, K]
        return LatentModel(jnp.log(nk / nk.sum()), jnp.log(p) - jnp.log1p(-p)), None

    return jax.lax.scan(body, model, None, iters)[0]


def latent_accuracy(model: LatentModel, x, y) -> float:
    """Accuracy of argmax P(Y | x) against the planted y, best over relabellings."""
    guess = jnp.argmax(posterior(model, x), axis=-1)
    k = model.prior.shape[0]
    return max(
        float(jnp.mean(jnp.asarray(perm)[guess] == y))
        for perm in itertools.permutations(range(k))
    )
