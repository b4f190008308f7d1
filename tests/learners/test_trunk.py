"""The trunk family: one shared MLP, a linear head per agent (issue 17).

Exact checks of what sharing must not change: each head learns its own mean
error, the trunk the mean over all owned samples, entrants keep the trunk, and
the population's bids are every agent's own bid.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.agents.families import make_family, population_bids
from marketjax.agents.population import PopulationParams, init_population, renew
from marketjax.learners.base import Experience
from marketjax.learners.q_lambda import q_lambda
from marketjax.learners.trunk_loss import sum_over_slices, trunk_loss

LEARN = {"lr": 0.01, "max_grad_norm": 10.0, "gamma": 0.9, "td_lambda": 0.5}


def _family_and_population(n=4, obs_dim=3, seed=0):
    family = make_family("trunk", obs_dim, 2, hidden=(5, 6))
    return family, init_population(jax.random.key(seed), family, n, 10.0)


def _head_value(p, feature):
    return (feature @ p["w"] + p["c"])[None]


def test_trunk_bids_are_each_agents_head_on_the_shared_features():
    family, pop = _family_and_population(n=5)
    obs = jax.random.normal(jax.random.key(1), (7, 3))
    bids = population_bids(family, pop.params, obs, pop.shared)
    assert bids.shape == (7, 5)
    phi = family.features(pop.shared, obs)  # f32[7, 6]
    assert phi.shape == (7, 6)
    for i in range(5):
        agent = jax.tree.map(lambda leaf, i=i: leaf[i], pop.params)
        own = jax.vmap(lambda f, agent=agent: family.bid(agent, f))(phi)
        np.testing.assert_allclose(bids[:, i], own, rtol=1e-5, atol=1e-6)
    # one trunk for everyone: agents differ only in their heads
    assert jax.tree.leaves(pop.shared)[0].ndim <= 2
    np.testing.assert_array_equal(pop.params["action"], [0, 1, 0, 1, 0])


def test_trunk_bids_without_the_shared_trunk_are_one_clear_error():
    family, pop = _family_and_population()
    with pytest.raises(ValueError, match=r"shared=population\.shared"):
        population_bids(family, pop.params, jnp.zeros((2, 3)))


def test_other_families_share_nothing_and_draw_the_same_agents_as_before():
    family = make_family("mlp", 3, 2, hidden=(5,))
    pop = init_population(jax.random.key(0), family, 4, 1.0)
    assert pop.shared == {}
    # the shared draw uses its own key: the agents are those vmap(init) draws
    direct = jax.vmap(family.init)(jax.random.split(jax.random.key(0), 4))
    np.testing.assert_array_equal(
        pop.params["bid"]["params"]["Dense_0"]["kernel"],
        direct["bid"]["params"]["Dense_0"]["kernel"],
    )


def test_trunk_loss_gives_each_head_its_own_mean_and_the_trunk_the_overall_mean():
    # Owners 0, 0, 0, 1, -1 (nobody), 2: agent 0 holds 3 samples, agents 1 and 2
    # one each, agent 3 none. Compared with the two losses written out directly.
    family, pop = _family_and_population(n=4)
    heads, shared = pop.params["bid"], pop.shared
    obs = jax.random.normal(jax.random.key(2), (6, 3))
    y = jnp.array([1.0, -2.0, 0.5, 3.0, 9.0, -1.0])
    owner = jnp.array([0, 0, 0, 1, -1, 2])
    held = owner >= 0
    safe = jnp.maximum(owner, 0)
    counts = jnp.array([3.0, 1.0, 1.0, 0.0])
    weight = jnp.where(held, 1.0 / jnp.maximum(counts[safe], 1.0), 0.0)
    share = counts[safe] / 5.0
    output = jnp.zeros((6,), jnp.int32)
    g_heads, g_trunk = jax.grad(
        lambda h, s: trunk_loss(
            _head_value, family.features, h, s, obs, safe, output, y, weight, share
        ),
        argnums=(0, 1),
    )(heads, shared)

    def agent_mean(h_i, i):
        v = family.features(shared, obs) @ h_i["w"] + h_i["c"]
        err = jnp.where(owner == i, v - y, 0.0)
        return jnp.sum(err**2) / counts[i]

    for i in range(3):
        h_i = jax.tree.map(lambda leaf, i=i: leaf[i], heads)
        want = jax.grad(agent_mean)(h_i, i)
        got = jax.tree.map(lambda leaf, i=i: leaf[i], g_heads)
        np.testing.assert_allclose(got["w"], want["w"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["c"], want["c"], rtol=1e-5)
    np.testing.assert_array_equal(g_heads["w"][3], np.zeros(6))  # held nothing

    def overall_mean(s):
        v = jnp.sum(family.features(s, obs) * heads["w"][safe], -1) + heads["c"][safe]
        return jnp.sum(jnp.where(held, (v - y) ** 2, 0.0)) / 5.0

    want = jax.grad(overall_mean)(shared)
    for got_leaf, want_leaf in zip(
        jax.tree.leaves(g_trunk), jax.tree.leaves(want), strict=True
    ):
        np.testing.assert_allclose(got_leaf, want_leaf, rtol=1e-4, atol=1e-6)


def test_sum_over_slices_pads_with_rows_of_no_weight():
    x = jnp.arange(11.0)
    w = jnp.ones((11,))

    def fn(cols):
        return jnp.sum(cols[0] * cols[1])

    assert float(sum_over_slices(fn, (x, w), 3)) == 55.0  # 4 slices, 1 padded row
    assert float(sum_over_slices(fn, (x, w), 100)) == 55.0


def _learner():
    family, pop = _family_and_population(n=4)
    learner = q_lambda(
        lambda p, f: family.bid({"bid": p}, f)[None],
        lambda params: params["bid"],
        lambda params, bid: {**params, "bid": bid},
        num_updates=1,
        epochs=1,
        minibatches=1,
        capacity_factor=1.0,
        anneal_lr=False,
        features=family.features,
    )
    return family, pop, learner


def test_a_q_lambda_update_moves_the_trunk_and_only_the_heads_that_held():
    _, pop, learner = _learner()
    t, b = 3, 2
    owner = jnp.array([[0, 1], [0, 1], [-1, 0]], jnp.int32)[..., None]  # no 2, 3
    exp = Experience(
        obs=jax.random.normal(jax.random.key(3), (t, b, 3)),
        owner=owner,
        output=jnp.zeros((t, b, 1), jnp.int32),
        reward=jnp.ones((t, b, 1)),
        credit_next=jnp.full((t, b, 1), 4.0),
        done=jnp.zeros((t, b), bool),
    )
    state = learner.init(pop)
    out = learner.update(
        jax.random.key(4), state, pop, exp, jax.tree.map(jnp.float32, LEARN)
    )
    before, after = pop.params["bid"], out.population.params["bid"]
    for i in (0, 1):
        assert float(jnp.max(jnp.abs(after["w"][i] - before["w"][i]))) > 0.0
    for i in (2, 3):  # held nothing: zero gradient, Adam leaves them in place
        np.testing.assert_array_equal(after["w"][i], before["w"][i])
        np.testing.assert_array_equal(after["c"][i], before["c"][i])
    moved = jax.tree.map(
        lambda a, b: float(jnp.max(jnp.abs(a - b))), out.population.shared, pop.shared
    )
    assert min(jax.tree.leaves(moved)) > 0.0  # every trunk leaf learned
    # replacing slot 1 resets its head's Adam state, never the trunk's
    heads_state, trunk_state = learner.reset(
        out.state, jnp.array([False, True, False, False]), out.population
    )
    fresh_heads, _ = learner.init(out.population)
    for got, fresh, old in zip(
        jax.tree.leaves(heads_state),
        jax.tree.leaves(fresh_heads),
        jax.tree.leaves(out.state[0]),
        strict=True,
    ):
        if got.ndim:
            np.testing.assert_array_equal(got[1], fresh[1])
            np.testing.assert_array_equal(got[0], old[0])
    for got, old in zip(
        jax.tree.leaves(trunk_state), jax.tree.leaves(out.state[1]), strict=True
    ):
        np.testing.assert_array_equal(got, old)


def test_entrants_keep_the_trunk_and_get_their_own_heads():
    family, pop = _family_and_population(n=4)
    pop = pop.replace(wealth=jnp.array([0.5, 20.0, 0.2, 9.0]), age=jnp.ones(4, int))
    params = PopulationParams(
        allowance=jnp.float32(5.0),
        exit_threshold=jnp.float32(1.0),
        clone_prob=jnp.float32(0.0),
        mutation_scale=jnp.float32(0.1),
        min_age=jnp.int32(1),
    )
    out = renew(jax.random.key(5), family, pop, params)
    np.testing.assert_array_equal(out.replaced, [True, False, True, False])
    for a, b in zip(
        jax.tree.leaves(out.population.shared), jax.tree.leaves(pop.shared), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    w_new, w_old = out.population.params["bid"]["w"], pop.params["bid"]["w"]
    for i in (0, 2):  # fresh heads, drawn anew
        assert float(jnp.max(jnp.abs(w_new[i] - w_old[i]))) > 0.0
    np.testing.assert_array_equal(w_new[1], w_old[1])


def test_the_trunk_family_needs_a_hidden_layer():
    with pytest.raises(ValueError, match="at least one hidden layer"):
        make_family("trunk", 4, 2, hidden=())
