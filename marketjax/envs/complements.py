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

``Complements-mxK`` (``keys=K``, registered for ``4x3``) is the same lock with K
keys: ``+1`` only when all K turn to one position, ``-jam`` when all K turn but not
to one, 0 when any is idle (:func:`lock_reward_keys`); ``factor_rewards`` is
``r / K`` per key and the action ``Discrete((m+1)**K)``, ``a = Σ_k a_k (m+1)^k``.
With ``K = 2`` it is the two-key env above, number for number.
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
    return lock_reward_keys(jnp.stack(jnp.broadcast_arrays(left, right), -1), jam)


def lock_reward_keys(keys: jax.Array, jam: float) -> jax.Array:
    """f32[...] for the per-key actions i32[..., K] of a K-key lock.

    +1 if every key turns to one position, -jam if every key turns but not all
    to the same position, 0 if any key is left idle.
    """
    turned = jnp.all(keys > 0, axis=-1)
    same = jnp.all(keys == keys[..., :1], axis=-1)
    return jnp.where(turned, jnp.where(same, 1.0, -jam), 0.0).astype(jnp.float32)


class Complements(environment.Environment[ComplementsState, ComplementsParams]):
    """K (default two) complementary keys; gymnax API, factored actions (one
    per key)."""

    def __init__(
        self, positions: int = 4, jam: float = 1.0, horizon: int = 16, keys: int = 2
    ):
        super().__init__()
        if positions < 1 or jam < 0 or keys < 2:
            raise ValueError("need positions >= 1, jam >= 0 and keys >= 2")
        self.positions = positions
        self.jam = jam
        self.horizon = horizon
        self.keys = keys

    @property
    def default_params(self) -> ComplementsParams:
        return ComplementsParams()

    @property
    def num_factors(self) -> int:
        return self.keys

    @property
    def factor_actions(self) -> int:
        return self.positions + 1

    def encode(self, key_actions: jax.Array) -> jax.Array:
        """Flat action(s) i32[...] of per-key actions i32[..., K] (key 0 lowest)."""
        a = key_actions.astype(jnp.int32)
        return jnp.sum(a * self._place_values(a.ndim - 1), axis=-1)

    def decode(self, action: jax.Array) -> jax.Array:
        """Per-key actions i32[..., K] of flat actions i32[...]."""
        a = jnp.asarray(action, jnp.int32)
        return (a[..., None] // self._place_values(a.ndim)) % self.factor_actions

    def _place_values(self, batch_dims: int) -> jax.Array:
        """i32[1, ..., 1, K]: (m + 1)^k, the weight of key k in a flat action."""
        base = self.factor_actions ** jnp.arange(self.keys, dtype=jnp.int32)
        return base.reshape((1,) * batch_dims + (self.keys,))

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
        reward = lock_reward_keys(keys, self.jam)
        state = state.replace(last_reward=reward, time=state.time + 1)
        done = self.is_terminated(state, params)
        info = {
            "discount": self.discount(state, params),
            "factor_rewards": jnp.full((self.keys,), reward / self.keys),
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
        if self.keys == 2:
            return f"Complements-{self.positions}"
        return f"Complements-{self.positions}x{self.keys}"

    @property
    def num_actions(self) -> int:
        return self.factor_actions**self.keys

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


def make_complements(
    positions: int, keys: int = 2
) -> tuple[Complements, ComplementsParams]:
    """``(env, env_params)`` for ``Complements-<positions>`` (two keys) or
    ``Complements-<positions>x<keys>`` (for ``register_env``)."""
    env = Complements(positions, keys=keys)
    return env, env.default_params
