"""MultiCatch-K: gymnax API, shapes and dtypes, finite rollouts, Catch's dynamics."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.bsuite.catch import Catch
from gymnax.environments.bsuite.catch import EnvState as CatchState

from marketjax.envs.gymnax_adapter import BatchedEnv, env_spec, make_gymnax
from marketjax.envs.multicatch import MultiCatchState, decode_actions, encode_actions


@pytest.mark.parametrize("k", [2, 4])
def test_registered_spaces_and_reset_step_dtypes(k):
    env, params = make_gymnax(f"MultiCatch-{k}")
    assert env.action_space(params).n == 3**k
    assert env_spec(f"MultiCatch-{k}").obs_dim == k * 50
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.shape == (k, 10, 5) and obs.dtype == jnp.float32
    assert env.observation_space(params).contains(obs)
    out = env.step(jax.random.key(1), state, jnp.int32(0), params)
    obs2, state2, reward, terminated, truncated, info = out
    assert obs2.shape == obs.shape and obs2.dtype == obs.dtype
    chex.assert_trees_all_equal_dtypes(state, state2)
    chex.assert_trees_all_equal_shapes(state, state2)
    assert reward.shape == () and reward.dtype == jnp.float32
    assert terminated.dtype == jnp.bool_ and truncated.dtype == jnp.bool_
    assert info["factor_rewards"].shape == (k,)
    assert info["factor_rewards"].dtype == jnp.float32


def test_flat_actions_round_trip():
    flat = jnp.arange(81, dtype=jnp.int32)
    per_board = decode_actions(flat, 4)
    assert per_board.shape == (81, 4)
    assert int(jnp.max(per_board)) == 2 and int(jnp.min(per_board)) == 0
    np.testing.assert_array_equal(encode_actions(per_board), flat)
    assert len({tuple(r) for r in np.asarray(per_board)}) == 81


@pytest.mark.parametrize("k", [2, 4])
def test_random_rollouts_are_finite_and_episodes_last_nine_steps(k):
    env = BatchedEnv(f"MultiCatch-{k}", 8)

    @jax.jit
    def rollout(key):
        _, state = env.reset(key)

        def body(state, key):
            k_act, k_env = jax.random.split(key)
            action = jax.random.randint(k_act, (8,), 0, 3**k)
            obs, state, reward, done, info = env.step(k_env, state, action)
            return state, (obs, reward, done, info["factor_rewards"])

        return jax.lax.scan(body, state, jax.random.split(key, 27))[1]

    obs, reward, done, factor = rollout(jax.random.key(0))
    assert bool(jnp.all(jnp.isfinite(obs))) and bool(jnp.all(jnp.isfinite(reward)))
    np.testing.assert_array_equal(
        np.asarray(done).any(axis=1), [(t + 1) % 9 == 0 for t in range(27)]
    )
    np.testing.assert_allclose(jnp.sum(factor, axis=-1), reward)
    assert set(np.unique(np.asarray(factor))) <= {-1.0, 0.0, 1.0}


def test_each_board_follows_gymnax_catch():
    """Board k of MultiCatch steps exactly as gymnax's Catch on that board alone."""
    env, params = make_gymnax("MultiCatch-2")
    catch = Catch()
    rng = np.random.default_rng(0)
    m = 64
    bx, px = rng.integers(0, 5, (m, 2)), rng.integers(0, 5, (m, 2))
    by = np.repeat(rng.integers(0, 9, (m, 1)), 2, axis=1)  # boards in lockstep
    action = jnp.asarray(rng.integers(0, 9, m), jnp.int32)
    state = MultiCatchState(
        ball_x=jnp.asarray(bx, jnp.int32),
        ball_y=jnp.asarray(by, jnp.int32),
        paddle_x=jnp.asarray(px, jnp.int32),
        paddle_y=jnp.full((m, 2), 9, jnp.int32),
        time=jnp.asarray(by[:, 0], jnp.int32),
    )
    key = jax.random.key(0)

    @jax.jit
    def both(state, action):
        multi = jax.vmap(env.step_env, (None, 0, 0, None))(key, state, action, params)
        board = jax.vmap(
            jax.vmap(catch.step_env, (None, 0, 0, None)), (None, 1, 1, None)
        )
        cstate = CatchState(
            ball_x=state.ball_x,
            ball_y=state.ball_y,
            paddle_x=state.paddle_x,
            paddle_y=state.paddle_y,
            prev_done=jnp.zeros((m, 2), bool),
            time=jnp.broadcast_to(state.time[:, None], (m, 2)),
        )
        single = board(key, cstate, decode_actions(action, 2), catch.default_params)
        return multi, single  # single: leaves [K, M, ...]

    with jax.numpy_dtype_promotion("standard"):  # gymnax's Catch mixes dtypes
        (obs, new, _, term, info), (cobs, cnew, creward, cterm, _) = both(state, action)
    np.testing.assert_array_equal(obs, jnp.moveaxis(cobs, 0, 1))
    np.testing.assert_array_equal(info["factor_rewards"], creward.T)
    np.testing.assert_array_equal(term, cterm[0])
    np.testing.assert_array_equal(new.paddle_x, cnew.paddle_x.T)
    np.testing.assert_array_equal(new.ball_y, cnew.ball_y.T)
