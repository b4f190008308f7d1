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
    cparams = catch.default_params
    rng = np.random.default_rng(0)
    for _ in range(20):
        bx, px = rng.integers(0, 5, 2), rng.integers(0, 5, 2)
        by = np.full(2, rng.integers(0, 9), np.int32)
        state = MultiCatchState(
            ball_x=jnp.asarray(bx, jnp.int32),
            ball_y=jnp.asarray(by, jnp.int32),
            paddle_x=jnp.asarray(px, jnp.int32),
            paddle_y=jnp.full((2,), 9, jnp.int32),
            time=jnp.int32(by[0]),
        )
        action = int(rng.integers(0, 9))
        obs, new, _, term, info = env.step_env(jax.random.key(0), state, action, params)
        for k, a in enumerate(np.asarray(decode_actions(action, 2))):
            cstate = CatchState(
                ball_x=jnp.int32(bx[k]),
                ball_y=jnp.int32(by[k]),
                paddle_x=jnp.int32(px[k]),
                paddle_y=jnp.int32(9),
                prev_done=False,
                time=jnp.int32(by[0]),
            )
            cobs, cnew, creward, cterm, _ = catch.step_env(
                jax.random.key(0), cstate, jnp.int32(a), cparams
            )
            np.testing.assert_array_equal(obs[k], cobs)
            assert float(info["factor_rewards"][k]) == float(creward)
            assert bool(term) == bool(cterm)
            assert int(new.paddle_x[k]) == int(cnew.paddle_x)
            assert int(new.ball_y[k]) == int(cnew.ball_y)
