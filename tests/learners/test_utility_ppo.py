"""utility_ppo: per-primitive pooling of clones and the direction of its updates."""

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.agents import beta_bidder
from marketjax.agents.population import Population
from marketjax.learners.utility_ppo import BidExperience, per_primitive, utility_ppo

PARAMS = {
    "clip_eps": 0.2,
    "entropy_coef": 0.0,
    "policy_lr": 1e-2,
    "critic_lr": 5e-3,
    "critic_l2": 0.0,
    "max_grad_norm": 40.0,
}


def test_clone_columns_pool_to_their_primitive():
    # T=1, B=2, K=2, N=3: clone c runs primitive c mod 3.
    bids = jnp.arange(12, dtype=jnp.float32).reshape(1, 2, 6)
    obs = jnp.array([[[1.0], [2.0]]])
    o, b, _ = per_primitive(BidExperience(obs, bids, bids), 3)
    np.testing.assert_array_equal(b[0], [0, 3, 6, 9])  # episode 0 clones 0, 3; ep. 1
    np.testing.assert_array_equal(b[2], [2, 5, 8, 11])
    np.testing.assert_array_equal(o[1, :, 0], [1, 1, 2, 2])


def test_bids_move_toward_the_utility_maximiser():
    """A primitive whose utility rewards high bids (u = bid) raises its mean bid; one
    rewarded for low bids (u = −bid) lowers it."""
    n, m = 2, 512
    prims = jax.vmap(lambda k: beta_bidder.init_primitive(k, 1, 16))(
        jax.random.split(jax.random.key(0), n)
    )
    pop = Population(
        prims, jnp.zeros(n), jnp.ones(n, bool), jnp.zeros(n, int), -jnp.ones(n, int)
    )
    learner = utility_ppo(n, minibatch_size=128)
    state = learner.init(pop)
    obs = jnp.ones((m, 1, 1))
    for i in range(10):
        bids = beta_bidder.society_bids(
            jax.random.key(i), pop.params["policy"], obs[:, 0], 1
        )
        util = bids * jnp.array([[1.0, -1.0]])
        exp = BidExperience(obs, bids[:, None], util[:, None])
        out = learner.update(jax.random.key(100 + i), state, pop, exp, PARAMS)
        pop, state = out.population, out.state
    means = jax.vmap(beta_bidder.mean_bid, in_axes=(0, None))(
        pop.params["policy"], jnp.ones(1)
    )
    assert float(means[0]) > 0.6 and float(means[1]) < 0.4
