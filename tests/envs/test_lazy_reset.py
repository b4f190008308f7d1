"""``env_reset: lazy`` (issue 17): the auto-reset computed only at steps where some
episode ended gives gymnax's episodes; the predicate is shared by the runner's
vmapped runs, so the reset stays a branch (``cond``) under ``vmap``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marketjax.core.axes import RUN_AXIS, any_across_runs
from marketjax.envs.gymnax_adapter import BatchedEnv
from marketjax.experiment.config import ConfigError
from marketjax.experiment.registry import parse_train_config


def rollout(env: BatchedEnv, runs: int, steps: int):
    """Observations, rewards and dones of ``steps`` steps of ``runs`` vmapped runs
    (axis named as the runner names it) under a fixed action pattern."""
    obs, state = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), runs))
    step = jax.jit(jax.vmap(env.step, axis_name=RUN_AXIS))
    out = []
    for t in range(steps):
        action = (jnp.arange(runs * env.num_envs).reshape(runs, -1) + t // 3) % 2
        keys = jax.random.split(jax.random.key(t + 1), runs)
        obs, state, reward, done, _ = step(keys, state, action)
        out.append((np.asarray(obs), np.asarray(reward), np.asarray(done)))
    return out


@pytest.mark.parametrize("name", ["Catch-bsuite", "CartPole-v1"])
def test_lazy_resets_give_gymnaxs_episodes(name):
    """Same keys, same steps, same resets: Catch (integer arithmetic) to the bit;
    CartPole's floats to the last bits of the fused arithmetic, with the same
    episode ends at every step of 400 (dozens of resets)."""
    eager_env, lazy_env = (BatchedEnv(name, 4, reset=r) for r in ("eager", "lazy"))
    assert lazy_env.lazy and not eager_env.lazy  # gymnax's own step: lazy applies
    eager, lazy = rollout(eager_env, 3, 400), rollout(lazy_env, 3, 400)
    ends = sum(int(d.sum()) for _, _, d in eager)
    assert ends > 30
    for (o1, r1, d1), (o2, r2, d2) in zip(eager, lazy, strict=True):
        np.testing.assert_array_equal(d1, d2)
        np.testing.assert_array_equal(r1, r2)
        if name == "Catch-bsuite":
            np.testing.assert_array_equal(o1, o2)
        else:
            np.testing.assert_allclose(o1, o2, rtol=0, atol=1e-5)


def test_one_predicate_for_all_runs_keeps_the_reset_a_branch():
    def f(flags):
        return jax.lax.cond(
            any_across_runs(jnp.any(flags)), jnp.negative, jnp.abs, flags
        )

    x = jnp.array([[False, False], [True, False], [False, False]])
    vmapped = jax.vmap(lambda v: f(v.astype(jnp.float32) - 0.5), axis_name=RUN_AXIS)
    assert "cond[" in str(jax.make_jaxpr(vmapped)(x))
    # Run 1 has a True, so every run takes the same (negating) branch.
    np.testing.assert_array_equal(vmapped(x), 0.5 - x.astype(jnp.float32))
    # Without the named axis the flag is the run's own.
    np.testing.assert_array_equal(any_across_runs(jnp.array(False)), False)


def test_env_reset_is_checked_before_compiling():
    data = {"name": "x", "algo": "ppo", "env": "CartPole-v1", "total_env_steps": 10}
    assert parse_train_config({**data, "env_reset": "lazy"}).env_reset == "lazy"
    with pytest.raises(ConfigError, match="env_reset"):
        parse_train_config({**data, "env_reset": "sometimes"})
