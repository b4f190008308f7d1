"""CAPITALISM: rent on every living agent, entry paid by minting or by the parent,
books at scale, and selection alone finding a planted perfect program."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.agents.families import make_family
from marketjax.agents.population import init_population
from marketjax.envs.gymnax_adapter import BatchedEnv
from marketjax.experiment.registry import get_algorithm, parse_train_config
from marketjax.experiment.runner import as_params, make_train
from marketjax.markets.deep import DeepMarket, DeepMarketParams


def _params(rent, explore=0.0, gamma=0.99):
    return DeepMarketParams(jnp.float32(gamma), jnp.float32(rent), jnp.float32(explore))


@pytest.mark.parametrize("rent_on", ["all", "owners"])
def test_rent_drains_an_idle_agent_as_one_minus_eps_to_the_t(rent_on):
    """Agent 0 bids 1 and wins every auction; agent 1 bids 0 and never wins. Under
    rent_on=all the idle agent decays exactly as w0 (1-ε)^t; under owners it
    keeps w0."""
    env = BatchedEnv("CartPole-v1", 4)
    family = make_family("linear", env.spec.obs_dim, env.spec.num_actions)
    market = DeepMarket(env, family, "credit_conserving", "proportional", rent_on)
    pop = init_population(jax.random.key(0), family, 2, 100.0)
    bid = {"w": jnp.zeros_like(pop.params["bid"]["w"]), "c": jnp.array([1.0, 0.0])}
    pop = pop.replace(params={**pop.params, "bid": bid})
    state = market.init(jax.random.key(1), pop)
    eps, steps = 0.01, 50

    def body(s, k):
        s, rec = market.step(k, s, _params(eps))
        return s, (s.population.wealth[1], rec.winner)

    final, (idle, winner) = jax.jit(
        lambda s: jax.lax.scan(body, s, jax.random.split(jax.random.key(2), steps))
    )(state)
    assert bool(jnp.all(winner == 0))
    t = np.arange(1, steps + 1)
    expected = 100.0 * (1 - eps) ** t if rent_on == "all" else np.full(steps, 100.0)
    np.testing.assert_allclose(idle, expected, rtol=1e-5)
    # every unit of rent left the economy through the books
    np.testing.assert_allclose(
        float(jnp.sum(final.population.wealth) + final.books.bank.value),
        float(final.books.expected_total()),
        rtol=1e-6,
    )


BOOKS = {
    "name": "books",
    "algo": "deep",
    "env": "Catch-bsuite",
    "num_envs": 256,
    "total_env_steps": 10_000 * 256,
    "deep": {
        "num_agents": 16,
        "family": "linear_policy",
        "auction": "vickrey",
        "learning": "selection",
        "initial_wealth": 20.0,
        "allowance": 20.0,
        "rent": 0.01,
        "rent_on": "all",
        "exit_threshold": 5.0,
        "clone_prob": 0.7,
        "parent_share": 0.2,
        "rollout_steps": 100,
        "explore_start": 0.2,
        "explore_end": 0.2,
    },
}


@pytest.mark.parametrize("funding", ["mint", "parent"])
def test_books_balance_over_1e4_steps_of_256_episodes_rent_on_all_entry_exit(
    funding,
):
    data = {**BOOKS, "deep": {**BOOKS["deep"], "entry_funding": funding}}
    config = parse_train_config(data)
    state, metrics = jax.jit(make_train(config))(jax.random.key(0))
    books = state.market.books
    assert float(metrics["books_imbalance"][-1]) <= 1e-5
    assert float(jnp.sum(metrics["entries"])) > 0
    assert float(jnp.sum(metrics["exits"])) > 0
    assert float(jnp.sum(metrics["dividends"])) > 0  # children paid their parents
    if funding == "parent":
        assert float(jnp.sum(metrics["parent_paid"])) > 0
    else:
        assert float(jnp.sum(metrics["parent_paid"])) == 0.0
    # minted money is exactly what the books count as allowances
    np.testing.assert_allclose(
        float(jnp.sum(metrics["minted"])),
        float(books.allowances_in.value),
        rtol=1e-4,
    )
    wealth = state.market.population.wealth
    circulation = float(jnp.sum(jnp.abs(wealth)) + jnp.abs(books.bank.value))
    total = float(jnp.sum(wealth) + books.bank.value)
    assert abs(total - float(books.expected_total())) <= 1e-5 * circulation


def perfect_catch_program(rows=10, cols=5):
    """A linear program that plays Catch perfectly: with d = ball column − paddle
    column (linear in the one-hot grid: +c for the ball's rows, −c for the paddle's
    row), logits (left, stay, right) = (−d, 0.5, d)."""
    v = np.zeros((rows, cols), np.float32)
    v[: rows - 1] = np.arange(cols)
    v[rows - 1] = -np.arange(cols)
    v = v.reshape(-1)
    w = np.stack([-v, np.zeros_like(v), v], axis=1)
    return {"w": jnp.asarray(w), "b": jnp.array([0.0, 0.5, 0.0])}


PLANTED = 5


def _planted_run(num_updates):
    data = {
        "name": "planted",
        "algo": "deep",
        "env": "Catch-bsuite",
        "num_envs": 32,
        "total_env_steps": 32 * 9 * num_updates,
        "runner": {"num_chunks": num_updates},
        "deep": {
            "num_agents": 8,
            "family": "linear_policy",
            "auction": "credit_conserving",
            "learning": "selection",
            "initial_wealth": 4.0,
            "allowance": 4.0,
            "rent": 0.002,
            "rent_on": "all",
            "exit_threshold": 1.0,
            "clone_prob": 1.0,
            "mutation_scale": 0.0,
            "entry_funding": "mint",
            "min_age": 2,
            "rollout_steps": 9,
            "explore_start": 0.1,
            "explore_end": 0.1,
        },
    }
    config = parse_train_config(data)
    trainer = get_algorithm("deep").make_trainer(config)
    params = as_params(trainer.params)
    state = trainer.init(jax.random.key(0), params)
    pop = state.market.population
    # every agent bids the same constant (far above its budget share): the auction
    # goes to the solvent; slot PLANTED plays Catch perfectly, the rest at random
    bid = {"w": jnp.zeros_like(pop.params["bid"]["w"]), "c": jnp.full((8,), 10.0)}
    action = jax.tree.map(
        lambda leaf, p: leaf.at[PLANTED].set(p),
        pop.params["action"],
        perfect_catch_program(),
    )
    pop = pop.replace(params={"action": action, "bid": bid})
    state = state.replace(market=state.market.replace(population=pop))
    step = jax.jit(lambda s: trainer.update(s, params))
    history = []
    for _ in range(num_updates):
        state, m = step(state)
        history.append(jax.device_get(m))
    return state, history


def test_selection_alone_hands_the_world_to_a_planted_perfect_program():
    """Eight Catch programs with equal constant bids, one of them perfect (slot 5):
    with no gradient anywhere, money flows to the program that catches, until it
    holds most of the wealth and wins nearly every auction it is not lotteried
    out of (exploration 0.1)."""
    state, history = _planted_run(40)
    wealth = np.asarray(state.market.population.wealth)
    assert int(np.argmax(wealth)) == PLANTED
    last = history[-10:]
    assert min(float(m["wealth_top_share"]) for m in last) >= 0.8
    assert np.mean([float(m["win_top_share"]) for m in last]) >= 0.8
    returns = sum(float(m["episode_return_sum"]) for m in last)
    episodes = sum(float(m["episode_count"]) for m in last)
    assert returns / episodes >= 0.6  # random programs score about -0.6
    # the perfect program really is the one in slot 5
    w = np.asarray(state.market.population.params["action"]["w"][PLANTED])
    np.testing.assert_array_equal(w, np.asarray(perfect_catch_program()["w"]))
