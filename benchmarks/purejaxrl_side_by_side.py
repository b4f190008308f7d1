"""Our PPO against purejaxrl's published ``make_train``, side by side, interleaved.

purejaxrl (Lu et al. 2022, github.com/luchris429/purejaxrl) is read at run time from
a fetched git directory (``git show HEAD:purejaxrl/ppo.py`` into a temporary folder;
nothing of it is vendored into marketjax). Two small local shims let its file run
on this environment: ``wrappers`` (its ``FlattenObservationWrapper`` and
``LogWrapper``, adapted to gymnax 1.0's six-value ``step``: ``done = terminated |
truncated``) and ``distrax`` (the ``Categorical`` it samples from). Its algorithm,
network and losses are its own code.

Both sides train CartPole-v1 with purejaxrl's own config (4 envs, 128 steps,
4 epochs, 4 minibatches, lr 2.5e-4 annealed, 5e5 env steps per seed), which is
``configs/ppo_cartpole.yaml``. purejaxrl runs as its README does:
``jax.jit(make_train(config))(rng)`` for one seed, ``jax.jit(jax.vmap(...))`` for
several. Ours runs through the runner as ``marketjax train`` does: the compiled
chunk called ``runner.num_chunks`` times (host sync between chunks included),
initialisation included. Compilation is excluded on both sides. Reps alternate
A/B; the ratio is ours / purejaxrl env steps/s, min / median / max over reps.
Returns: the mean return of the episodes that ended in the last 1/20 of the
updates (ours: the last chunk of 20), the median over seeds.

    .venv/bin/python benchmarks/purejaxrl_side_by_side.py [--seeds 1,3] [--reps 5]
        [--repo /work/.mirror/luchris429+purejaxrl/repo]

Each row also gives the ratio in process CPU time, the 1-minute load average at
the start and end of the reps and the CPUs the process may use. On a 2-core
machine XLA:CPU's thread pool can hand the thunks of one execution back and forth
between its two threads (one context switch per hand-off, ~2x the time of that
execution). ``marketjax train`` sizes that pool from the config
(``runner.cpu_threads: auto``: one thread for this config's 4 x 3 episodes), and
so does this benchmark, for both sides (one process, one pool), unless
``PJRT_NPROC`` is set: ``PJRT_NPROC=2`` gives this 2-core machine's default
pool, the comparison of earlier sessions (docs/throughput.md, "Own PPO vs purejaxrl").

Prints one JSON object per seed count (and ``{"skipped": why}`` when the fetched
repository is not there).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from marketjax.experiment.config import apply_overrides, load_yaml
from marketjax.experiment.cpu_pool import set_pool_threads, threads_for_train
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.runner import compile_run

DEFAULT_REPO = "/work/.mirror/luchris429+purejaxrl/repo"
PUREJAXRL_CONFIG = {
    "LR": 2.5e-4,
    "NUM_ENVS": 4,
    "NUM_STEPS": 128,
    "TOTAL_TIMESTEPS": 5e5,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "ENT_COEF": 0.01,
    "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5,
    "ACTIVATION": "tanh",
    "ENV_NAME": "CartPole-v1",
    "ANNEAL_LR": True,
    "DEBUG": False,
}

WRAPPERS_SHIM = '''
"""purejaxrl's two gymnax wrappers, for gymnax 1.0's six-value step (local shim)."""
import jax
import jax.numpy as jnp
from flax import struct


class GymnaxWrapper:
    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        return getattr(self._env, name)


class FlattenObservationWrapper(GymnaxWrapper):
    def reset(self, key, params=None):
        obs, state = self._env.reset(key, params)
        return jnp.reshape(obs, (-1,)), state

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(
            key, state, action, params
        )
        done = jnp.logical_or(terminated, truncated)
        return jnp.reshape(obs, (-1,)), state, reward, done, info


@struct.dataclass
class LogEnvState:
    env_state: object
    episode_returns: float
    episode_lengths: int
    returned_episode_returns: float
    returned_episode_lengths: int
    timestep: int


class LogWrapper(GymnaxWrapper):
    def reset(self, key, params=None):
        obs, env_state = self._env.reset(key, params)
        return obs, LogEnvState(env_state, 0, 0, 0, 0, 0)

    def step(self, key, state, action, params=None):
        obs, env_state, reward, done, info = self._env.step(
            key, state.env_state, action, params
        )
        new_return = state.episode_returns + reward
        new_length = state.episode_lengths + 1
        state = LogEnvState(
            env_state=env_state,
            episode_returns=new_return * (1 - done),
            episode_lengths=new_length * (1 - done),
            returned_episode_returns=state.returned_episode_returns * (1 - done)
            + new_return * done,
            returned_episode_lengths=state.returned_episode_lengths * (1 - done)
            + new_length * done,
            timestep=state.timestep + 1,
        )
        info = {"discount": info["discount"]}  # gymnax 0.0.x's info, as purejaxrl saw
        info["returned_episode_returns"] = state.returned_episode_returns
        info["returned_episode_lengths"] = state.returned_episode_lengths
        info["timestep"] = state.timestep
        info["returned_episode"] = done
        return obs, state, reward, done, info
'''

DISTRAX_SHIM = '''
"""distrax.Categorical, the one class purejaxrl's ppo.py uses (local shim)."""
import jax
import jax.numpy as jnp


class Categorical:
    def __init__(self, logits):
        self.logits = logits
        self._log_p = jax.nn.log_softmax(logits)

    def sample(self, seed):
        return jax.random.categorical(seed, self.logits)

    def log_prob(self, value):
        value = jnp.asarray(value, jnp.int32)
        return jnp.take_along_axis(self._log_p, value[..., None], axis=-1)[..., 0]

    def entropy(self):
        return -jnp.sum(jnp.exp(self._log_p) * self._log_p, axis=-1)
'''


def load_purejaxrl(repo: str, tmp: Path):
    """purejaxrl's ``ppo`` module, from ``git show`` of the fetched repository."""
    source = subprocess.run(
        ["git", "--git-dir", repo, "show", "HEAD:purejaxrl/ppo.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    commit = subprocess.run(
        ["git", "--git-dir", repo, "rev-parse", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (tmp / "ppo_purejaxrl.py").write_text(source)
    (tmp / "wrappers.py").write_text(WRAPPERS_SHIM)
    (tmp / "distrax.py").write_text(DISTRAX_SHIM)
    sys.path.insert(0, str(tmp))
    return importlib.import_module("ppo_purejaxrl"), commit


def purejaxrl_side(module, seeds: int):
    """(timed call, final returns per seed) for purejaxrl with ``seeds`` seeds."""
    train = module.make_train(dict(PUREJAXRL_CONFIG))
    if seeds == 1:
        rngs = jax.random.PRNGKey(0)
        fn = jax.jit(train)
    else:
        rngs = jax.random.split(jax.random.PRNGKey(0), seeds)
        fn = jax.jit(jax.vmap(train))
    compiled = fn.lower(rngs).compile()

    def call():
        return jax.block_until_ready(compiled(rngs)["metrics"])

    def returns(metrics) -> list[float]:
        ret = np.asarray(metrics["returned_episode_returns"]).reshape(seeds, -1)
        ended = np.asarray(metrics["returned_episode"]).reshape(seeds, -1)
        tail = ret.shape[1] // 20  # the last 1/20 of the updates' steps
        return [
            float(r[-tail:][e[-tail:]].mean()) for r, e in zip(ret, ended, strict=True)
        ]

    return call, returns


def own_side(seeds: int, chunks: int, overrides: tuple = ()):
    """(timed call, final returns per seed) for ``configs/ppo_cartpole.yaml``."""
    data = apply_overrides(
        load_yaml("configs/ppo_cartpole.yaml"),
        [
            f"num_seeds={seeds}",
            f"runner.num_chunks={chunks}",
            "runner.progress=false",
            "runner.checkpoint=false",
            *overrides,
        ],
    )
    config = parse_train_config(data)
    run = compile_run(config)

    def call():
        state = run.init(run.keys, run.params)
        metrics = None
        for _ in range(run.schedule.num_chunks):
            state, metrics = run.chunk(state, run.params)
            metrics = jax.device_get(metrics)  # the runner's host sync per chunk
        return metrics

    def returns(metrics) -> list[float]:
        return [float(x) for x in np.asarray(metrics["mean_return"])]

    return call, returns, run.schedule.total_env_steps


def measure(module, seeds: int, reps: int, chunks: int, overrides=()) -> dict:
    pj_call, pj_returns = purejaxrl_side(module, seeds)
    own_call, own_returns, own_steps = own_side(seeds, chunks, overrides)
    pj_steps = int(
        PUREJAXRL_CONFIG["TOTAL_TIMESTEPS"]
        // PUREJAXRL_CONFIG["NUM_STEPS"]
        // PUREJAXRL_CONFIG["NUM_ENVS"]
        * PUREJAXRL_CONFIG["NUM_STEPS"]
        * PUREJAXRL_CONFIG["NUM_ENVS"]
    )
    pj_call(), own_call()  # warm-up
    pj_rates, own_rates, ratios, cpu_ratios = [], [], [], []
    pj_out = own_out = None
    load_start = os.getloadavg()[0]
    for _ in range(reps):
        start, cpu = time.perf_counter(), time.process_time()
        pj_out = pj_call()
        pj_rate = seeds * pj_steps / (time.perf_counter() - start)
        pj_cpu = seeds * pj_steps / (time.process_time() - cpu)
        start, cpu = time.perf_counter(), time.process_time()
        own_out = own_call()
        own_rate = seeds * own_steps / (time.perf_counter() - start)
        own_cpu = seeds * own_steps / (time.process_time() - cpu)
        pj_rates.append(pj_rate)
        own_rates.append(own_rate)
        ratios.append(own_rate / pj_rate)
        cpu_ratios.append(own_cpu / pj_cpu)

    def mmm(xs, digits):
        return [round(min(xs), digits), round(statistics.median(xs), digits),
                round(max(xs), digits)]  # fmt: skip

    pj_ret, own_ret = pj_returns(pj_out), own_returns(own_out)
    return {
        "bench": "purejaxrl_side_by_side",
        "env": "CartPole-v1",
        "seeds": seeds,
        "reps": reps,
        "own_chunks": chunks,
        "own_overrides": list(overrides),
        "env_steps_per_seed": {"own": own_steps, "purejaxrl": pj_steps},
        "ratio_own_over_purejaxrl_min_median_max": mmm(ratios, 3),
        # the same ratio in process CPU time (all threads): load from other
        # processes inflates wall time, not CPU time (docs/throughput.md)
        "cpu_ratio_own_over_purejaxrl_min_median_max": mmm(cpu_ratios, 3),
        "loadavg_1m_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "own_env_steps_per_s_min_median_max": mmm(own_rates, 0),
        "purejaxrl_env_steps_per_s_min_median_max": mmm(pj_rates, 0),
        "own_final_return_per_seed": [round(x, 1) for x in own_ret],
        "purejaxrl_final_return_per_seed": [round(x, 1) for x in pj_ret],
        "own_final_return_median": round(statistics.median(own_ret), 1),
        "purejaxrl_final_return_median": round(statistics.median(pj_ret), 1),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", default=DEFAULT_REPO, help="fetched git directory")
    parser.add_argument("--seeds", default="1,3")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument(
        "--chunks", type=int, default=20, help="our runner.num_chunks (config: 20)"
    )
    parser.add_argument("--png", default="benchmarks/out/purejaxrl_side_by_side.png")
    parser.add_argument(
        "overrides", nargs="*", help="key=value overrides of our config (ablations)"
    )
    args = parser.parse_args(argv)
    raw = apply_overrides(load_yaml("configs/ppo_cartpole.yaml"), args.overrides)
    seeds = max(int(s) for s in args.seeds.split(","))
    pool = set_pool_threads(threads_for_train({**raw, "num_seeds": seeds}))
    if not Path(args.repo).is_dir():
        row = {"bench": "purejaxrl_side_by_side", "skipped": f"no {args.repo}"}
        print(json.dumps(row))
        return [row]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        module, commit = load_purejaxrl(args.repo, Path(tmp))
        for seeds in (int(s) for s in args.seeds.split(",")):
            row = measure(module, seeds, args.reps, args.chunks, tuple(args.overrides))
            row["commit"] = commit
            row["cpu_pool_threads"] = pool
            rows.append(row)
            print(json.dumps(row), flush=True)
    plot_ratios(rows, Path(args.png))
    return rows


def plot_ratios(rows: list[dict], path: Path) -> None:
    """Our env steps/s over purejaxrl's (min/median/max) per seed count."""
    from marketjax.experiment.plots import plt, save_png

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, row in enumerate(rows):
        lo, med, hi = row["ratio_own_over_purejaxrl_min_median_max"]
        ax.bar(i, med, label=f"{row['seeds']} seed(s)")
        ax.errorbar(i, med, yerr=[[med - lo], [hi - med]], color="k", capsize=4)
    ax.axhline(1.0, ls="--", color="k", label="parity (target)")
    ax.set_xticks(range(len(rows)), [f"{r['seeds']} seeds" for r in rows])
    ax.set_ylabel("marketjax / purejaxrl env steps/s")
    ax.set_title("PPO on CartPole-v1, interleaved", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


if __name__ == "__main__":
    main()
