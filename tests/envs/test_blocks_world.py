"""Blocks World against hand-computed moves, goal tests, features and curriculum."""

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.envs.blocks_world import (
    FEATURES,
    MOVES,
    BlocksWorld,
    features,
    from_lists,
    move,
    solved,
)
from marketjax.envs.gymnax_adapter import env_spec

M = 6


def stacks_of(state):
    """The four stacks as lists, bottom first."""
    s, h = np.asarray(state.stacks), np.asarray(state.heights)
    return [list(s[i, : h[i]]) for i in range(4)]


def feats(state):
    f = np.asarray(features(state.stacks, state.heights))
    assert FEATURES[-1] == "progress"
    return {name for name, v in zip(FEATURES[:-1], f[:-1], strict=True) if v}


def progress(state):
    return float(features(state.stacks, state.heights)[-1])


def test_moves_take_the_top_block_and_from_empty_do_nothing():
    # goal 0 1 2; stack1 [0], stack2 [2, 1], stack3 [] (colours, bottom first).
    st = from_lists([0, 1, 2], [0], [2, 1], [], M)
    stacks, heights = move(st.stacks, st.heights, jnp.int32(MOVES.index((2, 3))))
    assert stacks_of(st.replace(stacks=stacks, heights=heights)) == [
        [0, 1, 2],
        [0],
        [2],
        [1],
    ]
    # 3 -> 1 then 2 -> 1: stack 1 = 0 1 2, the goal.
    for a in [(3, 1), (2, 1)]:
        stacks, heights = move(stacks, heights, jnp.int32(MOVES.index(a)))
    assert stacks_of(st.replace(stacks=stacks, heights=heights))[1] == [0, 1, 2]
    assert bool(solved(stacks))
    # Moving from the (now empty) stack 2 or 3 changes nothing.
    for a in [(2, 1), (3, 2)]:
        s2, h2 = move(stacks, heights, jnp.int32(MOVES.index(a)))
        np.testing.assert_array_equal(s2, stacks)
        np.testing.assert_array_equal(h2, heights)


def test_goal_test_needs_equal_colours_and_equal_height():
    assert bool(solved(from_lists([0, 1], [0, 1], [], [], M).stacks))
    assert not bool(solved(from_lists([0, 1], [0], [1], [], M).stacks))  # too short
    assert not bool(solved(from_lists([0, 1], [1, 0], [], [], M).stacks))  # order
    assert not bool(solved(from_lists([0], [0, 0], [], [], M).stacks))  # too tall


def test_step_pays_n_on_solving_and_truncates_at_ten_n():
    env = BlocksWorld(M)
    st = from_lists([0, 1, 2], [0, 1], [2], [], M)
    _, _, r, term, trunc, _ = env.step(
        jax.random.key(0), st, jnp.int32(MOVES.index((2, 1)))
    )
    assert (float(r), bool(term), bool(trunc)) == (3.0, True, False)
    # A wrong move pays nothing; at time 10n - 1 it truncates.
    wrong = jnp.int32(MOVES.index((2, 3)))
    _, _, r, term, trunc, _ = env.step(jax.random.key(0), st, wrong)
    assert (float(r), bool(term), bool(trunc)) == (0.0, False, False)
    late = st.replace(time=jnp.int32(29))
    _, _, r, term, trunc, _ = env.step(jax.random.key(0), late, wrong)
    assert (float(r), bool(term), bool(trunc)) == (0.0, False, True)


def test_features_by_hand():
    # goal 0 1 2 0; stack1 [0] (a correct prefix), next needed colour 1.
    st = from_lists([0, 1, 2, 0], [0], [1, 2], [0, 1], M)
    assert feats(st) == {"prefix_ok", "top3_needed", "needed_in2", "needed_in3"}
    assert progress(st) == 0.25  # one of four blocks in place
    st = from_lists([0, 1, 2, 0], [1], [0, 2], [0], M)  # wrong bottom: needed = 1
    assert feats(st) == set()  # no stack empty, and no colour-1 block outside 1
    assert progress(st) == 0.0
    st = from_lists([0, 1, 2, 0], [0, 1, 0], [2], [], M)  # 2 in place, then wrong
    assert progress(st) == 0.5
    st = from_lists([0, 1, 2, 0], [], [0, 1, 2, 0], [], M)
    assert feats(st) == {"prefix_ok", "top2_needed", "empty1", "empty3", "needed_in2"}


def test_curriculum_climbs_after_a_solve_and_falls_after_a_failure():
    env = BlocksWorld(M)
    st = from_lists([0, 1, 2], [0, 1], [2], [], M)
    _, new, *_ = env.step(jax.random.key(0), st, jnp.int32(MOVES.index((2, 1))))
    assert int(new.n) == 4 and int(new.time) == 0
    late = st.replace(time=jnp.int32(29))
    _, new, *_ = env.step(jax.random.key(0), late, jnp.int32(0))
    assert int(new.n) == 2


def test_random_instances_deal_the_goal_blocks_and_start_unsolved():
    env = BlocksWorld(12)
    for i, n in enumerate([1, 3, 12]):
        _, st = env.reset_sized(jax.random.key(i), n)
        s = stacks_of(st)
        assert len(s[0]) == n
        assert sorted(s[1] + s[2] + s[3]) == sorted(s[0])
        assert not bool(solved(st.stacks))
    assert env_spec("BlocksWorld").obs_dim == len(FEATURES)
    assert env_spec("BlocksWorld").num_actions == 6


def test_the_size_feature_appends_log_n_and_survives_resizing():
    # goal 0 1 2 0 (n = 4): the 9 features as before, then log 4.
    st = from_lists([0, 1, 2, 0], [0], [1, 2], [0, 1], M)
    plain = np.asarray(BlocksWorld(M).get_obs(st))
    sized = BlocksWorld(M, size_feature=True)
    obs = np.asarray(sized.get_obs(st))
    assert obs.shape == (len(FEATURES) + 1,)
    np.testing.assert_array_equal(obs[:-1], plain)
    np.testing.assert_allclose(obs[-1], np.log(4.0), rtol=1e-6)
    assert sized.feature_names == (*FEATURES, "log_n")
    assert BlocksWorld(M).feature_names == FEATURES
    big = sized.resized(100)
    assert big.size_feature and big.max_blocks == 100
    obs, st = big.reset_sized(jax.random.key(0), 64)
    np.testing.assert_allclose(float(obs[-1]), np.log(64.0), rtol=1e-6)
    assert env_spec("BlocksWorld-r10-n").obs_dim == len(FEATURES) + 1
    assert env_spec("BlocksWorld-r10").obs_dim == len(FEATURES)


def test_revisits_draw_sizes_below_the_level_and_only_level_instances_move_it():
    env = BlocksWorld(M, revisit=1.0)  # every next instance revisits
    assert from_lists([0], [], [0], [], M).level is None  # plain staircase state
    _, st = env.reset_sized(jax.random.key(0), 3)
    assert int(st.level) == 3
    solve = from_lists([0, 1, 2], [0, 1], [2], [], M).replace(level=jnp.int32(3))
    fetch = jnp.int32(MOVES.index((2, 1)))
    sizes = set()
    for i in range(40):  # solved at the level: level 4, size uniform in [1, 4]
        _, new, *_ = env.step(jax.random.key(i), solve, fetch)
        assert int(new.level) == 4 and 1 <= int(new.n) <= 4
        sizes.add(int(new.n))
    assert sizes == {1, 2, 3, 4}
    # a solved revisit (n = 3 below level 5) leaves the level where it was
    _, new, *_ = env.step(jax.random.key(0), solve.replace(level=jnp.int32(5)), fetch)
    assert int(new.level) == 5 and 1 <= int(new.n) <= 5
    # a failed instance at the level: level 2
    late = solve.replace(time=jnp.int32(29))
    _, new, *_ = env.step(jax.random.key(0), late, jnp.int32(0))
    assert int(new.level) == 2 and 1 <= int(new.n) <= 2
    # revisit 0 (the default): no level is carried, n is the staircase
    _, new, *_ = BlocksWorld(M).step(
        jax.random.key(0), solve.replace(level=None), fetch
    )
    assert new.level is None and int(new.n) == 4
    assert env_spec("BlocksWorld-r10-n-mix").obs_dim == len(FEATURES) + 1
