"""CAPITALISM's selection: exit threshold, min age, cloning, allowance accounting."""

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.agents.families import make_family
from marketjax.agents.population import PopulationParams, init_population, renew
from marketjax.learners import chain, selection


def _pop(wealth, age):
    family = make_family("linear", 4, 3)
    pop = init_population(jax.random.key(0), family, len(wealth), 0.0)
    return family, pop.replace(
        wealth=jnp.asarray(wealth, jnp.float32), age=jnp.asarray(age, jnp.int32)
    )


def _params(allowance=7.0, threshold=1.0, clone_prob=1.0, min_age=1):
    return PopulationParams(
        allowance=jnp.float32(allowance),
        exit_threshold=jnp.float32(threshold),
        clone_prob=jnp.float32(clone_prob),
        mutation_scale=jnp.float32(0.0),
        min_age=jnp.int32(min_age),
    )


def test_renew_replaces_the_bankrupt_who_are_old_enough():
    family, pop = _pop([0.5, 9.0, -2.0, 0.2], [3, 3, 3, 0])
    out = renew(jax.random.key(1), family, pop, _params())
    # slots 0 and 2 are below the threshold and old enough; slot 3 is too young
    np.testing.assert_array_equal(out.replaced, [True, False, True, False])
    assert int(out.num_exits) == 2 and int(out.num_entries) == 2
    np.testing.assert_allclose(out.exits_to_bank, 0.5 - 2.0)  # debts go too
    np.testing.assert_allclose(out.allowances, 14.0)
    np.testing.assert_allclose(out.population.wealth, [7.0, 9.0, 7.0, 0.2])
    np.testing.assert_array_equal(out.population.age, [0, 4, 0, 1])
    # clone_prob 1: both entrants are clones of the richest (slot 1), unmutated
    np.testing.assert_array_equal(out.population.parent, [1, -1, 1, -1])
    bid = out.population.params["bid"]
    np.testing.assert_array_equal(bid["w"][0], bid["w"][1])
    np.testing.assert_array_equal(bid["c"][2], bid["c"][1])


def test_renew_keeps_money_counted():
    family, pop = _pop([0.5, 9.0, -2.0, 0.2], [3, 3, 3, 3])
    out = renew(jax.random.key(1), family, pop, _params(clone_prob=0.0))
    before = float(jnp.sum(pop.wealth))
    after = float(jnp.sum(out.population.wealth))
    # what left went to the bank, what entered was minted
    np.testing.assert_allclose(
        after, before - float(out.exits_to_bank) + float(out.allowances), rtol=1e-6
    )
    np.testing.assert_array_equal(out.population.parent, [-1, -1, -1, -1])


def test_selection_learner_reports_flows_and_a_chain_resets_the_others():
    family, pop = _pop([0.5, 9.0, 3.0], [3, 3, 3])
    params = {
        "allowance": jnp.float32(5.0),
        "exit_threshold": jnp.float32(1.0),
        "clone_prob": jnp.float32(1.0),
        "mutation_scale": jnp.float32(0.0),
    }
    resets = []

    class Counter:
        @staticmethod
        def init(population):
            return jnp.ones(population.wealth.shape)

        @staticmethod
        def update(key, state, population, experience, params):
            from marketjax.learners.base import no_change

            return no_change(population, state + 1.0, {})

        @staticmethod
        def reset(state, replaced, population):
            resets.append(1)
            return jnp.where(replaced, 0.0, state)

    learner = chain(Counter, selection(family, min_age=1))
    state = learner.init(pop)
    out = learner.update(jax.random.key(0), state, pop, None, params)
    np.testing.assert_array_equal(out.replaced, [True, False, False])
    np.testing.assert_allclose(out.bank_delta, 0.5)
    np.testing.assert_allclose(out.allowances, 5.0)
    assert out.metrics["entries"] == 1 and out.metrics["exits"] == 1
    # the counter's state was reset for the replaced slot only
    np.testing.assert_allclose(out.state[0], [0.0, 2.0, 2.0])
    assert resets


def test_parent_funding_the_richest_pays_for_its_clones_and_nothing_is_minted():
    family, pop = _pop([0.5, 9.0, -2.0, 4.0], [3, 3, 3, 3])
    out = renew(jax.random.key(1), family, pop, _params(allowance=3.0), "parent")
    # two exits (slots 0, 2), two clones of slot 1, each paid 3 by slot 1
    np.testing.assert_allclose(out.population.wealth, [3.0, 3.0, 3.0, 4.0])
    np.testing.assert_allclose(out.parent_paid, 6.0)
    np.testing.assert_allclose(out.allowances, 0.0)  # nothing minted
    np.testing.assert_array_equal(out.population.parent, [1, -1, 1, -1])
    # a parent that cannot afford a full allowance each splits what it has
    out = renew(jax.random.key(1), family, pop, _params(allowance=8.0), "parent")
    np.testing.assert_allclose(out.population.wealth, [4.5, 0.0, 4.5, 4.0])
    # fresh draws (clone_prob 0) are minted even under parent funding
    out = renew(
        jax.random.key(1), family, pop, _params(allowance=3.0, clone_prob=0.0), "parent"
    )
    np.testing.assert_allclose(out.allowances, 6.0)
    np.testing.assert_allclose(out.parent_paid, 0.0)


def test_dividends_move_a_share_of_profit_from_child_to_parent():
    from marketjax.agents.population import pay_dividends

    _, pop = _pop([10.0, 5.0, 7.0, 1.0], [3, 3, 3, 3])
    pop = pop.replace(parent=jnp.array([-1, 0, 0, 2], jnp.int32))
    baseline = jnp.array([10.0, 3.0, 9.0, 0.0])
    out, paid = pay_dividends(pop, baseline, jnp.float32(0.25))
    # child 1 gained 2 -> pays 0.5 to 0; child 2 lost -> pays 0; child 3 gained 1
    # -> pays 0.25 to 2
    np.testing.assert_allclose(out.wealth, [10.5, 4.5, 7.25, 0.75])
    np.testing.assert_allclose(paid, 0.75)
    np.testing.assert_allclose(jnp.sum(out.wealth), jnp.sum(pop.wealth))


def test_children_of_a_replaced_slot_lose_their_parent():
    family, pop = _pop([0.5, 9.0, 3.0], [3, 3, 3])
    pop = pop.replace(parent=jnp.array([-1, -1, 0], jnp.int32))
    out = renew(jax.random.key(1), family, pop, _params(clone_prob=1.0))
    # slot 0 left; slot 2's parent (slot 0) is gone, the newcomer is not it
    np.testing.assert_array_equal(out.population.parent, [1, -1, -1])


def test_wealthy_parents_every_child_has_a_parent_above_the_threshold_who_pays():
    # slots 0, 3, 5 are bankrupt; with the threshold at 60 only slots 2 (wealth
    # 90) and 4 (70) may create, never slot 1 (50)
    family, pop = _pop([0.5, 50.0, 90.0, -2.0, 70.0, 0.0], [3] * 6)
    params = _params(allowance=10.0).replace(parent_threshold=jnp.float32(60.0))
    seen = set()
    for seed in range(8):
        out = renew(jax.random.key(seed), family, pop, params, "parent", "wealthy")
        parent = np.asarray(out.population.parent)
        seen |= set(parent[[0, 3, 5]].tolist())
        np.testing.assert_array_equal(parent[[1, 2, 4]], [-1, -1, -1])
        assert set(parent[[0, 3, 5]]) <= {2, 4}
        kids = {p: int(np.sum(parent == p)) for p in (2, 4)}
        # each parent paid exactly 10 per child of its own; nothing was minted
        np.testing.assert_allclose(
            out.population.wealth,
            [10.0, 50.0, 90.0 - 10 * kids[2], 10.0, 70.0 - 10 * kids[4], 10.0],
        )
        np.testing.assert_allclose(out.parent_paid, 30.0)
        np.testing.assert_allclose(out.allowances, 0.0)
        # the children are their parents' (unmutated) rules
        w = np.asarray(out.population.params["bid"]["w"])
        for slot in (0, 3, 5):
            np.testing.assert_array_equal(
                w[slot], np.asarray(pop.params["bid"]["w"])[parent[slot]]
            )
    assert seen == {2, 4}  # not only the richest creates
    # nobody above the threshold: the richest creates, as under "richest"
    high = params.replace(parent_threshold=jnp.float32(1e6))
    out = renew(jax.random.key(0), family, pop, high, "parent", "wealthy")
    np.testing.assert_array_equal(out.population.parent, [2, -1, -1, 2, -1, 2])
    np.testing.assert_allclose(out.population.wealth, [10, 50, 60, 10, 70, 10])


def test_earnings_funding_a_parent_pays_only_out_of_its_income():
    # slots 0, 2, 4 bankrupt; the richest (slot 1, wealth 50) earned 25 this
    # update: with allowance 10 it affords floor(25 / 10) = 2 children, its first
    # two would-be clones by slot (0, 2); slot 4 is a fresh draw, minted.
    family, pop = _pop([0.5, 50.0, -2.0, 4.0, 0.1], [3, 3, 3, 3, 3])
    budget = jnp.asarray([0.0, 25.0, 0.0, 1.0, 0.0], jnp.float32)
    args = (jax.random.key(1), family, pop, _params(allowance=10.0))
    out = renew(*args, "earnings", budget=budget)
    np.testing.assert_allclose(out.population.wealth, [10.0, 30.0, 10.0, 4.0, 10.0])
    np.testing.assert_array_equal(out.population.parent, [1, -1, 1, -1, -1])
    np.testing.assert_allclose(out.parent_paid, 20.0)
    np.testing.assert_allclose(out.allowances, 10.0)  # the fresh draw is minted
    # money is conserved: Σ wealth after = Σ survivors' before + minted
    before = 50.0 + 4.0
    np.testing.assert_allclose(jnp.sum(out.population.wealth), before + 10.0)
    w = np.asarray(out.population.params["bid"]["w"])
    np.testing.assert_allclose(w[[0, 2]], np.asarray(pop.params["bid"]["w"])[[1, 1]])
    assert not np.allclose(w[4], np.asarray(pop.params["bid"]["w"])[1])
    # no income (or a loss): no clones at all, whatever the parent's capital
    out = renew(*args, "earnings", budget=jnp.full((5,), -3.0))
    np.testing.assert_array_equal(out.population.parent, [-1, -1, -1, -1, -1])
    np.testing.assert_allclose(out.parent_paid, 0.0)
    np.testing.assert_allclose(out.allowances, 30.0)
    np.testing.assert_allclose(out.population.wealth[1], 50.0)
    # income is capped by wealth: earning 1e6 with 50 in hand pays for 5 at most
    many = _pop([0.0] * 7 + [50.0], [3] * 8)[1]
    out = renew(
        jax.random.key(1),
        family,
        many,
        _params(allowance=10.0),
        "earnings",
        budget=jnp.full((8,), 1e6),
    )
    assert int(np.sum(np.asarray(out.population.parent) == 7)) == 5
    np.testing.assert_allclose(out.population.wealth[7], 0.0)
    np.testing.assert_allclose(out.parent_paid, 50.0)
    # without a budget the rule refuses, naming what is missing
    try:
        renew(*args, "earnings")
    except ValueError as err:
        assert "budget" in str(err)
    else:
        raise AssertionError("earnings without a budget must fail")


def test_selection_learner_funds_children_out_of_profit_since_the_last_renewal():
    family, pop = _pop([0.5, 29.0, 3.0], [3, 3, 3])
    params = {
        "allowance": jnp.float32(5.0),
        "exit_threshold": jnp.float32(1.0),
        "clone_prob": jnp.float32(1.0),
        "mutation_scale": jnp.float32(0.0),
    }
    learner = selection(family, min_age=1, funding="earnings")
    # the richest (slot 1) earned 29 - 9 = 20 >= 5 since its baseline: a clone
    baseline = jnp.asarray([0.5, 9.0, 3.0], jnp.float32)
    out = learner.update(jax.random.key(0), baseline, pop, None, params)
    np.testing.assert_allclose(out.population.wealth, [5.0, 24.0, 3.0])
    np.testing.assert_array_equal(out.population.parent, [1, -1, -1])
    assert out.metrics["parent_paid"] == 5.0 and out.metrics["minted"] == 0.0
    # it earned 29 - 27 = 2 < 5: no clone; the entrant is fresh and minted
    baseline = jnp.asarray([0.5, 27.0, 3.0], jnp.float32)
    out = learner.update(jax.random.key(0), baseline, pop, None, params)
    np.testing.assert_allclose(out.population.wealth, [5.0, 29.0, 3.0])
    np.testing.assert_array_equal(out.population.parent, [-1, -1, -1])
    assert out.metrics["parent_paid"] == 0.0 and out.metrics["minted"] == 5.0
