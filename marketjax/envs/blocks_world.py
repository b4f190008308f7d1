"""Baum's Blocks World (Baum 1999; Baum & Durdanovic 2000), gymnax-style and jittable.

Four stacks of coloured blocks. Stack 0 is the goal: n blocks of ``num_colors``
colours. Stacks 1–3 hold the same n blocks, shuffled and dealt at random among
them. An action moves the top block of stack 1, 2 or 3 onto another of those three
(six moves, :data:`MOVES`; moving from an empty stack does nothing but spends the
step). The episode terminates with reward ``reward_per_block · n`` when stack 1
equals stack 0 (same colours bottom to top, same height), and is truncated after
``step_factor · n`` steps.

Shapes are static: the stacks are i32[4, M] (M = ``max_blocks``), colours 0..K−1,
−1 above each stack's top. The instance size n ≤ M is part of the state.

**Curriculum.** Each of the B parallel episode slots climbs its own staircase: an
instance solved → the next one in that slot has n + 1 blocks, failed (truncated) →
n − 1 (within [1, M]); the first instance of a slot has n uniform in
[1, ``start_blocks``]. (gymnax resets an episode without its old state, so
:meth:`BlocksWorld.step` carries the level across the automatic reset.)

**Observation.** Not the stacks: eight 0/1 features of them, the predicates Baum's
Hayek agents condition on (:data:`FEATURES`; "the next block needed" is the colour
of goal block h₁, h₁ the height of stack 1), and one number, ``progress``: the
length of stack 1's correct prefix over n (Hayek3's agents also read numbers of
the state, such as how many blocks are in place). A program that reads only these
features runs unchanged on worlds of any M: :meth:`BlocksWorld.resized` builds a
larger world for testing at sizes beyond training.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

# (source, destination) stacks of the six actions.
MOVES: tuple[tuple[int, int], ...] = ((1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2))
FEATURES: tuple[str, ...] = (
    "prefix_ok",  # stack 1 is a correct prefix of the goal (true when empty)
    "top2_needed",  # the top of stack 2 has the colour of the next block needed
    "top3_needed",  # the top of stack 3 has the colour of the next block needed
    "empty1",
    "empty2",
    "empty3",
    "needed_in2",  # some block of stack 2 has the needed colour
    "needed_in3",  # some block of stack 3 has the needed colour
    "progress",  # NOT 0/1: correct prefix length of stack 1 / n, in [0, 1]
)
# With ``size_feature``: one more number, log n, so that a rule's log-linear bid
# exp(log_bid + obs·w) can scale with the reward 10n (w = 1 on it: a bid ∝ n).
SIZE_FEATURES: tuple[str, ...] = (*FEATURES, "log_n")
EMPTY = -1


@struct.dataclass
class BlocksState(environment.EnvState):
    """One instance and the slot's curriculum level."""

    stacks: jax.Array  # i32[4, M], colour per position, -1 above the top
    heights: jax.Array  # i32[4]
    n: jax.Array  # i32[], blocks in this instance
    time: jax.Array  # i32[], steps taken in this instance
    # i32[], the slot's staircase level (only with ``revisit`` > 0; else None and
    # the level is n)
    level: Any = None


@struct.dataclass
class BlocksParams(environment.EnvParams):
    """Unused time limit of gymnax's base (ours is ``step_factor · n``)."""

    max_steps_in_episode: int = 1


def features(stacks: jax.Array, heights: jax.Array) -> jax.Array:
    """:data:`FEATURES` as f32[9]: eight predicates (0 or 1), then ``progress``.

    Args:
      stacks: i32[4, M]; heights: i32[4].
    """
    m = stacks.shape[1]
    pos = jnp.arange(m)
    h1 = heights[1]
    prefix_ok = jnp.all(jnp.where(pos < h1, stacks[1] == stacks[0], True))
    need = jnp.where(h1 < m, stacks[0, jnp.minimum(h1, m - 1)], EMPTY)
    has_need = need != EMPTY

    def top(s):
        return jnp.where(heights[s] > 0, stacks[s, jnp.maximum(heights[s] - 1, 0)], -2)

    f = [
        prefix_ok,
        has_need & (top(2) == need),
        has_need & (top(3) == need),
        heights[1] == 0,
        heights[2] == 0,
        heights[3] == 0,
        has_need & jnp.any(stacks[2] == need),
        has_need & jnp.any(stacks[3] == need),
    ]
    in_place = jnp.cumprod((stacks[1] == stacks[0]) & (pos < h1))  # i32[M]
    n = jnp.sum(stacks[0] != EMPTY)
    progress = jnp.sum(in_place) / jnp.maximum(n, 1)
    return jnp.concatenate(
        [jnp.stack(f).astype(jnp.float32), progress.astype(jnp.float32)[None]]
    )


def solved(stacks: jax.Array) -> jax.Array:
    """bool[]: stack 1 equals the goal (the −1 padding makes the heights equal)."""
    return jnp.all(stacks[1] == stacks[0])


def move(stacks: jax.Array, heights: jax.Array, action: jax.Array):
    """Applies one of :data:`MOVES`; from an empty stack nothing happens.

    Returns ``(stacks i32[4, M], heights i32[4])``.
    """
    table = jnp.asarray(MOVES, jnp.int32)
    src, dst = table[action, 0], table[action, 1]
    legal = heights[src] > 0
    top = jnp.maximum(heights[src] - 1, 0)
    block = stacks[src, top]
    moved = stacks.at[src, top].set(EMPTY).at[dst, heights[dst]].set(block)
    new_h = heights.at[src].add(-1).at[dst].add(1)
    return jnp.where(legal, moved, stacks), jnp.where(legal, new_h, heights)


class BlocksWorld(environment.Environment[BlocksState, BlocksParams]):
    """Blocks World (see module docstring).

    Args:
      max_blocks: M, the largest instance (static shape).
      num_colors: K colours of blocks.
      step_factor: the step limit is ``step_factor · n``.
      start_blocks: first instances have n uniform in [1, start_blocks].
      reward_per_block: the reward for solving is this times n.
      size_feature: append log n to the observation (:data:`SIZE_FEATURES`), so
        that bids can track the value of a state, which scales with the reward
        ``reward_per_block · n``; the default (False) is the 9 features alone.
      revisit: the probability that a slot's next instance has n drawn uniformly
        in [1, level] instead of the staircase's level (which moves only on
        instances played at the level); 0, the default, is the plain staircase.
        Rules whose bids scale with n must meet every n to keep their bids in
        order at every n.
    """

    def __init__(
        self,
        max_blocks: int = 64,
        num_colors: int = 3,
        step_factor: int = 10,
        start_blocks: int = 2,
        reward_per_block: float = 1.0,
        size_feature: bool = False,
        revisit: float = 0.0,
    ):
        super().__init__()
        self.max_blocks = int(max_blocks)
        self.num_colors = int(num_colors)
        self.step_factor = int(step_factor)
        self.start_blocks = int(min(start_blocks, max_blocks))
        self.reward_per_block = float(reward_per_block)
        self.size_feature = bool(size_feature)
        self.revisit = float(revisit)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the observation's entries (:data:`FEATURES`, + log_n)."""
        return SIZE_FEATURES if self.size_feature else FEATURES

    def resized(self, max_blocks: int) -> BlocksWorld:
        """The same world with room for ``max_blocks`` blocks (for evaluation)."""
        return BlocksWorld(
            max_blocks,
            self.num_colors,
            self.step_factor,
            self.start_blocks,
            self.reward_per_block,
            self.size_feature,
            self.revisit,
        )

    @property
    def default_params(self) -> BlocksParams:
        return BlocksParams()

    def reset_sized(
        self, key: jax.Array, n: jax.Array, level: jax.Array | None = None
    ) -> tuple[jax.Array, BlocksState]:
        """A fresh random instance with ``n`` blocks (1 <= n <= M); ``level``:
        the slot's staircase level (with ``revisit``; default n)."""
        m = self.max_blocks
        k_col, k_perm, k_deal = jax.random.split(key, 3)
        n = jnp.clip(jnp.asarray(n, jnp.int32), 1, m)
        pos = jnp.arange(m)
        live = pos < n
        goal = jnp.where(live, jax.random.randint(k_col, (m,), 0, self.num_colors), -1)
        # A random order of the n blocks (the padding sorts last), dealt to stacks.
        order = jnp.argsort(jnp.where(live, jax.random.uniform(k_perm, (m,)), 2.0))
        stack = jax.random.randint(k_deal, (m,), 1, 4)  # i32[M] in {1, 2, 3}
        onehot = (stack[:, None] == jnp.arange(1, 4)[None, :]) & live[:, None]
        place = jnp.cumsum(onehot, axis=0)[pos, stack - 1] - 1  # i32[M]
        rows = jnp.where(live, stack, 4)  # padding goes out of range (dropped)
        stacks = jnp.full((4, m), EMPTY, jnp.int32).at[0].set(goal)
        stacks = stacks.at[rows, place].set(goal[order], mode="drop")
        heights = jnp.concatenate([n[None], jnp.sum(onehot, axis=0).astype(jnp.int32)])
        # Dealt already solved (likely only for n = 1): undo by moving 1 -> 2.
        stacks, heights = jax.lax.cond(
            solved(stacks),
            lambda: move(stacks, heights, jnp.int32(0)),
            lambda: (stacks, heights),
        )
        state = BlocksState(time=jnp.int32(0), stacks=stacks, heights=heights, n=n)
        if self.revisit > 0.0:
            state = state.replace(level=n if level is None else jnp.int32(level))
        return self.get_obs(state), state

    def reset_env(self, key: jax.Array, params: BlocksParams):
        k_n, k_inst = jax.random.split(key)
        n = jax.random.randint(k_n, (), 1, self.start_blocks + 1)
        return self.reset_sized(k_inst, n)

    def step_env(self, key, state: BlocksState, action, params: BlocksParams):
        """Moves a block; terminates with reward ``reward_per_block · n`` on solving."""
        del key
        stacks, heights = move(state.stacks, state.heights, jnp.asarray(action))
        done = solved(stacks)
        reward = jnp.where(
            done, state.n.astype(jnp.float32) * self.reward_per_block, 0.0
        )
        new = state.replace(stacks=stacks, heights=heights, time=state.time + 1)
        info = {"discount": 1.0 - done.astype(jnp.float32)}
        return self.get_obs(new), new, reward.astype(jnp.float32), done, info

    def step(self, key, state: BlocksState, action, params: BlocksParams | None = None):
        """gymnax's step (six values, auto-reset), carrying the curriculum level:
        the next instance of a slot has n + 1 blocks after a solve, n − 1 after a
        failure (within [1, M])."""
        params = self.default_params if params is None else params
        k_step, k_reset = jax.random.split(key)
        obs_st, state_st, reward, terminated, info = self.step_env(
            k_step, state, action, params
        )
        truncated = self.is_truncated(state_st, params) & ~terminated
        done = terminated | truncated
        at = state.n if state.level is None else state.level
        level = jnp.clip(at + jnp.where(terminated, 1, -1), 1, self.max_blocks).astype(
            jnp.int32
        )
        if state.level is None:
            obs_re, state_re = self.reset_sized(k_reset, level)
        else:  # the staircase moves on instances at the level; some revisit
            level = jnp.where(state.n == state.level, level, state.level)
            k_reset, k_mix, k_small = jax.random.split(k_reset, 3)
            mix = jax.random.uniform(k_mix) < self.revisit
            small = jax.random.randint(k_small, (), 1, level + 1)
            size = jnp.where(mix, small, level)
            obs_re, state_re = self.reset_sized(k_reset, size, level)
        pick = lambda a, b: jax.lax.select(done, a, b)
        state_out = jax.tree.map(pick, state_re, state_st)
        obs = pick(obs_re, obs_st)
        info = {
            **info,
            "terminated": terminated,
            "truncated": truncated,
            "final_observation": obs_st,
        }
        return obs, state_out, reward, terminated, truncated, info

    def is_truncated(self, state: BlocksState, params: BlocksParams) -> jax.Array:
        return state.time >= self.step_factor * state.n

    def get_obs(self, state: BlocksState, params=None, key=None) -> jax.Array:
        """f32[9]: :func:`features` of the stacks (f32[10] with ``size_feature``:
        then log n)."""
        obs = features(state.stacks, state.heights)
        if self.size_feature:
            log_n = jnp.log(jnp.maximum(state.n, 1).astype(jnp.float32))
            obs = jnp.concatenate([obs, log_n[None]])
        return obs

    @property
    def name(self) -> str:
        return "BlocksWorld"

    @property
    def num_actions(self) -> int:
        return len(MOVES)

    def action_space(self, params: BlocksParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(len(MOVES))

    def observation_space(self, params: BlocksParams) -> spaces.Box:
        high = np.log(self.max_blocks) if self.size_feature else 1.0
        return spaces.Box(0.0, high, (len(self.feature_names),), jnp.float32)

    def state_space(self, params: BlocksParams) -> spaces.Dict:
        m = self.max_blocks
        return spaces.Dict(
            {
                "stacks": spaces.Box(-1, self.num_colors - 1, (4, m), jnp.int32),
                "heights": spaces.Box(0, m, (4,), jnp.int32),
                "n": spaces.Discrete(m + 1),
                "time": spaces.Discrete(self.step_factor * m + 1),
            }
        )


def make_blocks_world(**kwargs: Any) -> tuple[BlocksWorld, BlocksParams]:
    """``(env, env_params)`` for ``register_env``."""
    env = BlocksWorld(**kwargs)
    return env, env.default_params


def from_lists(goal: list[int], s1: list[int], s2: list[int], s3: list[int], m: int):
    """A hand-written instance (bottom first) as ``BlocksState`` (for tests)."""
    stacks = np.full((4, m), EMPTY, np.int32)
    for row, blocks in enumerate((goal, s1, s2, s3)):
        stacks[row, : len(blocks)] = blocks
    heights = np.array([len(goal), len(s1), len(s2), len(s3)], np.int32)
    return BlocksState(
        time=jnp.int32(0),
        stacks=jnp.asarray(stacks),
        heights=jnp.asarray(heights),
        n=jnp.int32(len(goal)),
    )


def rule_condition(**required: bool) -> np.ndarray:
    """A rule agent's condition i32[D] over :data:`FEATURES` (``agents.families``
    ``rules``): 1 = the feature must hold, 2 = must not, 0 = don't care."""
    cond = np.zeros(len(FEATURES), np.int32)
    for name, value in required.items():
        cond[FEATURES.index(name)] = 1 if value else 2
    return cond


def solver_rules() -> list[tuple[np.ndarray, tuple[int, int], float]]:
    """Five hand-written rules that solve every instance, as ``(condition, move,
    bid)`` (Baum's "clear stack 1, then fetch the next block needed, digging for
    it"): the reference program of the rule language, planted in tests and in
    ``scripts/hayek_planted.py``."""
    rule = rule_condition
    return [
        (rule(prefix_ok=False), (1, 2), 1.0),
        (rule(prefix_ok=True, top2_needed=True), (2, 1), 2.0),
        (rule(prefix_ok=True, top3_needed=True), (3, 1), 2.0),
        (
            rule(prefix_ok=True, top2_needed=False, top3_needed=False, needed_in2=True),
            (2, 3),
            1.5,
        ),
        (
            rule(prefix_ok=True, top2_needed=False, top3_needed=False, needed_in3=True),
            (3, 2),
            1.0,
        ),
    ]
