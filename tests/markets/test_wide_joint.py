"""Wide agents with a joint head (``wide.joint_action``): acting on a whole bundle.

An agent that controls every good of an episode acts with the greedy joint action of
its joint head ``Q_J f32[A^G]``; elsewhere each good gets its controller's per-good
proposal. The joint head learns from one more payoff stream, the whole bundle.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.algos import wide
from marketjax.core.config import ConfigError
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import as_params
from marketjax.markets.wide import (
    WideMarketParams,
    WideStepRecord,
    joint_decode,
    joint_index,
    make_q_networks,
)
from marketjax.markets.wide_clear import exercise, sole_controller


def test_joint_index_is_base_a_and_decodes_back():
    """A = 5, G = 2: (a_L, a_R) = (2, 3) is 2 + 3·5 = 17; all 25 round-trip."""
    assert int(joint_index(jnp.asarray([2, 3]), 5)) == 17
    every = jnp.arange(25, dtype=jnp.int32)
    decoded = joint_decode(every, 2, 5)
    np.testing.assert_array_equal(decoded[17], [2, 3])
    np.testing.assert_array_equal(joint_index(decoded, 5), every)


def test_sole_controller_names_the_agent_that_controls_every_good():
    controller = jnp.asarray([[1, 1, 1], [0, 2, 0], [3, 3, 3]], jnp.int32)
    np.testing.assert_array_equal(sole_controller(controller), [1, -1, 3])


def test_the_joint_proposal_acts_only_where_one_agent_controls_every_good():
    """Episode 0: agent 1 holds both goods and acts with its joint proposal (4, 4),
    not its per-good one (1, 2). Episode 1: agents 0 and 2 hold one good each and act
    with their per-good proposals; nobody's joint proposal reaches the world."""
    holdings = jnp.asarray(
        [[[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]]
    )  # [B=2, N=3, G=2]
    proposals = jnp.asarray(
        [[[0, 0], [1, 2], [0, 0]], [[3, 0], [0, 0], [0, 1]]], jnp.int32
    )
    joint = jnp.full((2, 3, 2), 4, jnp.int32)
    controller, action, _ = exercise(
        jax.random.key(0), holdings, proposals, jnp.float32(0.0), 5, False, joint
    )
    np.testing.assert_array_equal(controller, [[1, 1], [0, 2]])
    np.testing.assert_array_equal(action, [[4, 4], [3, 1]])
    # Without joint proposals the first wave's rule is unchanged.
    _, plain, _ = exercise(
        jax.random.key(0), holdings, proposals, jnp.float32(0.0), 5, False
    )
    np.testing.assert_array_equal(plain, [[1, 2], [3, 1]])


def test_the_per_good_values_are_the_first_outputs_of_the_joint_network():
    nets = make_q_networks(3, 2, 5, [8], True, "layer", joint=True)
    assert nets.joint_actions == 25
    params = nets.init(jax.random.key(1))
    obs = jnp.asarray([0.1, -0.4, 2.0])
    flat = nets.values(params, obs)
    assert flat.shape == (2 * 5 + 25,)
    np.testing.assert_array_equal(nets.apply(params, obs).reshape(-1), flat[:10])


CONFIG = {
    "name": "joint",
    "algo": "wide",
    "env": "Complements-4",
    "num_envs": 8,
    "total_env_steps": 8 * 16 * 4,
    "wide": {"num_agents": 3, "hidden": [8], "rollout_steps": 16},
}


def test_the_bundle_stream_is_owned_by_the_sole_controller_and_pays_the_sum():
    config = parse_train_config(
        {**CONFIG, "wide": {**CONFIG["wide"], "joint_action": True}}
    )
    market = wide.build_market(config, 2)
    t, b = 1, 2
    rec = WideStepRecord(
        obs=jnp.zeros((t, b, 2)),
        price=jnp.asarray([[[1.0, 2.0], [0.5, 0.5]]]),
        allocation=jnp.zeros((t, b, 3, 2)),
        controller=jnp.asarray([[[2, 2], [0, 1]]], jnp.int32),
        action=jnp.asarray([[[3, 3], [1, 2]]], jnp.int32),
        factor_reward=jnp.asarray([[[0.5, 0.5], [-0.5, -0.5]]]),
        done=jnp.zeros((t, b), bool),
        completed_return_sum=jnp.zeros((t,)),
        completed_count=jnp.zeros((t,)),
        equ_converged=jnp.ones((t, b), bool),
        equ_iterations=jnp.zeros((t, b), jnp.int32),
        equ_residual=jnp.zeros((t, b)),
        capped=jnp.zeros((t,)),
    )
    key = jax.random.key(0)
    trainer = wide.make_trainer(config)
    state = trainer.init(key, as_params(trainer.params)).market
    f32 = jnp.float32
    params = WideMarketParams(f32(0.99), f32(0.0), f32(0.1), f32(0.0))
    exp = market.experience(key, state.replace(obs=state.obs[:b]), rec, params)
    assert exp.owner.shape == (t, b, 3)  # two goods and the bundle
    np.testing.assert_array_equal(exp.owner[0, :, 2], [2, -1])
    # output: G·A + a_L + 5·a_R = 10 + 3 + 15
    assert int(exp.output[0, 0, 2]) == 28
    np.testing.assert_allclose(exp.reward[0, :, 2], [1.0, -1.0])


def test_a_joint_head_too_large_is_refused_naming_the_key():
    import functools

    from marketjax.envs.gymnax_adapter import register_env
    from marketjax.envs.multicatch import make_multicatch

    register_env("MultiCatch-8", functools.partial(make_multicatch, 8))
    bad = {
        **CONFIG,
        "env": "MultiCatch-8",  # 3^8 = 6561 joint actions
        "wide": {**CONFIG["wide"], "joint_action": True},
    }
    with pytest.raises(ConfigError, match=r"'wide\.joint_action' needs 3\^8 = 6561"):
        parse_train_config(bad)
