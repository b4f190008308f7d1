"""Deterministic tabular worlds with gymnax's API, and Q* by value iteration.

Chang et al. (2020, "Decentralized Reinforcement Learning: Global Decision-Making
via Local Economic Transactions", §6.1) test the cloned Vickrey society on three
tiny MDPs (Bandit, Chain, Duality: ``envs/bandit.py``, ``envs/chain.py``,
``envs/duality.py``). Each is three tables over S states and A actions:

- ``next_state`` i32[S, A]: where action a leads from state s;
- ``reward`` f32[S, A]: the reward of taking a in s;
- ``terminal`` bool[S, A]: the episode terminates after taking a in s.

A step past ``max_steps_in_episode`` truncates the episode (gymnax's ``is_truncated``
on ``state.time``). The observation is the one-hot f32[S] of the current state, as
in their ``OneHotEnv``. :func:`q_star` solves Q(s, a) = r + γ (1 − terminal)
max_a' Q(s', a') by value iteration (their ``Q_iteration_deterministic``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class TabularState(environment.EnvState):
    """The current state index and the step count."""

    state: jax.Array  # i32[], current state index
    time: jax.Array  # i32[], steps taken in this episode


@struct.dataclass
class TabularParams(environment.EnvParams):
    """The time limit (a shape-free number, so it can differ per run)."""

    max_steps_in_episode: int = 1


class TabularEnv(environment.Environment[TabularState, TabularParams]):
    """A deterministic MDP given by tables (see module docstring).

    Args:
      name: the registered id.
      next_state: [S][A] next states.
      reward: [S][A] rewards.
      terminal: [S][A] whether the step ends the episode.
      start: the start state.
      max_steps: the time limit (truncation).
    """

    def __init__(self, name, next_state, reward, terminal, start, max_steps):
        super().__init__()
        self._name = name
        self.next_state_table = np.asarray(next_state, np.int32)  # i32[S, A]
        self.reward_table = np.asarray(reward, np.float32)  # f32[S, A]
        self.terminal_table = np.asarray(terminal, bool)  # bool[S, A]
        self.start = int(start)
        self.max_steps = int(max_steps)

    @property
    def num_states(self) -> int:
        return self.next_state_table.shape[0]

    @property
    def num_actions(self) -> int:
        return self.next_state_table.shape[1]

    @property
    def default_params(self) -> TabularParams:
        return TabularParams(max_steps_in_episode=self.max_steps)

    def step_env(
        self,
        key: jax.Array,
        state: TabularState,
        action: int | jax.Array,
        params: TabularParams,
    ) -> tuple[jax.Array, TabularState, jax.Array, jax.Array, dict[Any, Any]]:
        """Looks the transition up in the tables (deterministic: ``key`` unused)."""
        del key
        a = jnp.asarray(action, jnp.int32)
        s = state.state
        reward = jnp.asarray(self.reward_table)[s, a]
        terminated = jnp.asarray(self.terminal_table)[s, a]
        new = TabularState(
            state=jnp.asarray(self.next_state_table)[s, a], time=state.time + 1
        )
        info = {"discount": 1.0 - terminated.astype(jnp.float32)}
        return self.get_obs(new), new, reward, terminated, info

    def reset_env(
        self, key: jax.Array, params: TabularParams
    ) -> tuple[jax.Array, TabularState]:
        del key
        state = TabularState(jnp.int32(self.start), jnp.int32(0))
        return self.get_obs(state), state

    def get_obs(self, state: TabularState, params=None, key=None) -> jax.Array:
        """f32[S], one-hot of the current state."""
        return jax.nn.one_hot(state.state, self.num_states, dtype=jnp.float32)

    @property
    def name(self) -> str:
        return self._name

    def action_space(self, params: TabularParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params: TabularParams) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (self.num_states,), jnp.float32)

    def state_space(self, params: TabularParams) -> spaces.Dict:
        return spaces.Dict(
            {
                "state": spaces.Discrete(self.num_states),
                "time": spaces.Discrete(params.max_steps_in_episode + 1),
            }
        )


def q_star(env: TabularEnv, gamma: float, tol: float = 1e-10) -> np.ndarray:
    """Q*(s, a) f64[S, A] by value iteration at discount γ < 1 (no time limit).

    Iterates Q ← r + γ (1 − terminal) max_a' Q(s', a') until the largest change is
    below ``tol`` (a γ-contraction: about log(tol)/log(γ) sweeps).
    """
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"value iteration needs 0 <= gamma < 1, got {gamma}")
    nxt, rew = env.next_state_table, env.reward_table.astype(np.float64)
    cont = 1.0 - env.terminal_table.astype(np.float64)
    q = np.zeros(nxt.shape)
    while True:
        new = rew + gamma * cont * q.max(axis=1)[nxt]
        if np.max(np.abs(new - q)) < tol:
            return new
        q = new


def greedy_path(env: TabularEnv, q: np.ndarray, steps: int) -> list[tuple[int, int]]:
    """The (state, action) pairs the greedy policy of ``q`` visits from the start,
    up to termination or ``steps`` steps (the pairs whose bids are checked)."""
    s, pairs = env.start, []
    for _ in range(steps):
        a = int(np.argmax(q[s]))
        if (s, a) in pairs:  # a cycle: every later pair repeats
            break
        pairs.append((s, a))
        if env.terminal_table[s, a]:
            break
        s = int(env.next_state_table[s, a])
    return pairs
