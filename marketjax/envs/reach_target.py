"""ReachTarget: a task whose depth varies with its input (seed 002, §3 "dynamic scale").

An integer x starts ``d`` unit steps away from a target t (d, the difficulty, is
uniform in [0, ``max_difficulty``], the direction random). Actions: 0 adds one to
x, 1 subtracts one, 2 sells x to the consumer, who pays 1 if x = t and nothing
otherwise; the sale ends the episode. A market solving it has d agents transform x
before the consumer buys: the depth of the computation is set by the input, not by
the architecture. Truncated after ``3 · max_difficulty + 2`` steps.

Observation: f32[3], the 0/1 predicates x < t, x > t, x = t.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

UP, DOWN, SELL = 0, 1, 2


@struct.dataclass
class ReachState(environment.EnvState):
    """The value, the target and the step count."""

    x: jax.Array  # i32[]
    target: jax.Array  # i32[]
    time: jax.Array  # i32[]


@struct.dataclass
class ReachParams(environment.EnvParams):
    max_steps_in_episode: int = 26


class ReachTarget(environment.Environment[ReachState, ReachParams]):
    """See module docstring. ``max_difficulty``: the largest distance d."""

    def __init__(self, max_difficulty: int = 8):
        super().__init__()
        self.max_difficulty = int(max_difficulty)

    @property
    def default_params(self) -> ReachParams:
        return ReachParams(max_steps_in_episode=3 * self.max_difficulty + 2)

    def reset_difficulty(self, key: jax.Array, d: jax.Array):
        """A fresh instance at distance ``d`` (random direction and start)."""
        k_x, k_sign = jax.random.split(key)
        x = jax.random.randint(k_x, (), 0, 100)
        sign = jnp.where(jax.random.bernoulli(k_sign), 1, -1)
        state = ReachState(
            time=jnp.int32(0), x=x, target=(x + sign * jnp.asarray(d)).astype(jnp.int32)
        )
        return self.get_obs(state), state

    def reset_env(self, key: jax.Array, params: ReachParams):
        k_d, k_inst = jax.random.split(key)
        d = jax.random.randint(k_d, (), 0, self.max_difficulty + 1)
        return self.reset_difficulty(k_inst, d)

    def step_env(self, key, state: ReachState, action, params: ReachParams):
        """Moves x by ±1, or sells it (reward 1 if x = t; the episode ends)."""
        del key
        a = jnp.asarray(action, jnp.int32)
        sell = a == SELL
        x = state.x + jnp.where(a == UP, 1, 0) - jnp.where(a == DOWN, 1, 0)
        reward = jnp.where(sell & (state.x == state.target), 1.0, 0.0)
        new = state.replace(x=x.astype(jnp.int32), time=state.time + 1)
        info = {"discount": 1.0 - sell.astype(jnp.float32)}
        return self.get_obs(new), new, reward.astype(jnp.float32), sell, info

    def get_obs(self, state: ReachState, params=None, key=None) -> jax.Array:
        """f32[3]: x < t, x > t, x = t."""
        return jnp.stack(
            [state.x < state.target, state.x > state.target, state.x == state.target]
        ).astype(jnp.float32)

    @property
    def name(self) -> str:
        return "ReachTarget"

    @property
    def num_actions(self) -> int:
        return 3

    def action_space(self, params: ReachParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(3)

    def observation_space(self, params: ReachParams) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (3,), jnp.float32)

    def state_space(self, params: ReachParams) -> spaces.Dict:
        return spaces.Dict(
            {
                "x": spaces.Discrete(200),
                "target": spaces.Discrete(200),
                "time": spaces.Discrete(params.max_steps_in_episode + 1),
            }
        )


def make_reach_target(max_difficulty: int = 8) -> tuple[ReachTarget, ReachParams]:
    """``(env, env_params)`` for ``register_env``."""
    env = ReachTarget(max_difficulty)
    return env, env.default_params
