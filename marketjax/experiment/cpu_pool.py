"""How many threads XLA's CPU client runs compiled programs on (``runner.cpu_threads``).

XLA:CPU runs a program's thunks on a pool of one thread per core. On the small
programs most runs compile (a few dozen episodes per seed), the pool's threads
hand each other ready thunks one context switch at a time, and an execution that
falls into that mode runs about 2× slower (docs/throughput.md, "Own PPO vs
purejaxrl"). One pool thread removes it. Measured on this 2-core machine, the
shipped classic-control and Catch configs ran 1.07–1.65× faster with one thread;
programs with more work per step ran slower with it: a single seed of 4,096
episodes 0.75–0.81× (wide, PPO), 64 MLP bidders on 256 episodes 0.67×, the MinAtar
configs (a convolution per network) 0.88–0.94×. Hence ``auto``: one thread when a
step's work, episodes × networks per episode, is at most :data:`SMALL_WORK`, XLA's
default above. Episodes are ``num_envs × num_seeds``, times the sweep's points
when several seeds run (the runner vmaps points × seeds; one seed's points run one
after another). Networks per episode are the market section's ``num_agents`` for
families with a network per agent (1 for PPO, for the ``trunk`` family, whose
agents share one, and for linear or rule bids; a key left at its default counts
as 1). The MinAtar configs set ``runner.cpu_threads: 0``.

The pool is sized once, when JAX's CPU backend starts, from the environment
variable ``PJRT_NPROC``. So the command line decides from the raw config, before
anything touches JAX; a ``PJRT_NPROC`` the user set wins over the config.
Results do not depend on it: XLA runs the same kernels, in one thread or two.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import Any

ENV_VAR = "PJRT_NPROC"  # read by XLA's CPU client when the backend starts
# What XLA's CPU client reads, in order (the first that holds a number wins): a
# user's NPROC sizes the pool as surely as a PJRT_NPROC does.
USER_VARS = (ENV_VAR, "NPROC")
SMALL_WORK = 3072  # auto: one pool thread up to this many episode-networks per step


def pool_threads(
    setting: Any, num_envs: int, num_seeds: int, networks: int = 1
) -> int | None:
    """The pool size a setting asks for: an int, or None for XLA's default.

    Args:
      setting: ``"auto"``, or a number of threads (0: XLA's default, one per core).
      num_envs: episodes per seed.
      num_seeds: runs in one program (seeds, times a sweep's points).
      networks: networks each episode runs per step (:func:`networks_per_episode`).
    """
    if setting == "auto":
        return 1 if num_envs * num_seeds * networks <= SMALL_WORK else None
    return int(setting) or None


def networks_per_episode(raw: dict) -> int:
    """Networks a step runs per episode in a raw training mapping: the market
    section's ``num_agents`` for families with a network per agent, else 1."""
    algo = raw.get("algo")
    section = raw.get(algo) if isinstance(algo, str) else None
    if algo not in ("deep", "wide") or not isinstance(section, dict):
        return 1
    from marketjax.agents.families import LINEAR_BIDS, SHARED_TRUNK

    # no network of an agent's own: one shared trunk, linear bids, rules
    if section.get("family") in (*SHARED_TRUNK, *LINEAR_BIDS, "rules"):
        return 1
    agents = section.get("num_agents")
    return agents if isinstance(agents, int) and agents > 0 else 1


def train_setting(raw: dict) -> tuple[Any, int, int]:
    """``(runner.cpu_threads, num_envs, num_seeds)`` of a raw training mapping,
    with the schema's defaults for keys it leaves out (nothing is validated here:
    the parse that follows names any bad key)."""
    from marketjax.core.schema import RunnerConfig, TrainConfig

    runner = raw.get("runner") if isinstance(raw.get("runner"), dict) else {}
    setting = runner.get("cpu_threads", RunnerConfig.cpu_threads)
    envs = raw.get("num_envs", TrainConfig.num_envs)
    seeds = raw.get("num_seeds", TrainConfig.num_seeds)
    return setting, envs, seeds


def sweep_size(raw: dict) -> int:
    """Points of a raw mapping's ``sweep:`` grid (1 without one, or for a grid
    the parse will reject)."""
    sweep = raw.get("sweep")
    if not isinstance(sweep, dict):
        return 1
    points = 1
    for values in sweep.values():
        if isinstance(values, (list, tuple)) and values:
            points *= len(values)
    return points


def threads_for_train(raw: dict) -> int | None:
    """The pool size for one training run's raw mapping (None: XLA's default, or
    a value that the parse will reject).

    The runs of one program are the seeds times the sweep's points
    (``experiment/runner.py``, ``over_runs``), except that a single seed's points
    run one after another, each a program of ``num_envs`` episodes.
    """
    setting, envs, seeds = train_setting(raw)
    try:
        runs = int(seeds)
        if runs > 1:
            runs *= sweep_size(raw)
        return pool_threads(setting, int(envs), runs, networks_per_episode(raw))
    except (TypeError, ValueError):
        return None


def threads_for_cases(raws: list[dict]) -> int | None:
    """One pool for several runs in one process (``marketjax compare``): one
    thread only if every run asks for one."""
    wanted = [threads_for_train(raw) for raw in raws]
    return 1 if wanted and all(w == 1 for w in wanted) else None


def set_pool_threads(
    threads: int | None, environ: MutableMapping[str, str] = os.environ
) -> str:
    """Sizes XLA's CPU pool before the backend starts; returns what runs will use.

    A ``PJRT_NPROC`` or ``NPROC`` already in ``environ`` (the user's) is kept.
    Nothing is set once JAX's backend has started (the pool exists: setting it
    would only mislead the run's record).

    Returns:
      ``"1"``, ``"4"``, ...: the pool size; ``"default"``: one thread per core.
    """
    from jax._src import xla_bridge

    user = any(var in environ for var in USER_VARS)
    if not user and threads and not xla_bridge.backends_are_initialized():
        environ[ENV_VAR] = str(threads)
    return pool_record(environ)


def pool_record(environ: Mapping[str, str] = os.environ, cpu_devices: int = 1) -> str:
    """The pool XLA's CPU client runs with, as ``summary.json`` records it.

    The first of :data:`USER_VARS` that holds a number, raised to the number of
    CPU devices (the client gives each device a thread, so that a collective
    across them can launch: ``runner.mesh`` on forced host devices runs a pool
    of 2 at ``PJRT_NPROC=1`` with 2 devices); ``"default"``: one per core.
    """
    for var in USER_VARS:
        try:
            threads = int(environ[var])
        except (KeyError, ValueError):
            continue
        return str(max(threads, cpu_devices))
    return "default"
