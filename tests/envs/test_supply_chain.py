"""SupplyChain-K: hand-computed transitions, property rights, the optimal profit rate.

Defaults: supply 2, cap 4, high 2, low 1, P = 1, T = 32; with K = 2 a unit of each
recipe earns P / K = 0.5.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.envs.gymnax_adapter import BatchedEnv, env_spec, make_gymnax
from marketjax.envs.supply_chain import SupplyChain, SupplyChainState


def _step(env, stock, actions, time=0):
    state = SupplyChainState(stock=jnp.asarray(stock, jnp.int32), time=jnp.int32(time))
    flat = env.encode(jnp.asarray(actions, jnp.int32))
    _, state, reward, _, info = env.step_env(
        jax.random.key(0), state, flat, env.default_params
    )
    return np.asarray(state.stock), float(reward), np.asarray(info["factor_rewards"])


def test_registered_spaces_and_reset():
    env, params = make_gymnax("SupplyChain-2")
    assert (env.num_factors, env.factor_actions) == (2, 3)
    assert env.action_space(params).n == 9 and env_spec("SupplyChain-2").obs_dim == 3
    obs, state = env.reset(jax.random.key(0), params)
    np.testing.assert_array_equal(state.stock, [2, 0])  # the first raw delivery
    np.testing.assert_allclose(obs, [0.5, 0.0, 0.0])
    assert make_gymnax("SupplyChain-3")[0].factor_actions == 4


def test_specialised_line_moves_every_delivery_through_the_chain():
    env = SupplyChain(2)
    # station 0 mills 2 raw -> 2 intermediate (+2 x 0.5); station 1 assembles the
    # 2 intermediates and sells them (+2 x 0.5); nature delivers 2 raw.
    stock, reward, factor = _step(env, [2, 0], [1, 2])
    np.testing.assert_array_equal(stock, [2, 0])
    assert reward == 2.0
    np.testing.assert_allclose(factor, [1.0, 1.0])


def test_swapped_specialities_run_at_the_low_rate():
    env = SupplyChain(2)
    # station 0 assembles first but there is nothing to assemble; station 1 mills
    # one unit (its low rate); then 2 raw arrive: 2 - 1 + 2 = 3 raw, 1 intermediate.
    stock, _, factor = _step(env, [2, 0], [2, 1])
    np.testing.assert_array_equal(stock, [3, 1])
    np.testing.assert_allclose(factor, [0.0, 0.5])
    stock, _, factor = _step(env, stock, [2, 1])
    np.testing.assert_array_equal(stock, [4, 1])  # 3 - 1 + 2 = 4 = cap; 1 - 1 + 1
    np.testing.assert_allclose(factor, [0.5, 0.5])


def test_storage_caps_block_production_and_deliveries():
    env = SupplyChain(2)
    stock, reward, factor = _step(env, [4, 4], [1, 0])  # no room for intermediates
    np.testing.assert_array_equal(stock, [4, 4])
    assert reward == 0.0
    stock, _, factor = _step(env, [4, 3], [1, 0])  # room for one
    np.testing.assert_array_equal(stock, [4, 4])  # 4 - 1 + min(2, cap room 1) raw
    np.testing.assert_allclose(factor, [0.5, 0.0])


def test_an_action_changes_only_its_recipes_goods():
    """Property rights: station g's action a (others idle) changes exactly the
    goods ``recipe_goods(a)`` names, for every stock of SupplyChain-3 and every
    (g, a); an idle station earns nothing."""
    env = SupplyChain(3)
    stocks = jnp.asarray(list(itertools.product(range(5), repeat=3)), jnp.int32)
    produce = jax.jit(jax.vmap(env.produce, (0, None)))
    for g in range(3):
        for a in range(4):
            actions = jnp.zeros((3,), jnp.int32).at[g].set(a)
            new, rewards = produce(stocks, actions)
            changed = np.asarray(new != stocks)  # [125, 3]
            declared = [k for k in env.recipe_goods(a) if k < 3]
            others = [k for k in range(3) if k not in declared]
            assert not changed[:, others].any(), (g, a)
            np.testing.assert_array_equal(np.delete(np.asarray(rewards), g, 1), 0.0)
            if a > 0:  # some stock lets the recipe run
                assert changed[:, a - 1].any()


def _exact_dp(env, horizon):
    """Optimal return of a ``horizon``-step episode by backward induction over all
    stocks {0..cap}^K and joint actions, with the env's own transition."""
    k = env.stages
    grid = np.asarray(list(itertools.product(range(env.cap + 1), repeat=k)))
    joint = jnp.arange(env.num_actions, dtype=jnp.int32)

    def after(stock, action):
        state = SupplyChainState(stock=stock, time=jnp.int32(0))
        _, nxt, reward, _, _ = env.step_env(
            jax.random.key(0), state, action, env.default_params
        )
        return nxt.stock, reward

    nxt, reward = jax.jit(jax.vmap(jax.vmap(after, (None, 0)), (0, None)))(
        jnp.asarray(grid, jnp.int32), joint
    )
    index = np.ravel_multi_index(np.asarray(nxt).transpose(2, 0, 1), (env.cap + 1,) * k)
    value = np.zeros(len(grid))
    for _ in range(horizon):
        value = np.max(np.asarray(reward) + value[index], axis=1)
    first = (env.supply,) + (0,) * (k - 1)
    start = np.ravel_multi_index(first, (env.cap + 1,) * k)
    return value[start]


def test_exact_dp_attains_the_analytic_optimum():
    env = SupplyChain(2)
    assert env.optimal_return() == 64.0  # P x supply x T = 1 x 2 x 32
    assert _exact_dp(env, 32) == pytest.approx(64.0)
    assert _exact_dp(env, 8) == pytest.approx(16.0)  # rate P x supply per step


@pytest.mark.parametrize("k", [2, 3])
def test_specialised_policy_earns_the_optimal_return_and_swapping_halves_it(k):
    env = BatchedEnv(f"SupplyChain-{k}", 1)
    inner = env.env

    def episode(station_actions):
        _, state = env.reset(jax.random.key(0))
        flat = inner.encode(jnp.asarray(station_actions, jnp.int32))[None]

        def body(state, _):
            _, state, reward, done, _ = env.step(jax.random.key(1), state, flat)
            return state, (reward[0], done[0])

        return jax.lax.scan(body, state, None, length=inner.horizon)[1]

    rewards, done = episode([1 + g for g in range(k)])
    assert float(jnp.sum(rewards)) == pytest.approx(inner.optimal_return())
    assert bool(done[-1]) and not bool(jnp.any(done[:-1]))
    if k == 2:
        # 0.5 at the first step (station 1 mills one unit), then one unit a step.
        rewards, _ = episode([2, 1])
        assert float(jnp.sum(rewards)) == pytest.approx(31.5)
