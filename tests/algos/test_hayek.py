"""The Hayek machine on Blocks World: rule bids, a planted program solving 100
blocks, and the books balancing while creators pay for their children."""

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.agents.families import make_family
from marketjax.agents.population import Population
from marketjax.algos import hayek
from marketjax.algos.hayek import solve_instances
from marketjax.envs.blocks_world import FEATURES, MOVES, BlocksWorld, solver_rules
from marketjax.envs.blocks_world import rule_condition as rule
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import as_params, make_train

PLANTED = solver_rules()


def population(rules, wealth=1.0):
    k = len(rules)
    return Population(
        params={
            "action": {
                "cond": jnp.asarray(np.stack([c for c, _, _ in rules])),
                "move": jnp.asarray([MOVES.index(m) for _, m, _ in rules]),
            },
            "bid": {
                "log_bid": jnp.log(jnp.asarray([b for *_, b in rules])),
                "w": jnp.zeros((k, len(FEATURES)), jnp.float32),
            },
        },
        wealth=jnp.full((k,), wealth, jnp.float32),
        alive=jnp.ones((k,), bool),
        age=jnp.zeros((k,), jnp.int32),
        parent=jnp.full((k,), -1, jnp.int32),
    )


def test_a_rule_bids_exp_log_bid_where_its_condition_holds_and_abstains_elsewhere():
    family = make_family("rules", len(FEATURES), len(MOVES))
    params = {
        "action": {
            "cond": jnp.asarray(rule(prefix_ok=True, empty2=False)),
            "move": jnp.int32(2),
        },
        "bid": {
            "log_bid": jnp.log(jnp.float32(1.5)),
            "w": jnp.zeros(len(FEATURES)).at[-1].set(jnp.log(2.0)),
        },
    }
    on = jnp.zeros(len(FEATURES)).at[0].set(1.0)  # prefix_ok, stack 2 not empty
    np.testing.assert_allclose(float(family.bid(params, on)), 1.5, rtol=1e-6)
    # log-linear in the features: progress 1 doubles the bid (w = log 2)
    np.testing.assert_allclose(
        float(family.bid(params, on.at[-1].set(1.0))), 3.0, rtol=1e-6
    )
    assert float(family.bid(params, on.at[4].set(1.0))) == -np.inf  # empty2
    assert float(family.bid(params, jnp.zeros(len(FEATURES)))) == -np.inf
    assert int(family.act(jax.random.key(0), params, on)) == 2


def test_planted_rules_solve_100_blocks_and_fail_without_the_clearing_rule():
    family = make_family("rules", len(FEATURES), len(MOVES))
    env = BlocksWorld(100)
    run = jax.jit(lambda k, p: solve_instances(k, env, family, p, 100, 16))
    assert float(jnp.mean(run(jax.random.key(0), population(PLANTED)))) == 1.0
    # Without "not prefix_ok -> move 1->2" nobody bids while stack 1 is wrong:
    # moves are random until a random walk happens to clear stack 1 (3 of 16).
    crippled = population(PLANTED[1:])
    assert float(jnp.mean(run(jax.random.key(0), crippled))) < 0.5


TINY = {
    "name": "hayek_books",
    "algo": "hayek",
    "env": "BlocksWorld",
    "num_envs": 8,
    "total_env_steps": 8 * 16 * 40,
    "hayek": {
        "num_agents": 16,
        "auction": "bucket_brigade",
        "gamma": 1.0,
        "learning": "selection",
        "initial_wealth": 10.0,
        "allowance": 10.0,
        "rent": 0.01,
        "rent_rule": "flat",
        "rent_on": "all",
        "exit_threshold": 5.0,
        "entry_funding": "parent",
        "parent_share": 0.2,
        "clone_prob": 0.7,
        "min_age": 1,
        "rollout_steps": 16,
        "explore_start": 0.0,
        "explore_end": 0.0,
    },
}


def test_books_balance_while_creators_pay_for_their_children():
    config = parse_train_config(TINY)
    state, metrics = jax.jit(make_train(config))(jax.random.key(0))
    books = state.market.books
    assert float(jnp.sum(metrics["exits"])) > 0
    assert float(jnp.sum(metrics["parent_paid"])) > 0  # creators paid
    assert float(jnp.sum(metrics["dividends"])) > 0  # children shared profits
    assert float(books.rewards_in.value) > 0  # instances were solved
    # Minted money (fresh rules only) is exactly what the books count as
    # allowances; the parents' payments are internal and mint nothing.
    np.testing.assert_allclose(
        float(jnp.sum(metrics["minted"])), float(books.allowances_in.value), rtol=1e-5
    )
    wealth = state.market.population.wealth
    total = float(jnp.sum(wealth) + books.bank.value)
    circulation = float(jnp.sum(jnp.abs(wealth)) + jnp.abs(books.bank.value))
    assert abs(total - float(books.expected_total())) <= 1e-5 * circulation


def test_rule_value_is_the_bid_where_the_condition_holds_and_bids_can_learn():
    from marketjax.agents.rules import rule_value

    family = make_family("rules", len(FEATURES), len(MOVES))
    params = {
        "action": {"cond": jnp.asarray(rule(prefix_ok=True)), "move": jnp.int32(0)},
        "bid": {
            "log_bid": jnp.log(jnp.float32(1.5)),
            "w": jnp.zeros(len(FEATURES)).at[-1].set(jnp.log(2.0)),
        },
    }
    on = jnp.zeros(len(FEATURES)).at[0].set(1.0).at[-1].set(0.5)
    # exp(log 1.5 + 0.5 log 2) = 1.5·√2, the rule's own bid where it matches
    np.testing.assert_allclose(float(rule_value(params["bid"], on)), 1.5 * 2**0.5)
    np.testing.assert_allclose(
        float(rule_value(params["bid"], on)), float(family.bid(params, on)), rtol=1e-6
    )
    # and it is what Q(λ) trains under hayek.learning=both: bids move, books balance
    config = parse_train_config(
        {
            **TINY,
            "hayek": {
                **TINY["hayek"],
                "learning": "both",
                "owner_rent": 0.1,
                "initial_wealth": 1e4,  # the founders outlive the 40 updates
            },
        }
    )
    state, metrics = jax.jit(make_train(config))(jax.random.key(0))
    assert np.all(np.isfinite(np.asarray(metrics["bid_loss"])))
    trainer = hayek.make_trainer(config)
    start = trainer.init(jax.random.key(0), as_params(trainer.params))
    pop0, pop = start.market.population, state.market.population
    # agents alive since the start were never mutated: only Q(λ) moved their bids
    original = np.asarray(pop.age) == 40  # alive through all 40 updates
    assert original.any()
    moved = np.asarray(pop.params["bid"]["log_bid"] != pop0.params["bid"]["log_bid"])
    assert moved[original].any()
    np.testing.assert_array_equal(
        np.asarray(pop.params["action"]["cond"])[original],
        np.asarray(pop0.params["action"]["cond"])[original],
    )
    books = state.market.books
    wealth = state.market.population.wealth
    total = float(jnp.sum(wealth) + books.bank.value)
    circulation = float(jnp.sum(jnp.abs(wealth)) + jnp.abs(books.bank.value))
    assert abs(total - float(books.expected_total())) <= 1e-5 * circulation


def test_with_log_n_planted_bids_scale_with_n_and_still_solve_100_blocks():
    env = BlocksWorld(100, size_feature=True)
    d = len(env.feature_names)
    family = make_family("rules", d, len(MOVES))
    pop = population(PLANTED)
    params = jax.tree.map(lambda x: x, pop.params)
    params["action"]["cond"] = jnp.pad(params["action"]["cond"], ((0, 0), (0, 1)))
    params["bid"]["w"] = jnp.zeros((len(PLANTED), d)).at[:, -1].set(1.0)
    pop = pop.replace(params=params)
    # The fetch rule "prefix_ok & top2_needed -> 2->1", bid 2, weight 1 on log n:
    # on an 8-block instance it bids exp(log 2 + log 8) = 16.
    fetch = jax.tree.map(lambda x: x[1], params)
    _, st = env.reset_sized(jax.random.key(0), 8)
    obs = env.get_obs(st).at[:3].set(jnp.asarray([1.0, 1.0, 0.0]))
    np.testing.assert_allclose(float(family.bid(fetch, obs)), 16.0, rtol=1e-5)
    run = jax.jit(lambda k, p: solve_instances(k, env, family, p, 100, 16))
    assert float(jnp.mean(run(jax.random.key(0), pop))) == 1.0


def test_log_n_bids_learn_net_of_the_price_on_time_and_the_books_balance():
    config = parse_train_config(
        {
            **TINY,
            "env": "BlocksWorld-r10-n",
            "hayek": {
                **TINY["hayek"],
                "learning": "both",
                "owner_rent": 0.1,
                "bid_target": "net",
                "initial_wealth": 1e4,
            },
        }
    )
    state, metrics = jax.jit(make_train(config))(jax.random.key(0))
    assert np.all(np.isfinite(np.asarray(metrics["bid_loss"])))
    pop = state.market.population
    assert pop.params["bid"]["w"].shape == (16, len(FEATURES) + 1)
    # founders' weights on log n were 0; Q(λ) moved some of them
    original = np.asarray(pop.age) == 40
    assert original.any()
    w_log_n = np.asarray(pop.params["bid"]["w"][:, -1])
    assert np.any(w_log_n[original] != 0.0)
    books = state.market.books
    wealth = pop.wealth
    total = float(jnp.sum(wealth) + books.bank.value)
    circulation = float(jnp.sum(jnp.abs(wealth)) + jnp.abs(books.bank.value))
    assert abs(total - float(books.expected_total())) <= 1e-5 * circulation
    # the evaluation reads the env's 10 features (log n included)
    extra = hayek.solved_by_size(
        jax.tree.map(lambda x: x[None], state),
        parse_train_config(
            {
                **TINY,
                "env": "BlocksWorld-r10-n",
                "hayek": {**TINY["hayek"], "eval_sizes": [2], "eval_episodes": 4},
            }
        ),
    )
    assert set(extra["solved_fraction_by_size"]) == {2}
