"""Chang et al. (2020)'s bidding primitive: a Beta bid policy and a critic.

One primitive of the cloned Vickrey society ("Decentralized Reinforcement
Learning", §5 and their ``SimpleBetaMeanPolicy``): an encoder Linear(H) → ReLU, then
a Beta distribution over bids in (0, 1) with mean m = sigmoid(linear) and
concentration ν = softplus(linear) (α = m·ν, β = (1 − m)·ν); the heads start at
zero weights with m = 0.5, ν = 2, i.e. Uniform(0, 1). The critic is
Linear(H) → ReLU → Linear(1). Hidden layers use PyTorch's default initialisation
U(±1/√fan_in), as their code does.

Parameters of N primitives are stacked on a leading N axis; K clones of a primitive
share its parameters and draw their bids independently (clone c runs primitive
c mod N).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import betaln, digamma

BID_EPS = 1e-6  # bids are kept inside (0, 1) so that log-densities stay finite
NU_BIAS = float(jnp.log(jnp.expm1(2.0)))  # softplus(NU_BIAS) = 2


def _linear(key, fan_in: int, fan_out: int) -> dict:
    bound = 1.0 / jnp.sqrt(fan_in)
    kw, kb = jax.random.split(key)
    return {
        "w": jax.random.uniform(kw, (fan_in, fan_out), jnp.float32, -bound, bound),
        "b": jax.random.uniform(kb, (fan_out,), jnp.float32, -bound, bound),
    }


def _affine(x: jax.Array, layer: dict) -> jax.Array:
    """x f32[..., I] @ w f32[I, O] + b f32[O] (the bias broadcast explicitly)."""
    y = x @ layer["w"]
    return y + layer["b"].reshape((1,) * (y.ndim - 1) + layer["b"].shape)


def init_primitive(key: jax.Array, obs_dim: int, hidden: int) -> dict:
    """One primitive's ``{"policy": ..., "critic": ...}`` (Uniform(0, 1) bids)."""
    k_enc, k_c1, k_c2 = jax.random.split(key, 3)
    zeros = jnp.zeros((hidden, 1), jnp.float32)
    policy = {
        "enc": _linear(k_enc, obs_dim, hidden),  # w f32[D, H], b f32[H]
        "mean": {"w": zeros, "b": jnp.zeros((1,), jnp.float32)},  # f32[H, 1], [1]
        "nu": {"w": zeros, "b": jnp.full((1,), NU_BIAS, jnp.float32)},
    }
    critic = {"l1": _linear(k_c1, obs_dim, hidden), "l2": _linear(k_c2, hidden, 1)}
    return {"policy": policy, "critic": critic}


def beta_params(policy: dict, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(α, β)`` f32[...] of one primitive's bid distribution at obs f32[..., D]."""
    h = jax.nn.relu(_affine(obs, policy["enc"]))
    mean = jax.nn.sigmoid(_affine(h, policy["mean"]))[..., 0]
    nu = jax.nn.softplus(_affine(h, policy["nu"]))[..., 0]
    return mean * nu, (1.0 - mean) * nu


def mean_bid(policy: dict, obs: jax.Array) -> jax.Array:
    """E[bid] = sigmoid(mean head) f32[...] at obs f32[..., D]."""
    a, b = beta_params(policy, obs)
    return a / (a + b)


def value(critic: dict, obs: jax.Array) -> jax.Array:
    """The critic's V(obs) f32[...] at obs f32[..., D]."""
    h = jax.nn.relu(_affine(obs, critic["l1"]))
    return _affine(h, critic["l2"])[..., 0]


def log_prob(a: jax.Array, b: jax.Array, x: jax.Array) -> jax.Array:
    """log Beta(x; α, β), elementwise."""
    x = jnp.clip(x, BID_EPS, 1.0 - BID_EPS)
    return (a - 1.0) * jnp.log(x) + (b - 1.0) * jnp.log1p(-x) - betaln(a, b)


def entropy(a: jax.Array, b: jax.Array) -> jax.Array:
    """Differential entropy of Beta(α, β), elementwise."""
    return (
        betaln(a, b)
        - (a - 1.0) * digamma(a)
        - (b - 1.0) * digamma(b)
        + (a + b - 2.0) * digamma(a + b)
    )


def society_bids(
    key: jax.Array, policies: dict, obs: jax.Array, clones: int
) -> jax.Array:
    """Bids f32[B, K·N] of K clones of N primitives on B observations f32[B, D].

    Clone c = k·N + i runs primitive i (their ``bids[a.id + k·N]``).
    """
    a, b = jax.vmap(beta_params, in_axes=(0, None), out_axes=-1)(policies, obs)
    shape = (obs.shape[0], clones, a.shape[-1])  # [B, K, N]
    draws = jax.random.beta(key, a[:, None, :], b[:, None, :], shape)
    draws = jnp.clip(draws, BID_EPS, 1.0 - BID_EPS)
    return draws.reshape(obs.shape[0], -1)
