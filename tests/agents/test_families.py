"""Agent families: the population's bids equal each agent's own bid function."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.agents.families import make_family, population_bids
from marketjax.agents.population import init_population


@pytest.mark.parametrize(
    ("name", "obs_dim"), [("linear", 4), ("linear", 50), ("mlp", 6)]
)
def test_population_bids_equal_per_agent_bids(name, obs_dim):
    family = make_family(name, obs_dim, 3, hidden=(8,))
    pop = init_population(jax.random.key(0), family, 5, 1.0)
    obs = jax.random.normal(jax.random.key(1), (7, obs_dim))
    bids = population_bids(family, pop.params, obs)
    assert bids.shape == (7, 5)
    for i in range(5):
        agent = jax.tree.map(lambda leaf, i=i: leaf[i], pop.params)
        own = jax.vmap(lambda o, agent=agent: family.bid(agent, o))(obs)
        np.testing.assert_allclose(bids[:, i], own, rtol=1e-5, atol=1e-6)


def test_constant_action_agents_are_dealt_every_action():
    family = make_family("mlp", 4, 3, hidden=(8,))
    pop = init_population(jax.random.key(0), family, 7, 1.0)
    np.testing.assert_array_equal(pop.params["action"], [0, 1, 2, 0, 1, 2, 0])
    assert bool(jnp.all(pop.alive))
