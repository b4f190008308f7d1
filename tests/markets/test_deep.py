"""The deep market: exact settlement, the books at scale, determinism, compile once."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.agents.families import make_family
from marketjax.agents.population import init_population
from marketjax.envs.gymnax_adapter import BatchedEnv
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import compile_run, make_train, seed_keys
from marketjax.markets.deep import DeepMarket, DeepMarketParams


def _constant_bid_market(bids, wealth, rule, num_envs=2):
    """A market of linear agents whose bids ignore the observation."""
    env = BatchedEnv("CartPole-v1", num_envs)
    family = make_family("linear", env.spec.obs_dim, env.spec.num_actions)
    market = DeepMarket(env, family, rule)
    pop = init_population(jax.random.key(0), family, len(bids), 0.0)
    params = dict(pop.params)
    params["bid"] = {
        "w": jnp.zeros_like(params["bid"]["w"]),
        "c": jnp.asarray(bids, jnp.float32),
    }
    pop = pop.replace(params=params, wealth=jnp.asarray(wealth, jnp.float32))
    return market, market.init(jax.random.key(1), pop)


def test_two_steps_settle_exactly_under_vickrey():
    gamma = 0.9
    market, state = _constant_bid_market([0.5, 2.0, 1.5], [10.0, 10.0, 10.0], "vickrey")
    params = DeepMarketParams(jnp.float32(gamma), jnp.float32(0.0), jnp.float32(0.0))
    s1, rec1 = market.step(jax.random.key(2), state, params)
    # Agent 1 wins both episodes, pays the second bid 1.5 to the bank, earns 1 each.
    np.testing.assert_array_equal(rec1.winner, [1, 1])
    np.testing.assert_allclose(s1.population.wealth, [10.0, 10.0 + 2 * (1 - 1.5), 10])
    np.testing.assert_allclose(s1.books.bank.value, 3.0)
    s2, rec2 = market.step(jax.random.key(3), s1, params)
    assert not bool(jnp.any(rec1.done | rec2.done))
    # Agent 1 buys from itself: pays 1.5, is credited gamma * top bid (2.0),
    # earns 1; the bank keeps 1.5 - 0.9 * 2.0 = -0.3 per episode (money created).
    np.testing.assert_allclose(
        s2.population.wealth[1], 9.0 + 2 * (1 - 1.5 + gamma * 2.0), rtol=1e-6
    )
    np.testing.assert_allclose(s2.books.bank.value, 3.0 + 2 * (1.5 - 1.8), rtol=1e-6)
    np.testing.assert_allclose(s2.books.rewards_in.value, 4.0)


def test_bids_are_capped_by_wealth_and_the_poor_cannot_bid():
    market, state = _constant_bid_market([5.0, 3.0, 1.0], [0.5, 2.0, 0.0], "vickrey")
    capped, valid = market.capped_bids(state.population, state.obs)
    np.testing.assert_allclose(capped[0], [0.5, 2.0, 0.0])
    np.testing.assert_array_equal(valid[0], [True, True, False])
    winner, _, pay = market.auction(
        jax.random.key(0), state.population, state.obs, jnp.float32(0.0)
    )
    np.testing.assert_array_equal(winner, [1, 1])
    np.testing.assert_allclose(pay.paid, [0.5, 0.5])


def test_bank_acts_when_nobody_can_bid():
    market, state = _constant_bid_market([1.0, 1.0], [0.0, -1.0], "credit_conserving")
    params = DeepMarketParams(jnp.float32(0.99), jnp.float32(0.1), jnp.float32(0.0))
    s1, rec = market.step(jax.random.key(0), state, params)
    np.testing.assert_array_equal(rec.winner, [-1, -1])
    np.testing.assert_allclose(s1.books.bank.value, 2.0)  # the bank keeps rewards
    np.testing.assert_allclose(s1.books.rent_out.value, 0.0)  # and pays no rent


BOOKS_CONFIG = {
    "name": "books",
    "algo": "deep",
    "env": "CartPole-v1",
    "num_envs": 256,
    "total_env_steps": 10_000 * 256,
    "deep": {
        "num_agents": 8,
        "family": "linear",
        "auction": "vickrey",
        "learning": "selection",
        "initial_wealth": 20.0,
        "allowance": 20.0,
        "rent": 1.5,
        "exit_threshold": 5.0,
        "rollout_steps": 100,
        "explore_start": 0.1,
        "explore_end": 0.1,
    },
}


def test_books_balance_after_10000_steps_of_256_episodes_with_entry_exit_rent():
    config = parse_train_config(BOOKS_CONFIG)
    train = jax.jit(make_train(config))
    state, metrics = train(jax.random.key(0))
    books = state.market.books
    imbalance = float(metrics["books_imbalance"][-1])
    assert imbalance <= 1e-5, imbalance
    assert float(jnp.sum(metrics["entries"])) > 0  # entry and exit happened
    assert float(books.rent_out.value) > 0 and float(books.allowances_in.value) > 0
    wealth = state.market.population.wealth
    total = float(jnp.sum(wealth) + books.bank.value)
    expected = float(books.expected_total())
    # Relative to the money in circulation (under Vickrey the bank goes deep into
    # debt while the winners grow rich: the net total is a small difference).
    circulation = float(jnp.sum(jnp.abs(wealth)) + jnp.abs(books.bank.value))
    assert abs(total - expected) <= 1e-5 * circulation
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(metrics))


def _tiny(**deep):
    data = {
        "name": "tiny",
        "algo": "deep",
        "env": "Catch-bsuite",
        "num_envs": 8,
        "num_seeds": 2,
        "total_env_steps": 8 * 8 * 6,
        "runner": {"num_chunks": 3},
        "deep": {"num_agents": 3, "hidden": [8], "rollout_steps": 8} | deep,
    }
    return parse_train_config(data)


@pytest.fixture(scope="module")
def tiny_run():
    return compile_run(_tiny(family="linear", learning="both", rent=0.001))


def _run_chunks(run, config, num_chunks=3):
    state = run.init(seed_keys(config))
    history = []
    for _ in range(num_chunks):
        state, metrics = run.chunk(state)
        history.append(metrics)
    return state, history


def test_same_seed_same_numbers_and_different_seed_differs(tiny_run):
    _, h1 = _run_chunks(tiny_run, tiny_run.config)
    _, h2 = _run_chunks(tiny_run, tiny_run.config)
    chex.assert_trees_all_equal(h1, h2)
    _, h3 = _run_chunks(tiny_run, dataclasses.replace(tiny_run.config, seed=1))
    assert not np.array_equal(h1[-1]["bid_loss"], h3[-1]["bid_loss"])


def test_a_compiled_chunk_is_traced_once(tiny_run):
    _run_chunks(tiny_run, tiny_run.config)
    assert tiny_run.trace_count == 1
    _, history = _run_chunks(tiny_run, tiny_run.config, 2)
    assert tiny_run.trace_count == 1
    assert history[-1]["mean_return"].shape == (2,)


def test_make_train_equals_the_chunked_runner(tiny_run):
    """purejaxrl's one-jit ``train(key)`` and the host runner give the same numbers."""
    config = tiny_run.config
    _, history = _run_chunks(tiny_run, config, tiny_run.schedule.num_chunks)
    _, metrics = jax.jit(jax.vmap(make_train(config)))(seed_keys(config))
    np.testing.assert_allclose(
        np.stack([np.asarray(h["bid_loss"]) for h in history], axis=1),
        metrics["bid_loss"],
        rtol=1e-5,
    )


def test_policy_family_runs_and_stays_finite():
    config = _tiny(family="policy", learning="both", hidden=[4])
    state, metrics = jax.jit(make_train(config))(jax.random.key(3))
    leaves = jax.tree.leaves((state.market.population, metrics))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
