"""MultiCatch-K: K independent bsuite Catch boards side by side (a factored world).

A world whose state is a direct sum of K factors (seed Def. 2.2: S = S_1 ⊕ ... ⊕ S_K):
each board is one factor, and the right to control it is one good of the wide market
(``markets/wide.py``). Each board follows gymnax's ``Catch-bsuite`` exactly (a ball
falls one row per step; the paddle moves left, stays or moves right; reward +1 for a
catch, -1 for a miss, on the bottom row). All boards start together and last
``rows - 1`` steps, so the whole episode ends when every ball has landed.

Observation: f32[K, rows, columns], 1 at each board's ball and paddle.
Action: ``Discrete(3**K)`` flat action ``a = sum_k a_k 3**k``, ``a_k`` in {0, 1, 2}
(left, stay, right) on board k (:func:`decode_actions`, :func:`encode_actions`), so
that PPO and the deep market can use it unchanged.
Reward: f32[], the sum over boards; ``info["factor_rewards"]`` f32[K] per board.
State: :class:`MultiCatchState`, per-board leaves i32[K].
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

BOARD_ACTIONS = 3  # left, stay, right


@struct.dataclass
class MultiCatchState(environment.EnvState):
    """K boards' positions (gymnax's Catch state, one entry per board)."""

    ball_x: jax.Array  # i32[K]
    ball_y: jax.Array  # i32[K]
    paddle_x: jax.Array  # i32[K]
    paddle_y: jax.Array  # i32[K]
    time: jax.Array  # i32[], steps since the episode began


@struct.dataclass
class MultiCatchParams(environment.EnvParams):
    """Sweepable numbers (gymnax's default Catch episode limit)."""

    max_steps_in_episode: int = 1000


def decode_actions(action: jax.Array, num_boards: int) -> jax.Array:
    """Per-board actions i32[..., K] of flat actions i32[...] (base-3 digits)."""
    flat = jnp.asarray(action, jnp.int32)[..., None]
    powers = BOARD_ACTIONS ** jnp.arange(num_boards, dtype=jnp.int32)
    powers = powers.reshape((1,) * (flat.ndim - 1) + (num_boards,))
    return (flat // powers) % BOARD_ACTIONS


def encode_actions(board_actions: jax.Array) -> jax.Array:
    """Flat actions i32[...] of per-board actions i32[..., K]."""
    k = board_actions.shape[-1]
    powers = BOARD_ACTIONS ** jnp.arange(k, dtype=jnp.int32)
    powers = powers.reshape((1,) * (board_actions.ndim - 1) + (k,))
    return jnp.sum(board_actions.astype(jnp.int32) * powers, axis=-1)


class MultiCatch(environment.Environment[MultiCatchState, MultiCatchParams]):
    """K Catch boards; gymnax API (``reset``, six-value ``step``, spaces).

    ``num_factors`` and ``factor_actions`` tell the wide market how the flat action
    factors (K goods, 3 actions each); :meth:`encode` builds a flat action.
    """

    def __init__(self, num_boards: int = 2, rows: int = 10, columns: int = 5):
        super().__init__()
        self.num_boards = num_boards
        self.rows = rows
        self.columns = columns

    @property
    def default_params(self) -> MultiCatchParams:
        return MultiCatchParams()

    @property
    def num_factors(self) -> int:
        return self.num_boards

    @property
    def factor_actions(self) -> int:
        return BOARD_ACTIONS

    def encode(self, board_actions: jax.Array) -> jax.Array:
        """Flat action(s) of per-board actions i32[..., K]."""
        return encode_actions(board_actions)

    def _sample(self, key: jax.Array) -> MultiCatchState:
        ball_x = jax.random.randint(key, (self.num_boards,), 0, self.columns)
        k = self.num_boards
        return MultiCatchState(
            ball_x=ball_x.astype(jnp.int32),
            ball_y=jnp.zeros((k,), jnp.int32),
            paddle_x=jnp.full((k,), self.columns // 2, jnp.int32),
            paddle_y=jnp.full((k,), self.rows - 1, jnp.int32),
            time=jnp.zeros((), jnp.int32),
        )

    def step_env(
        self,
        key: jax.Array,
        state: MultiCatchState,
        action: int | jax.Array,
        params: MultiCatchParams,
    ) -> tuple[jax.Array, MultiCatchState, jax.Array, jax.Array, dict[Any, Any]]:
        """Moves every paddle by its board's action and drops every ball one row."""
        del key  # the dynamics are deterministic; resets draw from their own key
        dx = decode_actions(action, self.num_boards) - 1
        paddle_x = jnp.clip(state.paddle_x + dx, 0, self.columns - 1)
        ball_y = state.ball_y + 1
        landed = ball_y == state.paddle_y
        caught = paddle_x == state.ball_x
        factor_rewards = landed.astype(jnp.float32) * jnp.where(caught, 1.0, -1.0)
        state = state.replace(paddle_x=paddle_x, ball_y=ball_y, time=state.time + 1)
        done = self.is_terminated(state, params)
        info = {
            "discount": self.discount(state, params),
            "factor_rewards": factor_rewards.astype(jnp.float32),
        }
        obs = jax.lax.stop_gradient(self.get_obs(state))
        return obs, jax.lax.stop_gradient(state), jnp.sum(factor_rewards), done, info

    def reset_env(
        self, key: jax.Array, params: MultiCatchParams
    ) -> tuple[jax.Array, MultiCatchState]:
        state = self._sample(key)
        return self.get_obs(state), state

    def get_obs(self, state: MultiCatchState, params=None, key=None) -> jax.Array:
        """f32[K, rows, columns] with ones at each board's ball and paddle."""

        def board(bx, by, px, py):
            grid = jnp.zeros((self.rows, self.columns), jnp.float32)
            return grid.at[by, bx].set(1.0).at[py, px].set(1.0)

        return jax.vmap(board)(
            state.ball_x, state.ball_y, state.paddle_x, state.paddle_y
        )

    def is_terminated(self, state: MultiCatchState, params: MultiCatchParams):
        """Every ball has landed (the boards move in lockstep)."""
        return jnp.all(state.ball_y == self.rows - 1)

    @property
    def name(self) -> str:
        return f"MultiCatch-{self.num_boards}"

    @property
    def num_actions(self) -> int:
        return BOARD_ACTIONS**self.num_boards

    def action_space(self, params: MultiCatchParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(BOARD_ACTIONS**self.num_boards)

    def observation_space(self, params: MultiCatchParams) -> spaces.Box:
        shape = (self.num_boards, self.rows, self.columns)
        return spaces.Box(0, 1, shape, dtype=jnp.float32)

    def state_space(self, params: MultiCatchParams) -> spaces.Dict:
        k = self.num_boards
        return spaces.Dict(
            {
                "ball_x": spaces.Box(0, self.columns - 1, (k,), jnp.int32),
                "ball_y": spaces.Box(0, self.rows - 1, (k,), jnp.int32),
                "paddle_x": spaces.Box(0, self.columns - 1, (k,), jnp.int32),
                "paddle_y": spaces.Box(0, self.rows - 1, (k,), jnp.int32),
                "time": spaces.Discrete(params.max_steps_in_episode),
            }
        )


def make_multicatch(num_boards: int) -> tuple[MultiCatch, MultiCatchParams]:
    """``(env, env_params)`` for ``MultiCatch-<num_boards>`` (for ``register_env``)."""
    env = MultiCatch(num_boards)
    return env, env.default_params
