"""Complements-m: the lock's payoffs by hand, the reward split, and the allocation
argument of docs/wide_market.md (separable clearing splits the pair)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.envs.complements import (
    Complements,
    ComplementsState,
    lock_reward,
    lock_reward_keys,
)
from marketjax.envs.gymnax_adapter import BatchedEnv, env_spec, make_gymnax
from marketjax.markets.wide_clear import clear, exercise


def test_registered_spaces_and_flat_actions_round_trip():
    env, params = make_gymnax("Complements-4")
    assert (env.num_factors, env.factor_actions) == (2, 5)
    assert env.action_space(params).n == 25 and env_spec("Complements-4").obs_dim == 2
    flat = jnp.arange(25, dtype=jnp.int32)
    keys = env.decode(flat)
    np.testing.assert_array_equal(env.encode(keys), flat)
    np.testing.assert_array_equal(keys[7], [2, 1])  # 7 = 2 + 5 x 1


def test_lock_pays_only_for_matched_keys():
    left = jnp.array([0, 0, 3, 3, 3, 1])
    right = jnp.array([0, 2, 0, 3, 4, 1])
    np.testing.assert_array_equal(
        lock_reward(left, right, 1.0), [0.0, 0.0, 0.0, 1.0, -1.0, 1.0]
    )
    np.testing.assert_array_equal(lock_reward(left, right, 0.25)[4], -0.25)
    # One key against many (broadcast, as before the K-key rewrite).
    np.testing.assert_array_equal(
        lock_reward(jnp.int32(3), right, 1.0), [0, -1, 0, 1, -1, -1]
    )


def test_three_key_lock_by_hand():
    """Complements-4x3: +1 only when all three keys turn to one position, -1 when
    all three turn but not to one, 0 when any key is idle."""
    keys = jnp.array([[2, 2, 2], [2, 2, 3], [2, 2, 0], [0, 0, 0], [4, 1, 4]])
    np.testing.assert_array_equal(
        lock_reward_keys(keys, 1.0), [1.0, -1.0, 0.0, 0.0, -1.0]
    )
    env, params = make_gymnax("Complements-4x3")
    assert (env.num_factors, env.factor_actions, env.name) == (3, 5, "Complements-4x3")
    assert env.action_space(params).n == 125
    flat = jnp.arange(125, dtype=jnp.int32)
    np.testing.assert_array_equal(env.encode(env.decode(flat)), flat)
    np.testing.assert_array_equal(env.decode(jnp.int32(2 + 5 * 1 + 25 * 4)), [2, 1, 4])
    state = ComplementsState(last_reward=jnp.float32(0.0), time=jnp.int32(0))
    obs, _, reward, _, info = env.step_env(
        jax.random.key(0), state, env.encode(jnp.array([3, 3, 3])), params
    )
    assert float(reward) == 1.0
    np.testing.assert_allclose(info["factor_rewards"], [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(obs, [1 / 16, 1.0])


def test_step_splits_the_reward_and_shows_it_in_the_next_observation():
    env = Complements(4)
    state = ComplementsState(last_reward=jnp.float32(0.0), time=jnp.int32(3))
    obs, state, reward, _, info = env.step_env(
        jax.random.key(0), state, env.encode(jnp.array([2, 2])), env.default_params
    )
    assert float(reward) == 1.0
    np.testing.assert_allclose(info["factor_rewards"], [0.5, 0.5])
    np.testing.assert_allclose(obs, [4 / 16, 1.0])
    _, _, reward, _, info = env.step_env(
        jax.random.key(0), state, env.encode(jnp.array([1, 2])), env.default_params
    )
    assert float(reward) == -1.0
    np.testing.assert_allclose(info["factor_rewards"], [-0.5, -0.5])


def test_matched_policy_earns_the_optimal_return_in_sixteen_steps():
    env = BatchedEnv("Complements-4", 2)
    _, state = env.reset(jax.random.key(0))
    total, dones = 0.0, []
    for _ in range(16):
        _, state, reward, done, _ = env.step(
            jax.random.key(1), state, jnp.array([3 + 5 * 3, 1 + 5 * 2])
        )
        total += np.asarray(reward)
        dones.append(bool(done[0]))
    np.testing.assert_allclose(total, [16.0, -16.0])  # matched; jammed
    assert dones == [False] * 15 + [True]
    assert env.env.optimal_return() == 16.0


def test_separable_clearing_splits_the_pair_and_the_lock_stays_shut():
    """docs/wide_market.md, Complements: with separable valuations each key clears
    on its own bids; agent 0 bids most for the left key and agent 1 for the right,
    so (largest control) agent 0 turns the left key to its convention 1 and agent
    1 the right key to its convention 2: the lock jams although either agent,
    holding both keys, would open it. With proportional control the keys are
    acted on by one agent with probability Σ_i x_iL x_iR."""
    bids = jnp.array([[[0.9, 0.6], [0.6, 0.9]]])  # [B=1, G=2 keys, N=2 agents]
    _, alloc = clear(bids, jnp.float32(1.0), jnp.float32(0.5))  # [1, G, N]
    x = np.asarray(alloc[0])
    np.testing.assert_allclose(x, [[0.8, 0.2], [0.2, 0.8]], atol=1e-6)
    holdings = jnp.swapaxes(alloc, 1, 2)  # [B, N, G]
    proposals = jnp.array([[[1, 1], [2, 2]]])  # agent i turns both keys to 1 + i
    _, action, _ = exercise(jax.random.key(0), holdings, proposals, 0.0, 5, False)
    np.testing.assert_array_equal(action, [[1, 2]])
    assert float(lock_reward(action[0, 0], action[0, 1], 1.0)) == -1.0
    # Proportional control: P(one agent turns both keys) = Σ_i x_iL x_iR = 0.32.
    draw = jax.jit(jax.vmap(lambda k: exercise(k, holdings, proposals, 0.0, 5)[1]))
    draws = draw(jax.random.split(jax.random.key(1), 4000))
    opened = np.asarray(lock_reward(draws[:, 0, 0], draws[:, 0, 1], 1.0)) == 1.0
    assert opened.mean() == pytest.approx(float(np.sum(x[0] * x[1])), abs=0.03)


def test_three_keys_separable_clearing_splits_them_coupled_equ_bundles_them():
    """docs/wide_market.md, Three keys: agent 0 values the three keys most as a
    bundle (0.9 + 0.85 + 0.85), agents 1 and 2 each value one key most. Separable
    clearing (c = 3) makes a different agent the largest holder of each key, so
    under `control: largest` three agents turn the three keys; coupled Equ
    (ρ = -0.45, near the positive-definite bound -0.5 for G = 3) makes agent 0 the
    largest holder of all three (0.86-0.87 of each), the one agent who can open
    the lock alone."""
    from marketjax.mechanisms import quadratic_equ as qe

    q = jnp.array([[0.9, 0.85, 0.85], [0.6, 0.95, 0.3], [0.6, 0.3, 0.95]])  # [N, G]
    _, alloc = clear(jnp.swapaxes(q, 0, 1)[None], jnp.float32(1.0), jnp.float32(3.0))
    np.testing.assert_array_equal(np.argmax(alloc[0], axis=1), [0, 1, 2])
    eq = qe.solve(q, 3.0, -0.45, jnp.ones(3), jnp.zeros(3))
    assert bool(eq.converged)
    x = np.asarray(eq.allocation)  # [N, G]
    np.testing.assert_allclose(x.sum(axis=0), 1.0, atol=1e-4)  # each key clears
    np.testing.assert_array_equal(np.argmax(x, axis=0), [0, 0, 0])
    assert x[0].min() > 0.85
