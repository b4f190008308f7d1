"""Q(λ): the λ-return recursion by hand, O(M) sample grouping, the ε schedule."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.learners.q_lambda import (
    agent_capacity,
    group_by_owner,
    lambda_returns,
    linear_anneal,
)


def test_lambda_returns_match_a_hand_computed_case():
    # T = 3, one episode: rewards 1, 2, 3; the episode ends after step 1.
    reward = jnp.array([[1.0], [2.0], [3.0]])
    done = jnp.array([[False], [True], [False]])
    credit = jnp.array([[10.0], [20.0], [30.0]])
    gamma, lam = 0.5, 0.25
    y = np.asarray(lambda_returns(reward, done, credit, gamma, lam))[:, 0]
    y2 = 3.0 + 0.5 * (0.75 * 30.0 + 0.25 * 30.0)  # bootstrap y_T = c_T = 30
    y1 = 2.0  # the episode ended: no credit follows
    y0 = 1.0 + 0.5 * (0.75 * 10.0 + 0.25 * y1)
    np.testing.assert_allclose(y, [y0, y1, y2], rtol=1e-6)


def test_lambda_zero_is_the_one_step_payoff():
    reward = jnp.array([[1.0, 0.5], [2.0, 0.0]])
    done = jnp.zeros((2, 2), bool)
    credit = jnp.array([[4.0, 3.0], [5.0, 6.0]])
    y = lambda_returns(reward, done, credit, 0.9, 0.0)
    np.testing.assert_allclose(y, reward + 0.9 * credit, rtol=1e-6)


def test_group_by_owner_gathers_each_agents_own_samples():
    owner = jnp.array([2, 0, -1, 2, 1, 2, 0, 2], jnp.int32)
    index, mask = group_by_owner(jax.random.key(0), owner, 3, 8)
    index, mask = np.asarray(index), np.asarray(mask)
    for agent in range(3):
        got = sorted(index[agent][mask[agent]].tolist())
        want = [i for i, o in enumerate(owner.tolist()) if o == agent]
        assert got == want
    assert mask.sum() == 7  # the sample nobody held is dropped


def test_an_over_full_agent_learns_from_a_random_subset():
    owner = jnp.zeros((100,), jnp.int32)  # agent 0 holds every sample
    index, mask = group_by_owner(jax.random.key(1), owner, 4, 10)
    assert np.asarray(mask).sum(axis=1).tolist() == [10, 0, 0, 0]
    kept = set(np.asarray(index)[0].tolist())
    assert len(kept) == 10  # distinct samples
    other, _ = group_by_owner(jax.random.key(2), owner, 4, 10)
    assert set(np.asarray(other)[0].tolist()) != kept  # a different subset


def test_capacity_is_a_multiple_of_a_fair_share_but_never_above_the_batch():
    assert agent_capacity(1024, 2, 2.0) == 1024
    assert agent_capacity(1024, 64, 2.0) == 32
    assert agent_capacity(10, 64, 2.0) == 1


@pytest.mark.parametrize(
    ("index", "expected"), [(0, 1.0), (5, 0.525), (10, 0.05), (99, 0.05)]
)
def test_exploration_anneals_linearly_then_holds(index, expected):
    # 100 updates, annealed over the first 10% of them
    value = linear_anneal(1.0, 0.05, 0.1, 100, index)
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)


@pytest.mark.parametrize("num_agents", [3, 300])  # counting and sorting paths
def test_both_grouping_paths_keep_each_agents_samples_within_capacity(num_agents):
    owner = jax.random.randint(jax.random.key(4), (500,), -1, 3)
    index, mask = group_by_owner(jax.random.key(5), owner, num_agents, 100)
    index, mask = np.asarray(index), np.asarray(mask)
    owner = np.asarray(owner)
    for agent in range(3):
        kept = index[agent][mask[agent]]
        assert len(set(kept.tolist())) == len(kept) == min(100, (owner == agent).sum())
        assert np.all(owner[kept] == agent)
    assert mask[3:].sum() == 0


@pytest.mark.parametrize("family", ["mlp", "trunk"])
def test_sliced_minibatches_give_the_same_update(monkeypatch, family):
    # A minibatch larger than MICRO_SAMPLES is differentiated in slices whose
    # summed gradients divided by the sample count equal the whole batch's mean
    # gradient: one deep update with slices of 5 samples matches the unsliced
    # update to float precision (mlp: capacity 22 -> 5 slices, 3 padded slots;
    # trunk: the 32-sample minibatch -> 7 slices, 3 padded rows, and the shared
    # trunk moves alike).
    from marketjax.algos.deep import make_trainer
    from marketjax.experiment.registry import parse_train_config
    from marketjax.experiment.runner import as_params

    q = importlib.import_module("marketjax.learners.q_lambda")

    data = {
        "name": "t",
        "algo": "deep",
        "env": "Catch-bsuite",
        "num_envs": 4,
        "total_env_steps": 4 * 8 * 4,
        "deep": {"num_agents": 3, "family": family, "hidden": [8], "rollout_steps": 8},
    }

    def one_update():
        trainer = make_trainer(parse_train_config(data))
        params = as_params(trainer.params)
        state = trainer.init(jax.random.key(0), params)
        state, metrics = jax.jit(trainer.update)(state, params)
        pop = state.market.population
        return (pop.params["bid"], pop.shared), metrics["bid_loss"]

    whole, whole_loss = one_update()
    monkeypatch.setattr(q, "MICRO_SAMPLES", 5)
    sliced, sliced_loss = one_update()
    assert float(whole_loss) > 0.0
    np.testing.assert_allclose(sliced_loss, whole_loss, rtol=1e-5)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), whole, sliced)
    assert max(jax.tree.leaves(moved)) < 1e-6
    if family == "trunk":
        assert len(jax.tree.leaves(whole[1])) == 4  # a Dense and a LayerNorm


def test_a_qnet_program_learns_only_the_value_of_the_action_it_took():
    # Two qnet programs without hidden layers (values = obs @ K + b, one column
    # per action). Agent 0 held every sample but one and took action 1 in each;
    # agent 1 held one sample and took action 0; nobody held the last. After one
    # Adam step only the taken columns move: agent 0's action-0 column and
    # agent 1's action-1 column are exactly unchanged (zero gradient).
    from marketjax.agents.families import make_family
    from marketjax.agents.population import init_population
    from marketjax.learners.base import Experience
    from marketjax.learners.q_lambda import q_lambda

    family = make_family("qnet", 4, 2, hidden=())
    pop = init_population(jax.random.key(0), family, 2, 100.0)
    learner = q_lambda(
        lambda p, obs: family.values({"bid": p}, obs),
        lambda params: params["bid"],
        lambda params, bid: {**params, "bid": bid},
        num_updates=1,
        epochs=1,
        minibatches=1,
        capacity_factor=2.0,
        anneal_lr=False,
    )
    t, b = 2, 3
    owner = jnp.zeros((t, b, 1), jnp.int32).at[1, 0, 0].set(1).at[1, 2, 0].set(-1)
    output = jnp.where(owner == 1, 0, 1)
    exp = Experience(
        obs=jax.random.normal(jax.random.key(1), (t, b, 4)),
        owner=owner,
        output=output,
        reward=jnp.ones((t, b, 1)),
        credit_next=jnp.full((t, b, 1), 50.0),
        done=jnp.zeros((t, b), bool),
    )
    params = {"lr": 0.01, "max_grad_norm": 10.0, "gamma": 0.99, "td_lambda": 0.9}
    out = learner.update(
        jax.random.key(2),
        learner.init(pop),
        pop,
        exp,
        jax.tree.map(jnp.float32, params),
    )
    before = pop.params["bid"]["params"]["Dense_0"]
    after = out.population.params["bid"]["params"]["Dense_0"]
    for agent, untouched, taken in [(0, 0, 1), (1, 1, 0)]:
        for name in ("kernel", "bias"):
            old = before[name][agent][..., untouched]
            np.testing.assert_array_equal(after[name][agent][..., untouched], old)
            moved = after[name][agent][..., taken] - before[name][agent][..., taken]
            assert float(jnp.min(jnp.abs(moved))) > 0.0
