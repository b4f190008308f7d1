"""``env_reset: lazy`` against gymnax's own auto-reset on every registered env.

For each env id, R runs x B episodes step T times under random actions (the same
keys and actions for both rules), inside a vmap named as the runner names its
runs (so the lazy reset is a branch). Prints one JSON line per env: episode ends,
whether dones/rewards/info keys agree, and the largest observation difference
(docs/throughput.md, "Resets only when an episode ended").

    python scripts/lazy_reset_check.py [--steps 520] [ENV ...]
"""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.core.axes import RUN_AXIS
from marketjax.envs.gymnax_adapter import BatchedEnv, known_envs

SKIP = ("MNISTBandit-bsuite",)  # downloads MNIST on construction
RUNS, EPISODES = 2, 4


def rollout(env: BatchedEnv, steps: int) -> tuple:
    """(obs f32[T, R, B, D], reward f32[T, R, B], done bool[T, R, B], info)."""
    spec = env.spec
    obs, state = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), RUNS))

    def one(carry, t):
        _, state = carry
        k_act, k_env = jax.random.split(jax.random.fold_in(jax.random.key(7), t))
        if spec.discrete:
            action = jax.random.randint(k_act, (RUNS, EPISODES), 0, spec.num_actions)
        else:
            shape = (RUNS, EPISODES, spec.num_actions)
            action = jax.random.uniform(
                k_act, shape, minval=spec.action_low, maxval=spec.action_high
            )
        keys = jax.random.split(k_env, RUNS)
        obs, state, reward, done, info = jax.vmap(env.step, axis_name=RUN_AXIS)(
            keys, state, action
        )
        return (obs, state), (obs, reward, done, info)

    scan = jax.jit(lambda c: jax.lax.scan(one, c, jnp.arange(steps)))
    return jax.device_get(scan((obs, state))[1])


def compare(name: str, steps: int) -> dict:
    eager = rollout(BatchedEnv(name, EPISODES, reset="eager"), steps)
    lazy_env = BatchedEnv(name, EPISODES, reset="lazy")
    lazy = rollout(lazy_env, steps)
    (o1, r1, d1, i1), (o2, r2, d2, i2) = eager, lazy
    diff = np.abs(o1 - o2).max(axis=tuple(range(1, o1.ndim)))  # f32[T]
    return {
        "env": name,
        "lazy_applies": lazy_env.lazy,
        "episode_ends": int(d1.sum()),
        "dones_equal": bool(np.array_equal(d1, d2)),
        "rewards_max_diff": float(np.abs(r1 - r2).max()),
        "info_keys_equal": set(i1) == set(i2),
        "obs_max_diff": float(diff.max()),
        "first_step_obs_differ": int(np.argmax(diff > 0)) if diff.any() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("envs", nargs="*", help="env ids (default: every one)")
    parser.add_argument("--steps", type=int, default=520)
    args = parser.parse_args()
    names = args.envs or [n for n in known_envs() if n not in SKIP]
    for name in names:
        print(json.dumps(compare(name, args.steps)), flush=True)


if __name__ == "__main__":
    main()
