"""The wide market: exact settlement, books at scale, compile once, it learns."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.agents.population import Population
from marketjax.envs.gymnax_adapter import BatchedEnv
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import compile_run, seed_keys
from marketjax.markets.wide import (
    WideMarket,
    WideMarketParams,
    make_q_networks,
    settle,
    wide_books_imbalance,
)


def test_settle_pays_sellers_pro_rata_and_owners_the_rewards():
    price = jnp.asarray([[2.0, -1.0]], jnp.float32)  # [B=1, G=2]
    alloc = jnp.asarray([[[0.75, 0.0], [0.25, 1.0]]], jnp.float32)  # [1, N=2, G]
    held = jnp.asarray([[[0.0, 0.5], [0.5, 0.0]]], jnp.float32)  # bank held 0.5, 0.5
    reward = jnp.asarray([[1.0, 3.0]], jnp.float32)
    owed = 0.1 * jnp.sum(alloc, axis=(0, 2))  # flat rent 0.1 per unit held
    delta, bank, rewards, rent = settle(price, alloc, held, reward, 0.5, owed)
    # agent 0: buys 0.75 of good 0 at 2, sells 0.5 of good 1 at 0.5*-1, reward 0.75
    np.testing.assert_allclose(delta[0], 0.75 * (1 - 2 - 0.1) + 0.5 * 0.5 * -1.0)
    np.testing.assert_allclose(
        delta[1], 0.25 * (1 - 2 - 0.1) + 1.0 * (3 + 1 - 0.1) + 0.5 * 0.5 * 2.0
    )
    np.testing.assert_allclose(rewards, 4.0)
    np.testing.assert_allclose(rent, 0.2)
    np.testing.assert_allclose(jnp.sum(delta) + bank, rewards - rent, rtol=1e-6)


def _market(env_name, num_envs, num_agents, wealth, hidden=(4,), rent_rule="flat"):
    env = BatchedEnv(env_name, num_envs)
    nets = make_q_networks(env.spec.obs_dim, 2, 3, hidden, True)
    market = WideMarket(env, nets, rent_rule=rent_rule)
    params = jax.vmap(nets.init)(jax.random.split(jax.random.key(0), num_agents))
    pop = Population(
        params=params,
        wealth=jnp.asarray(wealth, jnp.float32),
        alive=jnp.ones((num_agents,), bool),
        age=jnp.zeros((num_agents,), jnp.int32),
        parent=jnp.full((num_agents,), -1, jnp.int32),
    )
    return market, market.init(jax.random.key(1), pop)


def test_books_balance_after_2000_steps_of_256_episodes():
    """Σ wealth + bank = initial + rewards − rent, to 1e-5 of money in circulation;
    every step clears: bundles sum to supply in every episode."""
    market, state = _market("MultiCatch-2", 256, 4, [5.0, 50.0, 500.0, 0.5])
    params = WideMarketParams(
        gamma=jnp.float32(0.9),
        rent=jnp.float32(0.01),
        curvature=jnp.float32(0.2),
        explore=jnp.float32(0.2),
    )

    @jax.jit
    def run(state):
        def body(s, k):
            s, rec = market.step(k, s, params)
            clearing = jnp.max(jnp.abs(jnp.sum(rec.allocation, axis=1) - 1.0))
            return s, (clearing, jnp.min(rec.allocation), jnp.sum(rec.factor_reward))

        return jax.lax.scan(body, state, jax.random.split(jax.random.key(2), 2000))

    state, (clearing, min_alloc, rewards) = run(state)
    assert float(jnp.max(clearing)) <= 1e-5 and float(jnp.min(min_alloc)) >= 0.0
    assert float(wide_books_imbalance(state)) <= 1e-5
    books = state.books
    np.testing.assert_allclose(books.rewards_in.value, jnp.sum(rewards), rtol=1e-4)
    assert float(books.rent_out.value) == pytest.approx(0.01 * 2000 * 256 * 2, 1e-3)
    wealth = state.population.wealth
    assert bool(jnp.all(jnp.isfinite(wealth)))
    total = float(jnp.sum(wealth) + books.bank.value)
    circulation = float(jnp.sum(jnp.abs(wealth)) + jnp.abs(books.bank.value))
    assert abs(total - float(books.expected_total())) <= 1e-5 * circulation


TINY = {
    "name": "tiny_wide",
    "algo": "wide",
    "env": "MultiCatch-2",
    "num_envs": 64,
    "num_seeds": 2,
    "total_env_steps": 64 * 8 * 120,
    "runner": {"num_chunks": 6},
    "wide": {
        "num_agents": 3,
        "hidden": [32],
        "rollout_steps": 8,
        "curvature": 0.1,
        "epochs": 2,
        "explore_fraction": 0.3,
    },
}


@pytest.fixture(scope="module")
def tiny_run():
    run = compile_run(parse_train_config(TINY))
    state = run.init(seed_keys(run.config), run.params)
    history = []
    for _ in range(run.schedule.num_chunks):
        state, metrics = run.chunk(state, run.params)
        history.append(jax.tree.map(np.asarray, metrics))
    return run, state, history


def test_a_compiled_chunk_is_traced_once(tiny_run):
    run, _, history = tiny_run
    assert run.trace_count == 1
    assert history[-1]["mean_return"].shape == (2,)


def test_tiny_training_stays_finite_and_keeps_the_books(tiny_run):
    _, state, history = tiny_run
    leaves = jax.tree.leaves((state.market.population, state.market.holdings))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
    for h in history:
        assert all(np.all(np.isfinite(v)) for v in h.values())
        assert np.max(h["books_imbalance"]) <= 1e-5
    # Separable Equ is the closed form: it reports every market cleared, 0 iterations.
    equ = ("equ_converged_fraction", "equ_iterations_mean", "equ_iterations_max")
    assert [float(np.min(history[-1][k])) for k in equ] == [1.0, 0.0, 0.0]
    assert np.max(history[-1]["equ_residual_max"]) <= 1e-5


def test_it_learns_multicatch2(tiny_run):
    """Random play scores about -1.2 on two boards; after 60k steps clearly above."""
    _, _, history = tiny_run
    first, last = history[0]["mean_return"], history[-1]["mean_return"]
    assert np.all(first < -0.5), first
    assert np.all(last > first + 0.6), (first, last)


def test_forget_drops_the_holdings_of_replaced_slots():
    market, state = _market("MultiCatch-2", 2, 3, [1.0, 1.0, 1.0])
    holdings = jnp.arange(2 * 3 * 2, dtype=jnp.float32).reshape(2, 3, 2)
    state = state.replace(holdings=holdings)
    forgot = market.forget(state, jnp.array([False, True, False]))
    np.testing.assert_array_equal(forgot.holdings[:, 1], 0.0)
    np.testing.assert_array_equal(forgot.holdings[:, 0], holdings[:, 0])
    np.testing.assert_array_equal(forgot.holdings[:, 2], holdings[:, 2])
