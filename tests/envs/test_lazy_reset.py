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
from marketjax.experiment.runner import over_runs


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


def test_lazy_resets_at_a_time_limit_with_box_actions():
    """Pendulum-v1 never terminates and is truncated at step 200: with Box actions
    every episode of 2 runs x 3 ends at step 200 (index 199) and nowhere else in
    210 steps, and the lazy step returns gymnax's ``truncated``, ``terminated``
    and ``final_observation`` (what PPO bootstraps a cut episode from)."""
    outs = []
    for rule in ("eager", "lazy"):
        env = BatchedEnv("Pendulum-v1", 3, reset=rule)
        assert env.lazy == (rule == "lazy")
        obs, state = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), 2))

        def one(carry, t, env=env):
            state, _ = carry
            action = (
                jnp.sin(t.astype(jnp.float32) + jnp.arange(6.0)).reshape(2, 3, 1) * 2.0
            )  # f32[2, 3, 1]
            keys = jax.random.split(jax.random.fold_in(jax.random.key(1), t), 2)
            obs, state, reward, done, info = jax.vmap(env.step, axis_name=RUN_AXIS)(
                keys, state, action
            )
            keep = (obs, reward, done, info["truncated"], info["terminated"])
            return (state, obs), (*keep, info["final_observation"])

        _, ys = jax.jit(lambda c, one=one: jax.lax.scan(one, c, jnp.arange(210)))(
            (state, obs)
        )
        outs.append(jax.device_get(ys))
    (o1, r1, d1, tr1, te1, f1), (o2, r2, d2, tr2, te2, f2) = outs
    expected = np.zeros((210, 2, 3), bool)
    expected[199] = True
    np.testing.assert_array_equal(d1, expected)
    for a, b in ((d1, d2), (tr1, tr2), (te1, te2)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(tr2, expected)
    assert not te2.any()
    for a, b in ((o1, o2), (r1, r2), (f1, f2)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    # The reset really happened: the observation after step 200 is a fresh
    # episode's, not the final one (which the info keeps).
    assert np.abs(o2[199] - f2[199]).max() > 0.1


def _count_conds(env: BatchedEnv, lift) -> int:
    """``cond`` equations in the jaxpr of one step of 3 runs lifted by ``lift``."""

    def chunk(state, params):
        key, env_state = state
        action = jnp.zeros(env.num_envs, jnp.int32)
        _, env_state, _, done, _ = env.step(key, env_state, action)
        return (key, env_state), done

    keys = jax.random.split(jax.random.key(0), 3)
    _, env_state = jax.vmap(env.reset)(keys)
    return str(jax.make_jaxpr(lift(chunk))((keys, env_state), {})).count("cond[")


def test_the_runners_vmap_keeps_the_lazy_reset_a_branch():
    """The runner names its vmap over runs (``over_runs``), so the lazy reset of a
    real env is a ``cond`` there; under a vmap without the name (the device
    mesh's) it is a select of both sides, as eager; CartPole has no cond itself."""
    eager, lazy = (BatchedEnv("CartPole-v1", 4, reset=r) for r in ("eager", "lazy"))
    assert _count_conds(eager, lambda f: over_runs(f, 3)) == 0
    assert _count_conds(lazy, lambda f: over_runs(f, 3)) == 1
    assert _count_conds(lazy, lambda f: over_runs(f, 3, per_run=True)) == 1
    assert _count_conds(lazy, jax.vmap) == 0


def test_an_env_with_its_own_step_keeps_it():
    """DeepSea-bsuite overrides gymnax's ``step``: lazy resets do not apply."""
    assert not BatchedEnv("DeepSea-bsuite", 2, reset="lazy").lazy
    with pytest.raises(ValueError, match="reset must be one of"):
        BatchedEnv("CartPole-v1", 2, reset="never")


def test_a_lazy_reset_that_cannot_apply_is_a_note():
    """``env_reset: lazy`` on an env with its own step (DeepSea-bsuite) is said
    before the run starts, not silently ignored; where it applies, no note."""
    from marketjax.experiment.train_io import run_notes

    data = {"name": "x", "algo": "ppo", "total_env_steps": 10, "env_reset": "lazy"}
    deep_sea = parse_train_config({**data, "env": "DeepSea-bsuite"})
    assert run_notes(deep_sea) == [
        "env_reset: lazy does not apply to DeepSea-bsuite (it defines its own "
        "step); its episodes reset as gymnax's step resets them (eager)"
    ]
    assert run_notes(parse_train_config({**data, "env": "CartPole-v1"})) == []
    eager = parse_train_config({**data, "env": "DeepSea-bsuite", "env_reset": "eager"})
    assert run_notes(eager) == []
