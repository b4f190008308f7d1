"""Chang et al.'s Bandit, Chain and Duality against hand-computed transitions and Q*."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.envs.gymnax_adapter import BatchedEnv, env_spec, make_gymnax
from marketjax.envs.tabular import greedy_path, q_star


def run(name, actions):
    """Steps one episode of ``name`` with a fixed action list (gymnax API)."""
    env, params = make_gymnax(name)
    obs, state = env.reset(jax.random.key(0), params)
    out = []
    for a in actions:
        obs, state, r, term, trunc, _ = env.step(
            jax.random.key(1), state, jnp.int32(a), params
        )
        out.append((int(jnp.argmax(obs)), float(r), bool(term), bool(trunc)))
    return out


def test_bandit_pays_k_plus_one_fifths_and_ends_after_one_step():
    for arm in range(4):
        ((s, r, term, _),) = run("ChangBandit", [arm])
        assert (s, term) == (0, True)
        np.testing.assert_allclose(r, (arm + 1) / 5, atol=1e-7)
    assert env_spec("ChangBandit").num_actions == 4


def test_chain_walks_right_to_the_goal_paying_point_eight():
    steps = run("ChangChain", [0, 1, 1, 0, 1, 1, 1, 1])
    # L at the wall stays at 0; R,R -> 2; L -> 1; R x4 -> 5 (goal, terminated).
    assert [s for s, *_ in steps[:5]] == [0, 1, 2, 1, 2]
    assert [r for _, r, *_ in steps[:7]] == [0.0] * 7
    assert steps[6][:3] == (4, 0.0, False)
    np.testing.assert_allclose(steps[7][1], 0.8, atol=1e-7)
    assert steps[7][2] and steps[7][0] == 0  # auto-reset to the start
    assert env_spec("ChangChain").obs_dim == 6


def test_chain_truncates_after_twenty_steps():
    steps = run("ChangChain", [0] * 20)
    assert [t for *_, t in steps] == [False] * 19 + [True]
    assert not any(term for _, _, term, _ in steps)


def test_duality_transitions_and_time_limit():
    steps = run("ChangDuality", [1, 1, 0, 0, 0, 1, 0, 1, 0, 1])
    expected = [(1, 0.5), (1, 0.3), (0, 0.5), (2, 0.0), (2, -1.0), (2, -1.0)]
    assert [s for s, *_ in steps[:6]] == [s for s, _ in expected]
    np.testing.assert_allclose([r for _, r, *_ in steps[:6]], [r for _, r in expected])
    assert not any(term for _, _, term, _ in steps)
    assert [t for *_, t in steps] == [False] * 9 + [True]


def test_batched_envs_reset_independently():
    env = BatchedEnv("ChangChain", 3)
    obs, state = env.reset(jax.random.key(0))
    obs, state, _, done, _ = env.step(jax.random.key(1), state, jnp.array([1, 0, 1]))
    np.testing.assert_array_equal(np.argmax(obs, axis=1), [1, 0, 1])
    assert not bool(jnp.any(done))


def test_q_star_by_value_iteration():
    bandit, _ = make_gymnax("ChangBandit")
    np.testing.assert_allclose(q_star(bandit, 0.99), [[0.2, 0.4, 0.6, 0.8]])
    chain, _ = make_gymnax("ChangChain")
    q = q_star(chain, 0.99)
    np.testing.assert_allclose(
        q[:5, 1], [0.7685, 0.7762, 0.7841, 0.7920, 0.8000], atol=5e-5
    )
    np.testing.assert_allclose(q[0, 0], 0.99 * q[0, 1], rtol=1e-12)  # bump the wall
    assert greedy_path(chain, q, 20) == [(s, 1) for s in range(5)]
    duality, _ = make_gymnax("ChangDuality")
    q = q_star(duality, 0.99)
    np.testing.assert_allclose(q[1], [50.0, 49.8], atol=1e-6)
    np.testing.assert_allclose(q[2], [-100.0, -100.0], atol=1e-6)
    np.testing.assert_allclose(q[0], [-99.0, 50.0], atol=1e-6)
    assert greedy_path(duality, q, 10) == [(0, 1), (1, 0)]


def test_q_star_refuses_gamma_one():
    with pytest.raises(ValueError, match="gamma"):
        q_star(make_gymnax("ChangBandit")[0], 1.0)
