"""No batched LAPACK call inside a compiled program (it deadlocks XLA's CPU pool).

jaxlib's batched QR (``lapack_sgeqrf_ffi`` → ``ParallelBatchMap``) blocks a pool
thread on sub-tasks queued to the same pool; PPO's orthogonal init used it under
``jit(vmap(init))`` and hung. These tests fail if any LAPACK custom call returns.
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from marketjax.algos.ppo.networks import gram_schmidt, orthogonal
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import compile_run, make_train, seed_keys


def _ppo(env="CartPole-v1"):
    return parse_train_config(
        {
            "name": "p",
            "algo": "ppo",
            "env": env,
            "num_envs": 4,
            "num_seeds": 3,
            "total_env_steps": 512,
            "ppo": {"num_steps": 32},
        }
    )


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_ppo_programs_contain_no_lapack_call(env):
    config = _ppo(env)
    train = jax.vmap(make_train(config))
    text = jax.jit(train).lower(seed_keys(config)).as_text()
    assert "lapack" not in text.lower() and "geqrf" not in text.lower()


def test_orthogonal_init_is_orthogonal_and_equals_qr_with_sign_fix():
    key = jax.random.key(3)
    for shape in [(6, 4), (4, 6), (8, 8)]:
        w = np.asarray(orthogonal(2.0)(key, shape))
        small = min(shape)
        gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
        np.testing.assert_allclose(gram, 4.0 * np.eye(small), atol=1e-5)
        ref = np.asarray(nn.initializers.orthogonal(2.0)(key, shape))
        np.testing.assert_allclose(w, ref, atol=1e-5)  # flax's (LAPACK) result


def test_gram_schmidt_matches_numpy_qr():
    a = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    np.testing.assert_allclose(np.asarray(gram_schmidt(jnp.asarray(a))), q, atol=1e-5)


def test_many_vmapped_ppo_inits_finish_on_a_two_thread_pool():
    """The launch pattern that hung: jit(vmap(init)) of PPO, repeatedly, on 2
    threads. Bounded by a timeout: a deadlock fails instead of hanging."""
    code = textwrap.dedent(
        """
        import jax
        from marketjax.experiment.registry import parse_train_config
        from marketjax.experiment.runner import compile_run, seed_keys
        config = parse_train_config({"name": "p", "algo": "ppo",
            "env": "CartPole-v1", "num_envs": 4, "num_seeds": 4,
            "total_env_steps": 512, "ppo": {"num_steps": 32}})
        run = compile_run(config)
        for i in range(40):
            keys = jax.random.split(jax.random.key(i), 4)
            jax.block_until_ready(run.init(keys, run.params))
        print("done")
        """
    )
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
        "NPROC": "2",
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("done")


def test_compile_run_initialises_every_seed():
    run = compile_run(_ppo())
    state = run.init(seed_keys(run.config), run.params)
    kernels = state.params["params"]["Dense_0"]["kernel"]
    assert kernels.shape[0] == 3
    assert not np.allclose(kernels[0], kernels[1])
