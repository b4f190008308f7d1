"""Actor-critic networks for PPO (purejaxrl's separate actor and critic MLPs).

Discrete action spaces get a categorical policy (logits); Box action spaces get a
diagonal Gaussian with a state-independent, learned log standard deviation, as in
Schulman et al. 2017 ("Proximal Policy Optimization Algorithms", Sec. 6.1).
Initialisation follows the usual PPO recipe: orthogonal weights with gain sqrt(2) in
hidden layers, 0.01 in the policy head and 1 in the value head; zero biases.

The orthogonal matrices come from :func:`orthogonal`, Gram–Schmidt in plain jnp,
not from ``jnp.linalg.qr``: jaxlib's batched LAPACK QR (``lapack_sgeqrf_ffi`` →
``ParallelBatchMap``) blocks a CPU pool thread on sub-tasks queued to the same
pool, and two at once deadlock XLA's 2-thread pool (seen: PPO runs hanging forever
at 0% CPU under ``jit(vmap(init))``; ``docs/reliability.md`` has a reproducer).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


def gram_schmidt(a: jax.Array) -> jax.Array:
    """Orthonormalises the columns of ``a`` f32[m, n] (m >= n), in order.

    Classical Gram–Schmidt applied twice per column ("twice is enough", Giraud et
    al. 2005), in a ``fori_loop`` of matrix-vector products: the Q of the QR
    decomposition whose R has a positive diagonal, without any LAPACK call.
    """
    n = a.shape[1]

    def body(j, q):
        v = jax.lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False)
        for _ in range(2):  # columns of q beyond j are still zero
            v = v - q @ (q.T @ v)
        v = v / jnp.sqrt(jnp.sum(v * v))
        return jax.lax.dynamic_update_index_in_dim(q, v, j, axis=1)

    return jax.lax.fori_loop(0, n, body, jnp.zeros_like(a))


def orthogonal(scale: float = 1.0):
    """A LAPACK-free ``orthogonal(scale)`` (same distribution:
    Haar-random orthogonal rows or columns, Saxe et al. 2014)."""

    def init(key, shape, dtype=jnp.float32):
        n_cols = shape[-1]
        n_rows = int(np.prod(shape)) // n_cols
        tall = (max(n_rows, n_cols), min(n_rows, n_cols))
        q = gram_schmidt(jax.random.normal(key, tall, jnp.float32))
        if n_rows < n_cols:
            q = q.T
        return (scale * q).reshape(shape).astype(dtype)

    return init


def _mlp(x: jax.Array, hidden: Sequence[int], activation: str) -> jax.Array:
    act = _ACTIVATIONS[activation]
    for width in hidden:
        x = nn.Dense(
            width,
            kernel_init=orthogonal(np.sqrt(2.0)),
            bias_init=nn.initializers.zeros,
        )(x)
        x = act(x)
    return x


class ActorCritic(nn.Module):
    """Policy and value networks (no shared layers).

    Input: observations f32[..., obs_dim].
    Output: ``(policy_out, log_std, value)``:
      - discrete: ``policy_out`` = logits f32[..., A]; ``log_std`` = None.
      - Box: ``policy_out`` = Gaussian mean f32[..., A]; ``log_std`` f32[..., A]
        (one learned parameter per action dimension, broadcast over the batch).
      - ``value`` f32[...]: the state-value estimate.

    Attributes:
      num_actions: number of discrete actions, or the action dimension for Box.
      discrete: True for a categorical policy, False for a Gaussian one.
      hidden: widths of the hidden layers of both MLPs.
      activation: "tanh" or "relu".
      log_std_init: initial log standard deviation (Box only).
    """

    num_actions: int
    discrete: bool
    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array):
        actor = _mlp(obs, self.hidden, self.activation)
        policy_out = nn.Dense(
            self.num_actions,
            kernel_init=orthogonal(0.01),
            bias_init=nn.initializers.zeros,
        )(actor)
        log_std = None
        if not self.discrete:
            log_std_param = self.param(
                "log_std",
                nn.initializers.constant(self.log_std_init),
                (self.num_actions,),
            )
            log_std = jnp.broadcast_to(log_std_param, policy_out.shape)
        critic = _mlp(obs, self.hidden, self.activation)
        value = nn.Dense(
            1,
            kernel_init=orthogonal(1.0),
            bias_init=nn.initializers.zeros,
        )(critic)
        return policy_out, log_std, jnp.squeeze(value, axis=-1)
