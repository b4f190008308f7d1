"""runner.mesh: the layout's shape and checks, PartitionSpecs from axis metadata,
and the multi-process flags (all on the test process's one device)."""

import re

import jax
import pytest
from jax.sharding import PartitionSpec as P

from marketjax import cli
from marketjax.algos.market_trainer import MarketTrainState
from marketjax.core.config import ConfigError, apply_overrides
from marketjax.experiment.distributed import distributed_args
from marketjax.experiment.mesh import leaf_specs, mesh_shape
from marketjax.experiment.registry import get_algorithm, parse_train_config


def _data(**extra):
    data = {
        "name": "m",
        "algo": "deep",
        "env": "Catch-bsuite",
        "num_envs": 8,
        "num_seeds": 4,
        "total_env_steps": 64,
        "deep": {"num_agents": 3, "family": "linear", "rollout_steps": 4},
    }
    return data | extra


def _config(*overrides, **extra):
    return parse_train_config(apply_overrides(_data(**extra), list(overrides)))


def test_default_mesh_is_every_device_for_seeds_as_before():
    config = _config()
    assert mesh_shape(config, 4, devices=4) == (4, 1)
    assert mesh_shape(config, 3, devices=4) == (1, 1)  # does not divide: one device
    assert mesh_shape(config, 4, devices=1) == (1, 1)
    off = _config("runner.shard_seeds=false")
    assert mesh_shape(off, 4, devices=4) == (1, 1)


def test_episodes_take_devices_and_seeds_get_the_rest():
    config = _config("runner.mesh.episodes=2")
    assert config.runner.mesh.episodes == 2
    assert mesh_shape(config, 4, devices=4) == (2, 2)
    assert mesh_shape(config, 4, devices=8) == (4, 2)
    explicit = _config("runner.mesh.seeds=1", "runner.mesh.episodes=4")
    assert mesh_shape(explicit, 4, devices=4) == (1, 4)


@pytest.mark.parametrize(
    ("overrides", "runs", "devices", "key"),
    [
        (["runner.mesh.episodes=4"], 4, 1, "'runner.mesh.episodes' (4) exceeds"),
        (
            ["runner.mesh.seeds=4", "runner.mesh.episodes=2"],
            4,
            4,
            "'runner.mesh.seeds' x 'runner.mesh.episodes' (4 x 2) exceeds",
        ),
        (["runner.mesh.seeds=3"], 4, 4, "'runner.mesh.seeds' (3) must divide"),
    ],
)
def test_a_mesh_that_does_not_fit_names_its_key(overrides, runs, devices, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        mesh_shape(_config(*overrides), runs, devices=devices)


def test_episodes_must_divide_num_envs_at_parse_time():
    with pytest.raises(ConfigError, match=r"'runner.mesh.episodes' \(3\) must divide"):
        _config("runner.mesh.episodes=3")


def test_ppo_minibatches_must_fit_a_shard():
    data = {
        "name": "p",
        "algo": "ppo",
        "env": "CartPole-v1",
        "num_envs": 8,
        "total_env_steps": 64,
        "ppo": {"num_steps": 2, "num_minibatches": 8},
    }
    parse_train_config(data)  # 16 samples, 8 minibatches: fine on one shard
    with pytest.raises(ConfigError, match=r"'ppo.num_minibatches' \(8\) must divide"):
        parse_train_config(apply_overrides(data, ["runner.mesh.episodes=4"]))


def test_cli_rejects_a_mesh_larger_than_the_devices_before_compiling(tmp_path, capsys):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_data(runner={"out_dir": str(tmp_path / "runs")})))
    code = cli.main(["train", str(path), "runner.mesh.episodes=4"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "'runner.mesh.episodes' (4)" in err
    assert not (tmp_path / "runs" / "m").exists()  # nothing written


def test_partition_specs_come_from_the_axis_metadata():
    config = _config()
    trainer = get_algorithm("deep").make_trainer(config)
    params = {k: 0.5 for k in trainer.params}
    state = jax.eval_shape(trainer.init, jax.random.key(0), params)
    assert isinstance(state, MarketTrainState)
    specs = leaf_specs(state, shard_episodes=True)
    market = specs.market
    assert market.obs == P("episodes", None)  # axes("B", "D")
    assert market.owner == P("episodes")  # axes("B")
    assert market.stats.episode_return == P("episodes")
    env_specs = jax.tree.leaves(market.env_state, is_leaf=lambda x: x is None)
    assert env_specs and all(s == P("episodes") for s in env_specs)
    assert market.population.wealth is None  # axes("N"): replicated over episodes
    assert market.books.bank.total is None and specs.key is None
    batched = jax.eval_shape(
        jax.vmap(trainer.init),
        jax.random.split(jax.random.key(0), 2),
        {k: jax.numpy.full(2, v) for k, v in params.items()},
    )
    run_specs = leaf_specs(batched, shard_episodes=True, run_axis=True)
    assert run_specs.market.obs == P("seeds", "episodes", None)
    assert run_specs.market.population.wealth == P("seeds")
    assert leaf_specs(batched, shard_episodes=False, run_axis=True).market.obs == P(
        "seeds"
    )


def test_distributed_flags_and_environment():
    assert distributed_args(None, None, None, environ={}) is None
    flags = distributed_args("localhost:1234", 2, 1, environ={})
    assert flags == {
        "coordinator_address": "localhost:1234",
        "num_processes": 2,
        "process_id": 1,
    }
    env = {
        "JAX_COORDINATOR_ADDRESS": "10.0.0.1:99",
        "JAX_NUM_PROCESSES": "4",
        "JAX_PROCESS_ID": "3",
    }
    assert distributed_args(None, None, None, environ=env)["process_id"] == 3
    assert distributed_args(None, None, 0, environ=env)["process_id"] == 0  # flag wins
    with pytest.raises(ConfigError, match="go together"):
        distributed_args("localhost:1234", None, None, environ={})
    with pytest.raises(ConfigError, match="'--process-id' must be in"):
        distributed_args("localhost:1234", 2, 2, environ={})
    with pytest.raises(ConfigError, match="'--coordinator' must be HOST:PORT"):
        distributed_args("localhost", 2, 0, environ={})
