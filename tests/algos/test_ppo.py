"""PPO through the shared runner: config errors, learning, Box actions, checkpoints."""

import jax
import numpy as np
import pytest

from marketjax.experiment.checkpoint import load_checkpoint, save_checkpoint
from marketjax.experiment.config import ConfigError
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import compile_run, make_train, seed_keys


def _config(env, steps, num_envs=8, num_chunks=4, **ppo):
    data = {
        "name": "t",
        "algo": "ppo",
        "env": env,
        "total_env_steps": steps,
        "num_envs": num_envs,
        "num_seeds": 2,
        "runner": {"num_chunks": num_chunks, "progress": False, "checkpoint": False},
        "ppo": {"num_steps": 32, "hidden": [32, 32], **ppo},
    }
    return parse_train_config(data)


def test_bad_keys_name_the_key():
    with pytest.raises(ConfigError, match=r"ppo\.clip_epss"):
        _config("CartPole-v1", 100, clip_epss=0.1)
    with pytest.raises(ConfigError, match=r"ppo\.num_minibatches"):
        _config("CartPole-v1", 100, num_minibatches=5)
    with pytest.raises(ConfigError, match=r"ppo\.gamma"):
        _config("CartPole-v1", 100, gamma=1.5)


def test_cartpole_learns_in_seconds():
    config = _config("CartPole-v1", 24_576, lr=2.5e-3)
    _, metrics = jax.jit(jax.vmap(make_train(config)))(seed_keys(config))
    returns = np.asarray(metrics["mean_return"])  # [seeds, chunks]
    assert returns.shape == (2, 4)
    assert np.all(np.isfinite(returns))
    # random play averages ~22; every seed must clearly improve
    assert np.all(returns[:, 0] < 80), returns
    assert np.all(returns[:, -1] > 2.5 * returns[:, 0]), returns
    assert np.all(returns[:, -1] > 100), returns


def test_pendulum_continuous_finite_and_checkpoint_round_trip(tmp_path):
    # 2 chunks of 4 updates x 64 steps: every chunk sees 200-step episodes end
    config = _config(
        "Pendulum-v1",
        4 * 64 * 8,
        num_envs=4,
        num_chunks=2,
        num_steps=64,
        log_std_init=-0.5,
    )
    run = compile_run(config)
    assert run.trace_count == 1
    state = run.init(seed_keys(config), run.params)
    state, metrics = run.chunk(state, run.params)
    state, metrics = run.chunk(state, run.params)
    assert run.trace_count == 1
    for name, value in metrics.items():
        assert np.all(np.isfinite(np.asarray(value))), name
    assert np.all(np.asarray(metrics["mean_return"]) < 0)  # Pendulum rewards <= 0
    leaves = jax.tree.leaves(state.params)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves)

    path = tmp_path / "ck.msgpack"
    save_checkpoint(path, state, {"chunks_done": 2})
    restored, meta = load_checkpoint(path, state)
    assert meta == {"chunks_done": 2}
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    # identical continuation from the restored state
    a, ma = run.chunk(state, run.params)
    b, mb = run.chunk(restored, run.params)
    np.testing.assert_array_equal(ma["mean_return"], mb["mean_return"])
    np.testing.assert_array_equal(np.asarray(a.obs), np.asarray(b.obs))
