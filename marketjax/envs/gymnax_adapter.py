"""Worlds for every algorithm: gymnax environments (and our own) batched over episodes.

gymnax 1.0's ``step`` returns six values ``(obs, state, reward, terminated, truncated,
info)`` and resets an episode automatically when it ends. :class:`BatchedEnv` runs B
such episodes with one ``vmap``, flattens observations to ``f32[B, obs_dim]`` and
returns ``done = terminated | truncated``. Environment objects are built once per name
and cached (a new gymnax instance recompiles every jitted function that closes over it).

Resets (``env_reset`` in a training config): gymnax's ``step`` computes a fresh
reset for every episode at every step and selects it where the episode ended
(``eager``, the default). ``lazy`` computes the same step and the same resets, from
the same keys, but only at steps where some episode of the batch (of any run the
runner vmaps) ended: the same episodes, the same numbers up to the last bits of
the fused arithmetic (which chaotic dynamics, Acrobot's, amplify over hundreds of
steps), and about 5% faster on CartPole with one seed (docs/throughput.md;
``scripts/lazy_reset_check.py`` compares the two on every env).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import typing
from collections.abc import Callable
from typing import Any

import gymnax
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from marketjax.core.axes import any_across_runs
from marketjax.core.schema import TrainConfig

# The choices of the config's `env_reset` (one list: the schema's Literal).
RESET_RULES = typing.get_args(typing.get_type_hints(TrainConfig)["env_reset"])

# Our own environments: name -> factory returning (env, env_params) with gymnax's API.
_CUSTOM_ENVS: dict[str, Callable[[], tuple[Any, Any]]] = {}


def register_env(name: str, factory: Callable[[], tuple[Any, Any]]) -> None:
    """Adds an environment (gymnax API: reset/step/observation_space/action_space)."""
    _CUSTOM_ENVS[name] = factory
    make_gymnax.cache_clear()


def known_envs() -> list[str]:
    """All environment ids accepted by configs."""
    _load_custom_envs()
    return sorted([*gymnax.registered_envs, *_CUSTOM_ENVS])


def _load_custom_envs() -> None:
    # Importing the package registers our environments (MultiCatch, ...).
    import marketjax.envs  # noqa: F401


def check_env_name(name: str) -> None:
    """Raises ValueError naming the closest known id if ``name`` is not an env."""
    valid = known_envs()
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown env '{name}'{hint}")


@functools.cache
def make_gymnax(name: str) -> tuple[Any, Any]:
    """The cached ``(env, env_params)`` pair for an environment id."""
    _load_custom_envs()
    if name in _CUSTOM_ENVS:
        return _CUSTOM_ENVS[name]()
    check_env_name(name)
    return gymnax.make(name)


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Static facts about an environment that fix array shapes."""

    obs_dim: int  # length of the flattened observation
    discrete: bool  # True for Discrete action spaces
    num_actions: int  # Discrete: number of actions; Box: action dimension
    action_low: float  # Box only: lower bound (broadcast over dimensions)
    action_high: float  # Box only: upper bound


def env_spec(name: str) -> EnvSpec:
    """Observation size and action space of an environment id."""
    env, params = make_gymnax(name)
    obs_shape = env.observation_space(params).shape
    space = env.action_space(params)
    discrete = hasattr(space, "n")
    if discrete:
        return EnvSpec(math.prod(obs_shape), True, int(space.n), 0.0, 0.0)
    low = float(jnp.min(jnp.asarray(space.low)))
    high = float(jnp.max(jnp.asarray(space.high)))
    return EnvSpec(math.prod(obs_shape), False, math.prod(space.shape), low, high)


@struct.dataclass
class EpisodeStats:
    """Running return and length of each of B episodes (purejaxrl's LogWrapper)."""

    episode_return: jax.Array  # f32[B]
    episode_length: jax.Array  # i32[B]

    @classmethod
    def zeros(cls, num_envs: int) -> EpisodeStats:
        return cls(jnp.zeros(num_envs, jnp.float32), jnp.zeros(num_envs, jnp.int32))


def track_episodes(
    stats: EpisodeStats, reward: jax.Array, done: jax.Array
) -> tuple[EpisodeStats, jax.Array, jax.Array]:
    """Adds one step's reward; returns new stats and this step's completed episodes.

    Args:
      stats: running totals before the step.
      reward: f32[B] reward of the step.
      done: bool[B] whether each episode ended at this step.

    Returns:
      ``(stats, completed_return_sum, completed_count)``: the sum of the returns of
      episodes that ended at this step (f32 scalar) and how many ended (f32 scalar).
    """
    ret = stats.episode_return + reward
    length = stats.episode_length + 1
    completed_sum = jnp.sum(jnp.where(done, ret, 0.0))
    completed_count = jnp.sum(done.astype(jnp.float32))
    new = EpisodeStats(jnp.where(done, 0.0, ret), jnp.where(done, 0, length))
    return new, completed_sum, completed_count


def lazy_resets_apply(name: str) -> bool:
    """Whether ``env_reset: lazy`` changes how ``name`` resets: lazy resets
    re-create gymnax's auto-reset, so only for an env that uses gymnax's own
    ``step`` (DeepSea-bsuite and BlocksWorld define theirs and keep it)."""
    env, _ = make_gymnax(name)
    return type(env).step is environment.Environment.step


class BatchedEnv:
    """B parallel episodes of one environment, auto-reset, flat observations.

    Observation: f32[B, obs_dim]. Action: i32[B] (discrete) or f32[B, A] (Box).
    Reward: f32[B]. Done: bool[B] (terminated or truncated; the episode has already
    been reset, and ``info["final_observation"]`` holds the last observation).
    """

    def __init__(self, name: str, num_envs: int, reset: str = "eager"):
        if reset not in RESET_RULES:
            raise ValueError(f"reset must be one of {RESET_RULES}, got {reset!r}")
        self.name = name
        self.num_envs = num_envs
        self.env, self.params = make_gymnax(name)
        self.spec = env_spec(name)
        self.lazy = reset == "lazy" and lazy_resets_apply(name)

    def _flat(self, obs: jax.Array) -> jax.Array:
        return obs.reshape(obs.shape[0], -1).astype(jnp.float32)

    def reset(self, key: jax.Array) -> tuple[jax.Array, Any]:
        keys = jax.random.split(key, self.num_envs)
        with jax.numpy_dtype_promotion("standard"):  # gymnax mixes dtypes freely
            obs, state = jax.vmap(self.env.reset, in_axes=(0, None))(keys, self.params)
        return self._flat(obs), state

    def step(
        self, key: jax.Array, state: Any, action: jax.Array
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array, dict]:
        keys = jax.random.split(key, self.num_envs)
        auto_reset = self._lazy_step if self.lazy else self._eager_step
        with jax.numpy_dtype_promotion("standard"):  # gymnax mixes dtypes freely
            obs, state, reward, terminated, truncated, info = auto_reset(
                keys, state, action
            )
        done = jnp.logical_or(terminated, truncated)
        info = {**info, "final_observation": self._flat(info["final_observation"])}
        return (
            self._flat(obs),
            state,
            reward.astype(jnp.float32),
            done,
            info,
        )

    def _eager_step(self, keys, state, action):
        """gymnax's own ``step``: every episode's reset computed, then selected."""
        return jax.vmap(self.env.step, in_axes=(0, 0, 0, None))(
            keys, state, action, self.params
        )

    def _lazy_step(self, keys, state, action):
        """gymnax's ``step`` (same keys, same outputs) with the resets computed
        only when some episode ended (``lax.cond``, one predicate for all runs)."""
        env, params = self.env, self.params
        step_keys, reset_keys = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
        obs_st, state_st, reward, terminated, info = jax.vmap(
            env.step_env, in_axes=(0, 0, 0, None)
        )(step_keys, state, action, params)
        truncated = jax.vmap(env.is_truncated, in_axes=(0, None))(state_st, params)
        done = jnp.logical_or(terminated, truncated)

        def reset_ended(stepped):
            reset = jax.vmap(env.reset_env, in_axes=(0, None))(reset_keys, params)
            pick = jax.vmap(jax.lax.select)  # per episode: reset where it ended
            return jax.tree.map(lambda r, s: pick(done, r, s), reset, stepped)

        obs, state = jax.lax.cond(
            any_across_runs(jnp.any(done)),
            reset_ended,
            lambda stepped: stepped,
            (obs_st, state_st),
        )
        info = {
            **info,
            "terminated": terminated,
            "truncated": truncated,
            "final_observation": obs_st,
        }
        return obs, state, reward, terminated, truncated, info
