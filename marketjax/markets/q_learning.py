"""Q-learning pieces shared by the deep and wide markets' trainers.

Both markets train bids toward each agent's realised payoff stream: the reward plus
γ times what the next buyers pay (the next highest bid under Vickrey, the next
clearing price in a wide market), with Peng's Q(λ) over the on-policy rollout, no
replay buffer, LayerNorm networks and an annealed ε (PQN, Gallici et al. 2024). The
one definition of the λ-return recursion, the optimizer and the ε schedule lives
here.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from marketjax.experiment.config import ConfigError, field


@dataclasses.dataclass(frozen=True)
class QLearningConfig:
    """Config keys shared by the deep (``deep:``) and wide (``wide:``) markets:
    the agents' networks, the economy's discount and endowment, and the Q(λ)
    learning loop. Each market's section subclasses it."""

    hidden: tuple[int, ...] = (64, 64)
    layer_norm: bool = True
    gamma: float = field(0.99, lo=0.0, hi=1.0)
    initial_wealth: float = field(1e6, lo=0.0, lo_open=True)
    rollout_steps: int = field(16, lo=1, doc="env steps per update per episode")
    lr: float = field(1e-3, lo=0.0, lo_open=True)
    anneal_lr: bool = True
    max_grad_norm: float = field(10.0, lo=0.0, lo_open=True)
    epochs: int = field(1, lo=1, doc="passes over each update's data")
    td_lambda: float = field(0.65, lo=0.0, hi=1.0)
    explore_start: float = field(1.0, lo=0.0, hi=1.0)
    explore_end: float = field(0.05, lo=0.0, hi=1.0)
    explore_fraction: float = field(0.2, lo=0.0, hi=1.0)

    def check_common(self, config, section: str) -> None:
        """Raises ConfigError unless the env has discrete actions and every hidden
        width is positive (``section``, e.g. "deep", names the market's section)."""
        from marketjax.envs.gymnax_adapter import env_spec

        if not env_spec(config.env).discrete:
            raise ConfigError(
                f"'env': the {section} market needs discrete actions; "
                f"{config.env} has a Box action space"
            )
        if any(h < 1 for h in self.hidden):
            raise ConfigError(
                f"'{section}.hidden' widths must be >= 1, got {self.hidden}"
            )


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
