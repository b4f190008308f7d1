"""Complements-m: two goods that are only useful together (seed Def. 2.2, Equ).

Two factors, a left key and a right key (the wide market's two goods). Each step the
controller of each key either leaves it idle (action 0) or turns it to one of ``m``
positions (actions ``1..m``). The lock opens (reward ``+1``) only when both keys are
turned to the same position; two keys turned to different positions jam it (reward
``-jam``); an idle key earns nothing whatever the other does. Neither key is worth
anything on its own: the value of holding one is set by what is done with the
other, which is the definition of complementary goods.

Which position opens the lock is a convention: any of the ``m`` matched pairs pays
``+1``. An agent that controls both keys opens the lock by turning them to the same
position -- any position it likes; two different agents open it only if their
conventions agree. The reward is split equally between the keys
(``info["factor_rewards"]``: ``[r / 2, r / 2]``).

Optimal return: ``T`` (the lock opened every step). Why separable valuations do
worse is argued in ``docs/wide_market.md`` ("Complements"): with
``v_i(x) = q_i·x − (c/2)|x|²`` the clearing of the left key ignores who holds the
right one, so the pair is held (and, with proportional control, acted on) by one
agent with probability ``Σ_i x_iL x_iR`` only.

Observation: f32[2], the elapsed fraction ``t / T`` and the previous step's reward
(so an agent can see whether the lock opened). Action: ``Discrete((m+1)**2)``,
``a = a_L + (m+1) a_R``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class ComplementsState(environment.EnvState):
    """The clock and the previous step's reward."""

    last_reward: jax.Array  # f32[], reward of the previous step (0 at the start)
    time: jax.Array  # i32[], steps since the episode began


@struct.dataclass
class ComplementsParams(environment.EnvParams):
    """Episode limit (the task ends by its own horizon first)."""

    max_steps_in_episode: int = 1000


def lock_reward(left: jax.Array, right: jax.Array, jam: float) -> jax.Array:
    """f32[...]: +1 if both keys turn to one position, -jam if to two, else 0."""
    both = (left > 0) & (right > 0)
    return jnp.where(both, jnp.where(left == right, 1.0, -jam), 0.0).astype(jnp.float32)


class Complements(environment.Environment[ComplementsState, ComplementsParams]):
    """Two complementary keys; gymnax API, factored actions (one per key)."""

    def __init__(self, positions: int = 4, jam: float = 1.0, horizon: int = 16):
        super().__init__()
        if positions < 1 or jam < 0:
            raise ValueError("need positions >= 1 and jam >= 0")
        self.positions = positions
        self.jam = jam
        self.horizon = horizon

    @property
    def default_params(self) -> ComplementsParams:
        return ComplementsParams()

    @property
    def num_factors(self) -> int:
        return 2

    @property
    def factor_actions(self) -> int:
        return self.positions + 1

    def encode(self, key_actions: jax.Array) -> jax.Array:
        """Flat action(s) i32[...] of per-key actions i32[..., 2]."""
        a = key_actions.astype(jnp.int32)
        return a[..., 0] + self.factor_actions * a[..., 1]

    def decode(self, action: jax.Array) -> jax.Array:
        """Per-key actions i32[..., 2] of flat actions i32[...]."""
        a = jnp.asarray(action, jnp.int32)
        return jnp.stack([a % self.factor_actions, a // self.factor_actions], -1)

    def step_env(
        self,
        key: jax.Array,
        state: ComplementsState,
        action: int | jax.Array,
        params: ComplementsParams,
    ) -> tuple[jax.Array, ComplementsState, jax.Array, jax.Array, dict[Any, Any]]:
        """Turns the keys; the lock pays if they match."""
        del key  # deterministic
        keys = self.decode(action)
        reward = lock_reward(keys[0], keys[1], self.jam)
        state = state.replace(last_reward=reward, time=state.time + 1)
        done = self.is_terminated(state, params)
        info = {
            "discount": self.discount(state, params),
            "factor_rewards": jnp.stack([reward, reward]) / 2.0,
        }
        obs = jax.lax.stop_gradient(self.get_obs(state))
        return obs, jax.lax.stop_gradient(state), reward, done, info

    def reset_env(
        self, key: jax.Array, params: ComplementsParams
    ) -> tuple[jax.Array, ComplementsState]:
        state = ComplementsState(
            last_reward=jnp.zeros((), jnp.float32), time=jnp.zeros((), jnp.int32)
        )
        return self.get_obs(state), state

    def get_obs(self, state: ComplementsState, params=None, key=None) -> jax.Array:
        """f32[2]: t / T and the previous step's reward."""
        t = state.time.astype(jnp.float32) / self.horizon
        return jnp.stack([t, state.last_reward])

    def is_terminated(self, state: ComplementsState, params: ComplementsParams):
        return state.time >= self.horizon

    def optimal_return(self) -> float:
        """Return of an optimal episode: the lock opened at each of T steps."""
        return float(self.horizon)

    @property
    def name(self) -> str:
        return f"Complements-{self.positions}"

    @property
    def num_actions(self) -> int:
        return self.factor_actions**2

    def action_space(self, params: ComplementsParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params: ComplementsParams) -> spaces.Box:
        return spaces.Box(-self.jam, 1, (2,), dtype=jnp.float32)

    def state_space(self, params: ComplementsParams) -> spaces.Dict:
        return spaces.Dict(
            {
                "last_reward": spaces.Box(-self.jam, 1, (), jnp.float32),
                "time": spaces.Discrete(self.horizon + 1),
            }
        )


def make_complements(positions: int) -> tuple[Complements, ComplementsParams]:
    """``(env, env_params)`` for ``Complements-<positions>`` (for ``register_env``)."""
    env = Complements(positions)
    return env, env.default_params
