"""Q-learning pieces shared by the deep and wide markets' trainers.

Both markets train bids toward each agent's realised payoff stream: the reward plus
γ times what the next buyers pay (the next highest bid under Vickrey, the next
clearing price in a wide market), with Peng's Q(λ) over the on-policy rollout, no
replay buffer, LayerNorm networks and an annealed ε (PQN, Gallici et al. 2024). The
one definition of the λ-return recursion, the optimizer and the ε schedule lives
here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def lambda_returns(
    reward: jax.Array, done: jax.Array, credit_next: jax.Array, gamma, lam
) -> jax.Array:
    """Peng's Q(λ) targets of the realised payoff stream, computed backwards.

    Args:
      reward: f32[T, B] reward collected by the owner at each step.
      done: bool[T, B] the episode ended at step t (no credit follows).
      credit_next: f32[T, B] credit the next buyer pays for the right after step t.
      gamma: discount γ.
      lam: λ in [0, 1]; 0 gives the one-step payoff r_t + γ·credit_{t+1}.

    Returns:
      f32[T, B] targets y_t = r_t + γ(1 − d_t)[(1 − λ)·c_{t+1} + λ·y_{t+1}], with
      y_T = c_T (bootstrap from the auction on the last observation).
    """

    def back(next_y, xs):
        r, d, c = xs
        y = r + gamma * (1.0 - d) * ((1.0 - lam) * c + lam * next_y)
        return y, y

    _, ys = jax.lax.scan(
        back,
        credit_next[-1],
        (reward, done.astype(jnp.float32), credit_next),
        reverse=True,
    )
    return ys


def make_optimizer(
    lr: float, anneal: bool, max_grad_norm: float, num_steps: int
) -> optax.GradientTransformation:
    """Global-norm clipping then Adam; lr annealed linearly to 0 over ``num_steps``
    gradient steps if ``anneal``."""
    rate = optax.linear_schedule(lr, 0.0, num_steps) if anneal else lr
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(rate))


def make_explore_schedule(
    start: float, end: float, fraction: float, num_updates: int
) -> optax.Schedule:
    """ε annealed linearly from ``start`` to ``end`` over the first ``fraction`` of
    the run's ``num_updates`` updates, then held."""
    return optax.linear_schedule(start, end, max(1, int(fraction * num_updates)))
