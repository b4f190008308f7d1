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
from marketjax.markets.ledger import books_imbalance


def _constant_bid_market(bids, wealth, rule, num_envs=2, reserve=0.0, **kwargs):
    """A market of linear agents whose bids ignore the observation."""
    env = BatchedEnv("CartPole-v1", num_envs)
    family = make_family("linear", env.spec.obs_dim, env.spec.num_actions)
    market = DeepMarket(env, family, rule, reserve=reserve, **kwargs)
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


def _price_on_time_market(**kwargs):
    """Bids [0.5, 2, 1.5], wealth 10 each, bucket brigade with γ = 1, flat rent 0.1
    on all, owner_rent 0.25: the fixture of the price-on-time tests."""
    market, state = _constant_bid_market(
        [0.5, 2.0, 1.5],
        [10.0, 10.0, 10.0],
        "bucket_brigade",
        rent_rule="flat",
        rent_on="all",
        **kwargs,
    )
    params = DeepMarketParams(
        jnp.float32(1.0), jnp.float32(0.1), jnp.float32(0.0), jnp.float32(0.25)
    )
    return market, state, params


def test_owner_rent_charges_the_holder_per_step_on_top_of_rent_on_all():
    # Bucket brigade, γ = 1, flat rent 0.1 on every living agent (ε·B = 0.2 a
    # step each) plus owner_rent 0.25 per episode held (Hayek's price on time).
    market, state, params = _price_on_time_market()
    s1, rec1 = market.step(jax.random.key(2), state, params)
    # Agent 1 buys both episodes from the bank at its bid 2, earns 1 in each,
    # pays 0.25 in each for holding and 0.2 of rent: 10 + 2(1 - 2 - 0.25) - 0.2.
    np.testing.assert_array_equal(rec1.winner, [1, 1])
    np.testing.assert_allclose(s1.population.wealth, [9.8, 7.3, 9.8], rtol=1e-6)
    np.testing.assert_allclose(s1.books.bank.value, 4.0)
    np.testing.assert_allclose(s1.books.rent_out.value, 2 * 0.25 + 3 * 0.2)
    s2, _ = market.step(jax.random.key(3), s1, params)
    # It buys from itself (pays 2, is paid 2): only the reward, the price on
    # time and the rent move: 7.3 + 2(1 - 0.25) - 0.2.
    np.testing.assert_allclose(s2.population.wealth, [9.6, 8.6, 9.6], rtol=1e-6)
    assert float(books_imbalance(s2.books, s2.population.wealth)) < 1e-6
    # Without the price on time (None, the default) the holder pays only rent.
    s1, _ = market.step(jax.random.key(2), state, params.replace(owner_rent=None))
    np.testing.assert_allclose(s1.population.wealth, [9.8, 7.8, 9.8], rtol=1e-6)


def test_a_net_target_charges_the_price_on_time_in_what_holders_learn_only():
    # As above (bucket brigade, γ = 1, flat rent 0.1 on all, owner_rent 0.25):
    # agent 1 holds both episodes for two steps. The learner's reward is the
    # env's 1 less the 0.25 the holder paid for the step; the credits (its own
    # bid 2, paid by itself as next buyer) and every payment are the price
    # target's.
    runs = {}
    for target in ("price", "net"):
        market, state, params = _price_on_time_market(bid_target=target)
        s1, rec1 = market.step(jax.random.key(2), state, params)
        s2, rec2 = market.step(jax.random.key(3), s1, params)
        rec = jax.tree.map(lambda *x: jnp.stack(x), rec1, rec2)
        runs[target] = (s2, market.experience(jax.random.key(4), s2, rec, params))
    (s_price, e_price), (s_net, e_net) = runs["price"], runs["net"]
    np.testing.assert_array_equal(e_net.owner[..., 0], [[1, 1], [1, 1]])
    np.testing.assert_allclose(e_price.reward[..., 0], [[1.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(e_net.reward[..., 0], [[0.75, 0.75], [0.75, 0.75]])
    np.testing.assert_allclose(e_net.credit_next, e_price.credit_next)
    np.testing.assert_allclose(e_net.credit_next[..., 0], [[2.0, 2.0], [2.0, 2.0]])
    # Money: the same wealth as the price target (and the fixture above).
    np.testing.assert_allclose(s_net.population.wealth, [9.6, 8.6, 9.6], rtol=1e-6)
    np.testing.assert_allclose(s_net.population.wealth, s_price.population.wealth)
    assert float(books_imbalance(s_net.books, s_net.population.wealth)) < 1e-6


def _params(gamma=0.99, rent=0.0, explore=0.0):
    return DeepMarketParams(jnp.float32(gamma), jnp.float32(rent), jnp.float32(explore))


def test_bids_share_one_budget_across_episodes_and_the_poor_cannot_bid():
    market, state = _constant_bid_market([5.0, 3.0, 1.0], [0.5, 2.0, 0.0], "vickrey")
    capped, valid, raw = market.capped_bids(
        state.population, state.obs, jnp.float32(0.0)
    )
    # Two episodes: agent 0 may commit 0.5 in all (5 + 5 scaled to 0.25 + 0.25),
    # agent 1 may commit 2 (3 + 3 scaled to 1 + 1).
    np.testing.assert_allclose(capped[0], [0.25, 1.0, 0.0], rtol=2e-4)
    np.testing.assert_allclose(raw[0], [5.0, 3.0, 1.0])
    np.testing.assert_array_equal(valid[0], [True, True, False])
    winner, _, pay, capped_win = market.auction(
        jax.random.key(0), state.population, state.obs, _params()
    )
    np.testing.assert_array_equal(winner, [1, 1])
    np.testing.assert_allclose(pay.paid, [0.25, 0.25], rtol=2e-4)
    np.testing.assert_array_equal(capped_win, [True, True])


@pytest.mark.parametrize("rule", ["vickrey", "credit_conserving"])
def test_the_banks_reserve_price_binds_only_where_the_bank_sells(rule):
    # Bids (3.0, 1.5), reserve 2, wealth ample (no caps). Episode 0: the bank sells
    # (a fresh episode): only agent 0 meets the reserve; the second price (1.5) is
    # below it, so agent 0 pays the reserve, 2. Episode 1: agent 1 owns the right:
    # no reserve, agent 0 pays the second price 1.5.
    market, state = _constant_bid_market(
        [3.0, 1.5], [1e3, 1e3], rule, num_envs=2, reserve=2.0
    )
    bank_sells = jnp.array([True, False])
    winner, _, pay, _ = market.auction(
        jax.random.key(0), state.population, state.obs, _params(), bank_sells
    )
    np.testing.assert_array_equal(winner, [0, 0])
    np.testing.assert_allclose(pay.paid, [2.0, 1.5])
    # Nobody meets the reserve: the bank keeps the right (winner -1, nothing paid),
    # even when the exploration lottery is always drawn.
    market, state = _constant_bid_market(
        [1.0, 1.5], [1e3, 1e3], rule, num_envs=2, reserve=2.0
    )
    winner, _, pay, _ = market.auction(
        jax.random.key(0),
        state.population,
        state.obs,
        _params(explore=1.0),
        jnp.array([True, True]),
    )
    np.testing.assert_array_equal(winner, [-1, -1])
    np.testing.assert_array_equal(pay.paid, [0.0, 0.0])
    # Without a reserve the same auction sells both at the second price.
    market, state = _constant_bid_market([1.0, 1.5], [1e3, 1e3], rule, num_envs=2)
    winner, _, pay, _ = market.auction(
        jax.random.key(0), state.population, state.obs, _params(), bank_sells
    )
    np.testing.assert_array_equal(winner, [1, 1])
    np.testing.assert_allclose(pay.paid, [1.0, 1.0])


def test_a_reserve_price_keeps_the_books_and_the_bank_acts_where_nobody_meets_it():
    # Fresh episodes are sold by the bank: with every bid below the reserve the
    # bank acts in every episode at every step, and no money moves but rewards...
    market, state = _constant_bid_market(
        [1.0, 1.5], [10.0, 10.0], "credit_conserving", num_envs=4, reserve=2.0
    )
    s1, rec = market.step(jax.random.key(2), state, _params())
    np.testing.assert_array_equal(rec.winner, [-1, -1, -1, -1])
    np.testing.assert_array_equal(s1.owner, [-1, -1, -1, -1])
    np.testing.assert_allclose(s1.population.wealth, [10.0, 10.0])
    # ...and with one bid above it, agent 1 buys the 4 fresh episodes at the reserve
    # (2 each, to the bank) and collects 1 per episode; the books balance.
    market, state = _constant_bid_market(
        [1.0, 2.5], [10.0, 10.0], "credit_conserving", num_envs=4, reserve=2.0
    )
    s1, rec = market.step(jax.random.key(2), state, _params())
    np.testing.assert_array_equal(rec.winner, [1, 1, 1, 1])
    np.testing.assert_allclose(s1.population.wealth, [10.0, 10.0 + 4 * (1 - 2.0)])
    np.testing.assert_allclose(s1.books.bank.value, 8.0)
    assert float(books_imbalance(s1.books, s1.population.wealth)) < 1e-6


@pytest.mark.parametrize("budget_rule", ["share", "scale"])
def test_the_minus_63_case_ends_at_or_above_zero(budget_rule):
    """B = 64 episodes, bucket brigade, wealths (1, 1), bids (5, 0.1): a
    per-episode cap let agent 0 pay 1 in each episode and end at -63. (Under
    ``scale`` both agents' 64 bids are scaled to 1/64 each: a tie, agent 0 wins
    all 64 and pays its whole budget.)"""
    env = BatchedEnv("Catch-bsuite", 64)
    family = make_family("linear", env.spec.obs_dim, env.spec.num_actions)
    market = DeepMarket(env, family, "bucket_brigade", budget_rule=budget_rule)
    pop = init_population(jax.random.key(0), family, 2, 1.0)
    bid = {"w": jnp.zeros_like(pop.params["bid"]["w"]), "c": jnp.array([5.0, 0.1])}
    pop = pop.replace(params={**pop.params, "bid": bid})
    state = market.init(jax.random.key(1), pop)
    s1, rec = market.step(jax.random.key(2), state, _params())
    assert float(jnp.min(s1.population.wealth)) >= 0.0
    np.testing.assert_allclose(jnp.sum(rec.paid), 1.0, rtol=2e-4)  # all it had


@pytest.mark.parametrize(
    ("rule", "budget_rule"),
    [
        ("bucket_brigade", "share"),
        ("vickrey", "share"),
        ("credit_conserving", "share"),
        ("bucket_brigade", "scale"),
        ("vickrey", "scale"),
    ],
)
@pytest.mark.parametrize("rent_rule", ["proportional", "flat"])
def test_no_account_is_overdrawn_by_bids_at_scale(rule, budget_rule, rent_rule):
    """256 episodes, 16 agents bidding far beyond their wealth, 200 steps: bids
    and rent never take an account below zero (CartPole's rewards are >= 0)."""
    env = BatchedEnv("CartPole-v1", 256)
    family = make_family("linear", env.spec.obs_dim, env.spec.num_actions)
    market = DeepMarket(env, family, rule, rent_rule, budget_rule=budget_rule)
    pop = init_population(jax.random.key(0), family, 16, 1.0)
    bid = {
        "w": jax.random.normal(jax.random.key(5), pop.params["bid"]["w"].shape),
        "c": 50.0 * jax.random.uniform(jax.random.key(6), (16,)),
    }
    pop = pop.replace(
        params={**pop.params, "bid": bid},
        wealth=jax.random.uniform(jax.random.key(7), (16,), maxval=3.0),
    )
    state = market.init(jax.random.key(1), pop)
    rent = 0.05 if rent_rule == "proportional" else 0.001

    def body(s, k):
        s, rec = market.step(k, s, _params(rent=rent, explore=0.2))
        return s, (jnp.min(s.population.wealth), jnp.mean(rec.capped))

    final, (lowest, capped) = jax.jit(
        lambda s: jax.lax.scan(body, s, jax.random.split(jax.random.key(2), 200))
    )(state)
    assert float(jnp.min(lowest)) >= -1e-4
    assert float(jnp.min(capped[:3])) == 1.0  # the budget bound every winner
    imbalance = books_imbalance(final.books, final.population.wealth)
    assert float(imbalance) < 1e-5


def test_bank_acts_when_nobody_can_bid():
    market, state = _constant_bid_market([1.0, 1.0], [0.0, -1.0], "credit_conserving")
    s1, rec = market.step(jax.random.key(0), state, _params(rent=0.1))
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
        "rent": 0.2,
        "exit_threshold": 5.0,
        "rollout_steps": 100,
        "explore_start": 0.1,
        "explore_end": 0.1,
    },
}


@pytest.mark.parametrize("rent_rule", ["proportional", "flat"])
def test_books_balance_after_10000_steps_of_256_episodes_with_entry_exit_rent(
    rent_rule,
):
    data = {**BOOKS_CONFIG, "deep": {**BOOKS_CONFIG["deep"], "rent_rule": rent_rule}}
    if rent_rule == "flat":
        data["deep"]["rent"] = 1.5
    else:  # proportional rent never bankrupts; Catch's -1 rewards do
        data["env"] = "Catch-bsuite"
    config = parse_train_config(data)
    train = jax.jit(make_train(config))
    state, metrics = train(jax.random.key(0))
    books = state.market.books
    imbalance = float(metrics["books_imbalance"][-1])
    assert imbalance <= 1e-5, imbalance
    assert float(jnp.sum(metrics["entries"])) > 0  # entry and exit happened
    assert float(jnp.sum(metrics["exits"])) > 0
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
    state = run.init(seed_keys(config), run.params)
    history = []
    for _ in range(num_chunks):
        state, metrics = run.chunk(state, run.params)
        history.append(metrics)
    return state, history


def test_same_seed_same_numbers_and_different_seed_differs(tiny_run):
    _, h1 = _run_chunks(tiny_run, tiny_run.config)
    _, h2 = _run_chunks(tiny_run, tiny_run.config)
    chex.assert_trees_all_equal(h1, h2)
    _, h3 = _run_chunks(tiny_run, dataclasses.replace(tiny_run.config, seed=1))
    assert not np.array_equal(h1[-1]["bid_loss"], h3[-1]["bid_loss"])


def test_a_compiled_chunk_is_traced_once_across_repeated_calls(tiny_run):
    before = tiny_run.trace_count
    _run_chunks(tiny_run, tiny_run.config)
    _, history = _run_chunks(tiny_run, tiny_run.config, 2)
    assert tiny_run.trace_count == before == 1
    assert history[-1]["mean_return"].shape == (2,)


def test_the_trace_counter_sees_a_retrace(tiny_run):
    """The counter lives inside the traced function: a call that must retrace
    (params of another dtype) is counted, so the test above can fail."""
    state = tiny_run.init(seed_keys(tiny_run.config), tiny_run.params)
    before = tiny_run.trace_count
    other = {k: v.astype(jnp.bfloat16) for k, v in tiny_run.params.items()}
    with jax.numpy_dtype_promotion("standard"):
        jax.eval_shape(tiny_run.chunk, state, other)
    assert tiny_run.trace_count == before + 1


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


def test_forget_hands_replaced_owners_rights_to_the_bank():
    market, state = _constant_bid_market([1.0, 2.0, 3.0], [10.0, 10.0, 10.0], "vickrey")
    state = state.replace(owner=jnp.array([2, 0], jnp.int32))
    forgot = market.forget(state, jnp.array([False, False, True]))
    np.testing.assert_array_equal(forgot.owner, [-1, 0])  # slot 2 was replaced
    kept = market.forget(state, jnp.zeros((3,), bool))
    np.testing.assert_array_equal(kept.owner, [2, 0])
    bank_owned = market.forget(
        state.replace(owner=jnp.array([-1, -1], jnp.int32)), jnp.ones((3,), bool)
    )
    np.testing.assert_array_equal(bank_owned.owner, [-1, -1])


def test_a_value_target_reports_the_unbudgeted_top_bid_and_pays_the_budgeted():
    # Bids (5, 3), wealth (0.5, 2), two episodes: budgeted bids (0.25, 1), agent 1
    # wins and pays 0.25 (Vickrey); the seller is credited the budgeted top 1.0,
    # while the value the learner sees is the unbudgeted top bid, 5.
    market, state = _constant_bid_market(
        [5.0, 3.0], [0.5, 2.0], "vickrey", bid_target="value"
    )
    winner, _, pay, capped, value, explored = market.auction_values(
        jax.random.key(0), state.population, state.obs, _params()
    )
    np.testing.assert_array_equal(winner, [1, 1])
    np.testing.assert_allclose(pay.paid, [0.25, 0.25], rtol=2e-4)
    np.testing.assert_allclose(pay.credit, [1.0, 1.0], rtol=2e-4)
    np.testing.assert_allclose(value, [5.0, 5.0])
    np.testing.assert_array_equal(capped, [True, True])
    np.testing.assert_array_equal(explored, [False, False])


def _qnet_market(biases, num_envs):
    """CartPole, qnet agents with no hidden layer and zero weights: agent i's
    values are the constant ``biases[i]`` (f32[A]) whatever the observation."""
    env = BatchedEnv("CartPole-v1", num_envs)
    family = make_family("qnet", env.spec.obs_dim, env.spec.num_actions, hidden=())
    market = DeepMarket(env, family, "vickrey")
    pop = init_population(jax.random.key(0), family, len(biases), 1e4)
    dense = pop.params["bid"]["params"]["Dense_0"]
    dense = {
        "kernel": jnp.zeros_like(dense["kernel"]),
        "bias": jnp.asarray(biases, jnp.float32),
    }
    pop = pop.replace(params={**pop.params, "bid": {"params": {"Dense_0": dense}}})
    return market, market.init(jax.random.key(1), pop)


def test_a_qnet_winner_acts_by_its_own_values_and_explorers_act_at_random():
    # Agent 0 values (10, 20): bids 20, acts 1. Agent 1 values (5, 15): bids 15,
    # acts 1 too. Greedy, agent 0 wins every episode and every action is 1; the
    # learner regresses the output of the action taken, and the bootstrap credit
    # of the last step is the next auction's top bid (20).
    market, state = _qnet_market([[10.0, 20.0], [5.0, 15.0]], 256)

    def run(explore):
        def body(s, k):
            return market.step(k, s, _params(explore=explore))

        keys = jax.random.split(jax.random.key(2), 3)
        final, rec = jax.lax.scan(body, state, keys)
        return final, rec

    final, rec = run(0.0)
    np.testing.assert_array_equal(rec.winner, 0)
    np.testing.assert_array_equal(rec.action, 1)
    np.testing.assert_allclose(rec.top_bid, 20.0)
    exp = market.experience(jax.random.key(3), final, rec, _params())
    np.testing.assert_array_equal(exp.output[..., 0], rec.action)
    np.testing.assert_allclose(exp.credit_next[-1], 20.0)
    # Every right handed out by the lottery: the explorer acts uniformly at random
    # (about half the actions are 0, which neither program would choose).
    _, rec = run(1.0)
    share = float(jnp.mean((rec.action == 0).astype(jnp.float32)))
    assert 0.4 < share < 0.6


def test_only_negative_rewards_take_wealth_below_zero_even_when_values_fall():
    """Vickrey, CartPole (reward +1), bids (−1, −2), wealth 0.01 each (by hand).

    Step 1: agent 0 wins at the second bid −2: 0.01 + 1 + 2 = 3.01. The bids fall
    to (−100, −50): agent 1 buys, and the seller, agent 0, is credited
    γ·top = 0.99·(−50) = −49.5: without limited liability it would end at
    3.01 − 49.5 = −46.49. It pays the 3.01 it has; the bank covers 46.49.
    """
    market, state = _constant_bid_market([-1.0, -2.0], [0.01, 0.01], "vickrey", 1)
    s1, rec1 = market.step(jax.random.key(2), state, _params())
    np.testing.assert_array_equal(rec1.winner, [0])
    np.testing.assert_allclose(s1.population.wealth[0], 3.01, rtol=1e-6)
    params = dict(s1.population.params)
    params["bid"] = {**params["bid"], "c": jnp.asarray([-100.0, -50.0])}
    s1 = s1.replace(population=s1.population.replace(params=params))
    s2, rec2 = market.step(jax.random.key(3), s1, _params())
    assert not bool(rec1.done[0])
    np.testing.assert_array_equal(rec2.winner, [1])
    assert float(s2.population.wealth[0]) == 0.0
    assert float(s2.population.wealth[0]) >= 0.0
    books = s2.books
    total = float(jnp.sum(s2.population.wealth) + books.bank.value)
    np.testing.assert_allclose(total, float(books.expected_total()), atol=1e-5)
