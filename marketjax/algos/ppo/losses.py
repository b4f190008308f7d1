"""The pure pieces of PPO: log-probabilities, GAE and the clipped losses.

References:
  Schulman, Moritz, Levine, Jordan, Abbeel (2016). "High-Dimensional Continuous
  Control Using Generalized Advantage Estimation" (GAE), ICLR 2016.
  Schulman, Wolski, Dhariwal, Radford, Klimov (2017). "Proximal Policy Optimization
  Algorithms", arXiv:1707.06347 (the clipped surrogate objective, Eq. 7, and the
  combined objective with value loss and entropy bonus, Eq. 9).

Every function here is pure and works on any leading batch shape. Distributions are
written with ``jax.nn.log_softmax`` (no distrax: it pulls a nightly TFP).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)


# --- distributions ---------------------------------------------------------------


def categorical_log_prob(logits: jax.Array, action: jax.Array) -> jax.Array:
    """log pi(a) for logits f32[..., A] and integer actions i32[...] -> f32[...]."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), axis=-1)[
        ..., 0
    ]


def categorical_entropy(logits: jax.Array) -> jax.Array:
    """Entropy of a categorical distribution, logits f32[..., A] -> f32[...]."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def categorical_sample(key: jax.Array, logits: jax.Array) -> jax.Array:
    """One action per row of logits f32[..., A] -> i32[...]."""
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def normal_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array):
    """Diagonal Gaussian log-density, all f32[..., A] -> f32[...] (summed over A)."""
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * jnp.square(z) - log_std - 0.5 * _LOG_2PI, axis=-1)


def normal_entropy(log_std: jax.Array) -> jax.Array:
    """Entropy of a diagonal Gaussian, log_std f32[..., A] -> f32[...]."""
    return jnp.sum(log_std + 0.5 * (1.0 + _LOG_2PI), axis=-1)


def normal_sample(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """A sample of N(mean, exp(log_std)^2), f32[..., A]."""
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)


# --- advantages ------------------------------------------------------------------


def gae(
    rewards: jax.Array,
    values: jax.Array,
    dones: jax.Array,
    last_value: jax.Array,
    gamma: float | jax.Array,
    lam: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation (Schulman et al. 2016, Eq. 16).

    ``delta_t = r_t + gamma (1 - d_t) V(s_{t+1}) - V(s_t)`` and
    ``A_t = delta_t + gamma lam (1 - d_t) A_{t+1}``, where ``d_t`` says the episode
    ended with step t (the next row then starts a fresh episode).

    Args:
      rewards: f32[T, ...] reward of step t.
      values: f32[T, ...] V(s_t) of the state the action of step t was taken in.
      dones: f32[T, ...] (or bool) 1 if the episode ended at step t.
      last_value: f32[...] V(s_T) of the state after the last step.
      gamma: discount.
      lam: the GAE lambda.

    Returns:
      ``(advantages, targets)``, both f32[T, ...]; targets = advantages + values
      (the lambda-returns the value function regresses on).
    """
    not_done = 1.0 - dones.astype(jnp.float32)
    next_values = jnp.concatenate([values[1:], last_value[None]], axis=0)
    deltas = rewards + gamma * next_values * not_done - values

    def backward(carry, xs):
        delta, nd = xs
        adv = delta + gamma * lam * nd * carry
        return adv, adv

    # Unrolled 16 steps per loop iteration: the recursion is a few flops per
    # step, so loop overhead dominated it (7% of a PPO update, issue 17).
    _, advantages = jax.lax.scan(
        backward,
        jnp.zeros_like(last_value),
        (deltas, not_done),
        reverse=True,
        unroll=16,
    )
    return advantages, advantages + values


def bootstrap_truncated(
    rewards: jax.Array,
    truncated: jax.Array,
    final_value_fn: Callable[[], jax.Array],
    gamma: float | jax.Array,
) -> jax.Array:
    """Rewards with ``gamma V(final obs)`` added where a time limit cut the episode.

    An episode cut by a time limit (truncated, not terminated) still has a future:
    its last reward is bootstrapped with the value of the observation it was cut at
    (Pardo, Tavakoli, Levdik, Kormushev 2018, "Time Limits in Reinforcement
    Learning", Sec. 3), ``r_t + gamma V(s_{t+1}^final)``, and GAE then treats the
    step as terminal.

    ``final_value_fn()`` (the critic over every step's final observation) runs only
    when some step was truncated (a ``lax.cond``; under ``vmap`` over seeds it
    becomes a select and always runs). Most updates hold no truncation (CartPole
    truncates at step 500, an update is 128 steps), and the forward pass over all
    T·B final observations was ~2% of a CartPole update (issue 17). Where no step
    is truncated the result is ``rewards`` exactly, as ``rewards + gamma V * 0``
    was for any finite V.

    Args:
      rewards: f32[T, ...] rewards (already scaled).
      truncated: f32[T, ...] 1 where the episode was cut by the time limit.
      final_value_fn: ``() -> f32[T, ...]``, V of each step's final observation.
      gamma: discount.

    Returns:
      f32[T, ...] the bootstrapped rewards.
    """
    final_value = jax.lax.cond(
        jnp.any(truncated > 0), final_value_fn, lambda: jnp.zeros_like(rewards)
    )
    return rewards + gamma * final_value * truncated


# --- losses ----------------------------------------------------------------------


def clipped_policy_loss(
    log_prob: jax.Array,
    old_log_prob: jax.Array,
    advantages: jax.Array,
    clip_eps: float | jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The clipped surrogate objective L^CLIP (Schulman et al. 2017, Eq. 7), negated.

    Args:
      log_prob: f32[M] log pi_theta(a_t | s_t) under the current parameters.
      old_log_prob: f32[M] the same under the parameters that collected the data.
      advantages: f32[M] advantage estimates (already normalised if wanted).
      clip_eps: the clipping range epsilon.

    Returns:
      ``(loss, approx_kl, clip_fraction)``: ``loss`` = -mean(min(r A, clip(r) A))
      with ``r = exp(log_prob - old_log_prob)``; ``approx_kl`` =
      mean((r - 1) - log r) (Schulman's low-variance estimator); ``clip_fraction``
      = share of samples whose ratio lies outside [1 - eps, 1 + eps].
    """
    log_ratio = log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    loss = -jnp.mean(jnp.minimum(unclipped, clipped))
    approx_kl = jnp.mean((ratio - 1.0) - log_ratio)
    clip_fraction = jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32))
    return loss, approx_kl, clip_fraction


def value_loss(
    value: jax.Array,
    old_value: jax.Array,
    targets: jax.Array,
    clip_eps: float | jax.Array | None,
) -> jax.Array:
    """Squared-error value loss, 0.5 * mean((V - target)^2), optionally clipped.

    With ``clip_eps`` (as in OpenAI baselines and purejaxrl) the loss is the larger
    of the unclipped error and that of ``old_value + clip(V - old_value, +-eps)``.
    All arrays f32[M]; returns an f32 scalar.
    """
    err = jnp.square(value - targets)
    if clip_eps is not None:
        clipped_value = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
        err = jnp.maximum(err, jnp.square(clipped_value - targets))
    return 0.5 * jnp.mean(err)


class LossParts(NamedTuple):
    """Scalars reported by :func:`ppo_loss` (all f32[])."""

    policy_loss: jax.Array  # f32[]
    value_loss: jax.Array  # f32[]
    entropy: jax.Array  # f32[]
    approx_kl: jax.Array  # f32[]
    clip_fraction: jax.Array  # f32[]


def ppo_loss(
    log_prob: jax.Array,
    entropy: jax.Array,
    value: jax.Array,
    old_log_prob: jax.Array,
    old_value: jax.Array,
    advantages: jax.Array,
    targets: jax.Array,
    *,
    clip_eps: float | jax.Array,
    vf_coef: float | jax.Array,
    ent_coef: float | jax.Array,
    clip_value: bool = True,
    normalize_advantages: bool = True,
) -> tuple[jax.Array, LossParts]:
    """PPO's combined objective (Schulman et al. 2017, Eq. 9), to be minimised.

    ``loss = -L^CLIP + vf_coef * L^VF - ent_coef * H`` on one minibatch; all inputs
    are f32[M]. Advantages are normalised to zero mean, unit variance within the
    minibatch when ``normalize_advantages``.

    Returns:
      ``(loss, parts)``: the f32 scalar to differentiate and its pieces.
    """
    if normalize_advantages:
        advantages = (advantages - jnp.mean(advantages)) / (jnp.std(advantages) + 1e-8)
    pg_loss, approx_kl, clip_fraction = clipped_policy_loss(
        log_prob, old_log_prob, advantages, clip_eps
    )
    v_loss = value_loss(value, old_value, targets, clip_eps if clip_value else None)
    ent = jnp.mean(entropy)
    total = pg_loss + vf_coef * v_loss - ent_coef * ent
    return total, LossParts(pg_loss, v_loss, ent, approx_kl, clip_fraction)
