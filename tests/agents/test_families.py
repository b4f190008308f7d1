"""Agent families: the population's bids equal each agent's own bid function."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.agents.families import MLP, make_family, population_bids
from marketjax.agents.population import init_population


@pytest.mark.parametrize(
    ("name", "obs_dim"), [("linear", 4), ("linear", 50), ("mlp", 6), ("conv", 48)]
)
def test_population_bids_equal_per_agent_bids(name, obs_dim):
    shape = (4, 4, 3) if name == "conv" else None
    family = make_family(name, obs_dim, 3, hidden=(8,), obs_shape=shape)
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


def test_conv_bid_reads_the_image_as_height_width_channels():
    # Hand-set weights: feature 0 copies channel 2 at each cell (centre tap), the
    # dense layer sums feature 0 over all cells: bid = number of channel-2 cells.
    # A flattening in any other layout would count other cells.
    h, w, c = 4, 5, 3
    family = make_family("conv", h * w * c, 3, hidden=(), obs_shape=(h, w, c))
    params = family.init(jax.random.key(0))
    net = params["bid"]["params"]
    kernel = np.zeros(net["Conv_0"]["kernel"].shape, np.float32)  # [3, 3, C, 16]
    kernel[1, 1, 2, 0] = 1.0
    dense = np.zeros(net["MLP_0"]["Dense_0"]["kernel"].shape, np.float32)
    dense[0::16, 0] = 1.0  # feature 0 of every cell (H, W, 16 flattened)
    net["Conv_0"] = {"kernel": jnp.asarray(kernel), "bias": jnp.zeros(16)}
    net["MLP_0"]["Dense_0"] = {"kernel": jnp.asarray(dense), "bias": jnp.zeros(1)}
    image = np.zeros((h, w, c), np.float32)
    image[0, 4, 2] = image[3, 0, 2] = image[2, 2, 2] = 1.0  # three on channel 2
    image[1, 1, 0] = image[0, 0, 1] = 1.0  # two elsewhere
    assert float(family.bid(params, jnp.asarray(image.reshape(-1)))) == 3.0
    assert family.constant_action


def test_conv_family_needs_an_image():
    with pytest.raises(ValueError, match=r"needs image observations \(H, W, C\)"):
        make_family("conv", 4, 2, obs_shape=(4,))


@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_mlp_norm_is_the_textbook_formula(norm):
    # One hidden layer of width 4, fresh init (scale 1, bias 0): the hidden
    # activation is relu(norm(x @ W + b)) with LayerNorm (a - mean) / sqrt(var + 1e-6)
    # or RMSNorm a / sqrt(mean(a^2) + 1e-6), flax's epsilon.
    net = MLP((4,), 1, True, norm)
    x = jnp.array([0.3, -1.2, 2.0], jnp.float32)
    params = net.init(jax.random.key(0), x)["params"]
    name = {"layer": "LayerNorm_0", "rms": "RMSNorm_0"}[norm]
    assert set(params) == {"Dense_0", "Dense_1", name}
    w, b = params["Dense_0"]["kernel"], params["Dense_0"]["bias"]
    a = x @ w + b
    if norm == "layer":
        h = (a - a.mean()) / jnp.sqrt(a.var() + 1e-6)
    else:
        h = a / jnp.sqrt(jnp.mean(a**2) + 1e-6)
    out = jax.nn.relu(h) @ params["Dense_1"]["kernel"][:, 0]
    out = out + params["Dense_1"]["bias"][0]
    assert jnp.allclose(net.apply({"params": params}, x), out, atol=1e-5)


def test_unknown_norm_is_refused():
    with pytest.raises(ValueError, match="unknown norm 'batch'"):
        make_family("mlp", 3, 2, (4,), norm="batch")


def test_deep_config_norm_reaches_the_bid_networks():
    from marketjax.algos.deep import make_trainer
    from marketjax.experiment.registry import parse_train_config

    data = {
        "name": "t",
        "algo": "deep",
        "env": "Catch-bsuite",
        "num_envs": 2,
        "total_env_steps": 64,
        "deep": {"num_agents": 3, "hidden": [4], "norm": "rms"},
    }
    from marketjax.experiment.runner import as_params

    trainer = make_trainer(parse_train_config(data))
    state = trainer.init(jax.random.key(0), as_params(trainer.params))
    names = set(
        jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)
    )
    assert any("RMSNorm_0" in n for n in names)
    assert not any("LayerNorm_0" in n for n in names)


def test_a_qnet_program_bids_its_best_value_and_acts_by_it():
    # No hidden layer: values = obs @ K + b, K = [[1, 0, 2], [0, 1, -1]],
    # b = (0, 0.5, 0). obs (1, 1): values (1, 1.5, 1), bid 1.5, action 1;
    # obs (2, 0): values (2, 0.5, 4), bid 4, action 2.
    family = make_family("qnet", 2, 3, hidden=())
    params = family.init(jax.random.key(0))
    params["bid"] = {
        "params": {
            "Dense_0": {
                "kernel": jnp.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]),
                "bias": jnp.array([0.0, 0.5, 0.0]),
            }
        }
    }
    key = jax.random.key(1)
    for obs, bid, action in [((1.0, 1.0), 1.5, 1), ((2.0, 0.0), 4.0, 2)]:
        obs = jnp.array(obs)
        assert float(family.bid(params, obs)) == bid
        assert int(family.act(key, params, obs)) == action
    np.testing.assert_allclose(
        family.values(params, jnp.array([1.0, 1.0])), [1, 1.5, 1]
    )
    assert not family.constant_action


def test_rule_conditions_care_with_the_given_probability_and_sizes_weigh_log_n():
    def draws(**kwargs):
        family = make_family("rules", 10, 6, **kwargs)
        return jax.vmap(family.init)(jax.random.split(jax.random.key(0), 4000))

    # care 0: every condition is "don't care"; care 1: every one cares.
    assert np.all(np.asarray(draws(rule_care_prob=0.0)["action"]["cond"]) == 0)
    assert np.all(np.asarray(draws(rule_care_prob=1.0)["action"]["cond"]) != 0)
    # the default 1/2 is the old draw: don't care 1/2, true 1/4, false 1/4
    cond = np.asarray(draws()["action"]["cond"])
    np.testing.assert_allclose(
        [np.mean(cond == v) for v in (0, 1, 2)], [0.5, 0.25, 0.25], atol=0.01
    )
    cond = np.asarray(draws(rule_care_prob=0.25)["action"]["cond"])
    np.testing.assert_allclose(
        [np.mean(cond == v) for v in (0, 1, 2)], [0.75, 0.125, 0.125], atol=0.01
    )
    # size weight 1 on the last feature (log n): the bid is exp(log_bid) · n
    params = draws(rule_size_weight=1.0)
    w = np.asarray(params["bid"]["w"])
    assert np.all(w[:, -1] == 1.0) and np.all(w[:, :-1] == 0.0)
    family = make_family("rules", 10, 6, rule_size_weight=1.0)
    one = jax.tree.map(lambda x: x[0], params)
    one["action"]["cond"] = jnp.zeros(10, jnp.int32)  # always matches
    obs = jnp.zeros(10).at[-1].set(jnp.log(8.0))
    expected = 8.0 * float(jnp.exp(one["bid"]["log_bid"]))
    np.testing.assert_allclose(float(family.bid(one, obs)), expected, rtol=1e-5)
    assert np.all(np.asarray(draws()["bid"]["w"]) == 0.0)


def test_names_moved_out_of_families_are_still_importable_from_it():
    # Baum's rules moved to agents/rules.py and the networks to agents/networks.py
    # (the trunk family's split); code that imported them from families.py, as
    # docs/reproductions.md still cites ``agents/families.rule_value``, keeps
    # working, and the names are the same objects as at their new homes.
    from marketjax.agents import base, families, networks, rules

    for name in (
        "rule_value",
        "rule_matches",
        "rule_family",
        "DONT_CARE",
        "REQUIRE_TRUE",
        "REQUIRE_FALSE",
    ):
        assert getattr(families, name) is getattr(rules, name)
    for name in ("MLP", "ConvMLP", "perturb_floats", "NORMS", "CONV_FEATURES"):
        assert getattr(families, name) is getattr(networks, name)
    assert families.CONV_FEATURES == 16
    assert families.AgentFamily is base.AgentFamily
