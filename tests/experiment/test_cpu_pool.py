"""runner.cpu_threads: XLA's CPU pool sized before JAX starts, results unchanged."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from marketjax.core.config import ConfigError
from marketjax.experiment import cpu_pool
from marketjax.experiment.registry import parse_train_config

MARKETJAX = str(Path(sys.executable).parent / "marketjax")


@pytest.mark.parametrize(
    ("setting", "envs", "seeds", "networks", "threads"),
    [
        ("auto", 4, 3, 1, 1),  # ppo_cartpole
        ("auto", 64, 3, 12, 1),  # capitalism_catch: 2,304 episode-networks
        ("auto", 256, 2, 6, 1),  # 3,072: still small
        ("auto", 256, 2, 7, None),  # 3,584: XLA's default
        ("auto", 256, 1, 64, None),  # 64 MLP bidders on 256 episodes
        ("auto", 4096, 1, 1, None),
        (0, 4, 1, 1, None),  # 0: one per core, whatever the size
        (3, 4096, 1, 1, 3),
    ],
)
def test_auto_takes_one_thread_for_small_programs_only(
    setting, envs, seeds, networks, threads
):
    assert cpu_pool.pool_threads(setting, envs, seeds, networks) == threads


@pytest.mark.parametrize(
    ("section", "networks"),
    [
        ({"num_agents": 64}, 64),  # mlp bids: one network per agent
        ({"num_agents": 64, "family": "qnet"}, 64),
        ({"num_agents": 64, "family": "trunk"}, 1),  # one shared trunk
        ({"num_agents": 64, "family": "linear_policy"}, 1),
        ({"num_agents": "auto"}, 1),  # unknown before the env: counted as 1
        ({}, 1),
    ],
)
def test_networks_per_episode_count_each_agents_own_network(section, networks):
    assert cpu_pool.networks_per_episode({"algo": "deep", "deep": section}) == networks
    assert cpu_pool.networks_per_episode({"algo": "ppo", "ppo": section}) == 1


def test_every_shipped_config_gets_the_pool_it_was_measured_fastest_with():
    # docs/throughput.md: one thread for the classic-control and Catch configs,
    # XLA's default for the MinAtar ones (runner.cpu_threads: 0 in each)
    from marketjax.experiment.config import load_yaml

    one = ["ppo_cartpole", "deep_cartpole", "wide_cartpole", "deep_catch"]
    one += ["capitalism_catch", "capitalism_cartpole", "deep_cartpole_trunk64"]
    default = ["ppo_breakout_minatar", "deep_breakout_minatar"]
    default += ["wide_breakout_minatar", "chang_bandit"]
    for name in one + default:
        raw = load_yaml(f"configs/{name}.yaml")
        want = 1 if name in one else None
        assert cpu_pool.threads_for_train(raw) == want, name


def test_raw_configs_are_read_with_the_schemas_defaults():
    # num_envs 16 and one seed by default: one thread
    assert cpu_pool.threads_for_train({"algo": "deep"}) == 1
    assert cpu_pool.threads_for_train({"num_envs": 4096}) is None
    assert cpu_pool.threads_for_train({"runner": {"cpu_threads": 2}}) == 2
    # a value the parse will reject leaves XLA's default (the parse names it)
    assert cpu_pool.threads_for_train({"runner": {"cpu_threads": "many"}}) is None
    # a comparison shares one process: one thread only if every run asks for one
    small, big = {"num_envs": 4}, {"num_envs": 4096}
    assert cpu_pool.threads_for_cases([small, small]) == 1
    assert cpu_pool.threads_for_cases([small, big]) is None


def test_a_sweeps_points_count_as_runs_of_the_same_program():
    # 256 episodes x 4 seeds = 1,024 per point; the runner vmaps 4 points x 4
    # seeds into one program of 4,096 episodes: XLA's default pool, as for 16
    # seeds without a sweep. One seed's points run one at a time.
    sweep = {"deep.lr": [1e-3, 3e-4, 1e-4, 3e-5]}
    assert cpu_pool.threads_for_train({"num_envs": 256, "num_seeds": 4}) == 1
    big = {"num_envs": 256, "num_seeds": 4, "sweep": sweep}
    assert cpu_pool.threads_for_train(big) is None
    three = {"num_envs": 256, "num_seeds": 4, "sweep": {"deep.lr": [1, 2, 3]}}
    assert cpu_pool.threads_for_train(three) == 1  # 3,072: still small
    one_seed = {"num_envs": 256, "num_seeds": 1, "sweep": sweep}
    assert cpu_pool.threads_for_train(one_seed) == 1
    assert cpu_pool.threads_for_cases([{"num_envs": 64}, big]) is None
    # a grid the parse will reject counts as one point (the parse names it)
    assert cpu_pool.sweep_size({"sweep": ["deep.lr"]}) == 1


def test_the_users_pjrt_nproc_wins_and_a_started_backend_is_left_alone(monkeypatch):
    from jax._src import xla_bridge

    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)
    env = {}
    assert cpu_pool.set_pool_threads(1, env) == "1" and env == {"PJRT_NPROC": "1"}
    env = {"PJRT_NPROC": "4"}
    assert cpu_pool.set_pool_threads(1, env) == "4"
    assert cpu_pool.set_pool_threads(None, {}) == "default"
    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: True)
    env = {}
    assert cpu_pool.set_pool_threads(1, env) == "default" and env == {}


def test_a_users_nproc_wins_too_and_the_record_counts_every_cpu_device(monkeypatch):
    # XLA's CPU client reads PJRT_NPROC, else NPROC, and runs at least one pool
    # thread per CPU device (runner.mesh on forced host devices): the record says
    # the pool the run had, not the variable.
    from jax._src import xla_bridge

    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)
    env = {"NPROC": "4"}
    assert cpu_pool.set_pool_threads(1, env) == "4" and env == {"NPROC": "4"}
    assert cpu_pool.pool_record({"PJRT_NPROC": "1"}, cpu_devices=2) == "2"
    assert cpu_pool.pool_record({"PJRT_NPROC": "3"}, cpu_devices=2) == "3"
    assert cpu_pool.pool_record({"PJRT_NPROC": "x", "NPROC": "2"}) == "2"
    assert cpu_pool.pool_record({}, cpu_devices=2) == "default"
    count = (
        "from marketjax.experiment import cpu_pool; cpu_pool.set_pool_threads(1);"
        "import jax, jax.numpy as jnp, os; jnp.ones(2).sum().block_until_ready();"
        "n = sum(open(f'/proc/self/task/{t}/comm').read().strip() == 'tf_XLAEigen' "
        "for t in os.listdir('/proc/self/task'));"
        "cpus = len(jax.local_devices(backend='cpu'));"
        "print(n, cpu_pool.pool_record(os.environ, cpus))"
    )
    env = {k: v for k, v in os.environ.items() if k not in cpu_pool.USER_VARS}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    out = subprocess.run(
        [sys.executable, "-c", count], env=env, capture_output=True, text=True
    )
    assert out.stdout.split() == ["2", "2"], out.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [(-1, "'runner.cpu_threads' must be >= 0"), ("many", "'runner.cpu_threads'")],
)
def test_bad_thread_counts_are_named(value, message):
    data = {
        "name": "t",
        "algo": "deep",
        "env": "CartPole-v1",
        "total_env_steps": 100,
        "runner": {"cpu_threads": value},
    }
    with pytest.raises(ConfigError, match=message):
        parse_train_config(data)


def test_the_pool_really_has_one_thread_and_the_numbers_do_not_change(tmp_path):
    """Two CLI runs of one tiny config, one with XLA's pool at one thread (auto)
    and one at the default: the pool is what was asked for (this jaxlib still
    reads PJRT_NPROC), and every metric but the clock is identical."""
    env = {k: v for k, v in os.environ.items() if k not in cpu_pool.USER_VARS}
    count = (
        "from marketjax.experiment import cpu_pool; cpu_pool.set_pool_threads(1);"
        "import jax.numpy as jnp, os; jnp.ones(2).sum().block_until_ready();"
        "print(sum(open(f'/proc/self/task/{t}/comm').read().strip() == "
        "'tf_XLAEigen' for t in os.listdir('/proc/self/task')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", count], env=env, capture_output=True, text=True
    )
    assert out.stdout.strip() == "1", out.stderr
    data = {
        "name": "pool",
        "algo": "deep",
        "env": "Catch-bsuite",
        "num_envs": 8,
        "total_env_steps": 8 * 8 * 4,
        "runner": {"num_chunks": 2, "out_dir": str(tmp_path), "progress": False},
        "deep": {"num_agents": 3, "hidden": [8], "rollout_steps": 8},
    }
    config = tmp_path / "pool.yaml"
    config.write_text(yaml.safe_dump(data))
    rows = {}
    for name, threads in (("one", "auto"), ("default", "0")):
        command = [MARKETJAX, "train", str(config), f"name={name}"]
        result = subprocess.run(
            [*command, f"runner.cpu_threads={threads}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        run = tmp_path / name
        summary = json.loads((run / "summary.json").read_text())
        assert summary["cpu_pool_threads"] == ("1" if name == "one" else "default")
        rows[name] = [
            {k: v for k, v in json.loads(line).items() if k != "wall_s"}
            for line in (run / "metrics.jsonl").read_text().splitlines()
        ]
    assert rows["one"] == rows["default"]
