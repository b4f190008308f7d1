"""``make_train(config) -> train(key, params)`` and the host runner over chunks.

``make_train`` is purejaxrl's recipe: the whole run is one ``jax.jit`` of a
``lax.scan`` over updates, and every number a sweep may change is an array leaf of
``params``. The host runner splits the same updates into chunks: one compiled chunk
(``vmap`` over runs of a ``lax.scan`` over updates) is called repeatedly, and
between calls the host draws the progress bar, appends metrics, writes checkpoints
and, in debug mode, checks the books and looks for NaN/inf.

A run is ``points × seeds`` runs in one program: a config without ``sweep:`` is a
sweep of one point, so a point of a sweep runs exactly the program of the same
point run alone, only with a longer run axis. Runs are laid out point-major
(run r = point r // S, seed r % S) and every point uses the same seed keys.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.core.axes import RUN_AXIS
from marketjax.core.schema import MAXED_METRICS, SUMMED_METRICS
from marketjax.experiment import mesh
from marketjax.experiment.registry import (
    TrainConfig,
    Trainer,
    get_algorithm,
    planned_updates,
    sweep_points,
)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How a run's updates are split into chunks (derived from the config)."""

    steps_per_update: int  # env steps per update, one seed
    updates_per_chunk: int
    num_chunks: int

    @property
    def steps_per_chunk(self) -> int:
        return self.steps_per_update * self.updates_per_chunk

    @property
    def total_env_steps(self) -> int:
        return self.steps_per_chunk * self.num_chunks


def make_schedule(config: TrainConfig, trainer: Trainer) -> Schedule:
    """Rounds ``total_env_steps`` up to whole updates and whole chunks."""
    per_chunk, num_chunks = planned_updates(config, trainer.steps_per_update)
    return Schedule(trainer.steps_per_update, per_chunk, num_chunks)


def reduce_metrics(metrics: dict) -> dict:
    """Reduces per-update metrics (leading axis U) to one scalar each, inside jit.

    ``episode_return_sum`` and ``episode_count`` are summed and give ``mean_return``
    (NaN if no episode ended); counts (``entries``, ``exits``) are summed; worst
    cases (``equ_iterations_max``, ``equ_residual_max``) are maxed; every other
    entry is averaged over the updates.
    """
    total = jnp.sum(metrics["episode_return_sum"])
    count = jnp.sum(metrics["episode_count"])
    reduce = {k: jnp.sum for k in SUMMED_METRICS} | {k: jnp.max for k in MAXED_METRICS}
    out = {
        k: reduce.get(k, jnp.mean)(v)
        for k, v in metrics.items()
        if k not in ("episode_return_sum", "episode_count")
    }
    out["episodes"] = count
    out["mean_return"] = jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan)
    return out


def make_chunk(trainer: Trainer, updates_per_chunk: int) -> Callable:
    """``chunk(state, params) -> (state, metrics)`` for one run: a scan over updates."""

    def chunk(state, params):
        state, metrics = jax.lax.scan(
            lambda s, _: trainer.update(s, params),
            state,
            None,
            length=updates_per_chunk,
        )
        return state, reduce_metrics(metrics)

    return chunk


def seed_keys(config: TrainConfig) -> jax.Array:
    """One typed key per seed, all derived from ``config.seed``."""
    return jax.random.split(jax.random.key(config.seed), config.num_seeds)


def as_params(values: dict) -> dict:
    """Sweepable numbers as f32 array leaves."""
    return {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}


def make_train(config: TrainConfig) -> Callable[..., tuple[Any, dict]]:
    """purejaxrl's ``make_train``: returns ``train(key, params=None)``.

    ``train`` runs every update of one seed in a single ``lax.scan`` (jit it, and
    ``vmap`` it over seed keys and over params). ``params`` are the sweepable
    numbers (``{key: f32[]}``), by default the config's. ``metrics`` holds one
    reduced entry per chunk of the run's schedule, so it equals what the host
    runner logs.
    """
    trainer = get_algorithm(config.algo).make_trainer(config)
    schedule = make_schedule(config, trainer)
    chunk = make_chunk(trainer, schedule.updates_per_chunk)

    def train(key, params=None):
        params = as_params(trainer.params or {}) if params is None else params
        state = trainer.init(key, params)
        return jax.lax.scan(
            lambda s, _: chunk(s, params), state, None, length=schedule.num_chunks
        )

    return train


def default_params(config: TrainConfig) -> dict:
    """The config's sweepable numbers as f32 leaves (``train``'s default params)."""
    return as_params(get_algorithm(config.algo).make_trainer(config).params or {})


@dataclasses.dataclass
class CompiledRun:
    """A trainer's init and its compiled chunk, for all runs (points × seeds)."""

    config: TrainConfig
    trainer: Trainer
    schedule: Schedule
    points: list  # [(label, config of the point)]
    params: dict  # {key: f32[R]}, the runs' sweepable numbers
    keys: jax.Array  # [R] typed keys, point-major
    init: Callable  # (keys, params) -> state with a leading R axis
    chunk: Callable  # jitted (state, params) -> (state, metrics)
    compile_s: float
    traces: list  # one entry per trace of the chunk (a retrace adds one)

    @property
    def trace_count(self) -> int:
        return len(self.traces)

    @property
    def num_runs(self) -> int:
        return len(self.points) * self.config.num_seeds


def run_sharding(num_runs: int, config: TrainConfig):
    """A sharding of the leading run axis over all devices, or None.

    Runs are independent programs, so spreading them over devices (a 1-D mesh with
    an Auto axis, so vmapped gymnax states shard too) changes no number.
    """
    devices = jax.device_count()
    if not config.runner.shard_seeds or devices == 1 or num_runs % devices:
        return None
    mesh = jax.make_mesh(
        (devices,), ("seeds",), axis_types=(jax.sharding.AxisType.Auto,)
    )
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seeds"))


def seed_sharding(config: TrainConfig):
    """The sharding of a run without a sweep (see :func:`run_sharding`)."""
    return run_sharding(len(sweep_points(config)) * config.num_seeds, config)


def run_params(trainer: Trainer, points: list, num_seeds: int) -> dict:
    """``{key: f32[P·S]}``: every point's sweepable numbers, repeated per seed."""
    base = dict(trainer.params or {})
    rows = []
    for _, point in points:
        rows.append({k: float(getattr(point.algo_config, k)) for k in base})
    return {
        k: jnp.asarray(np.repeat([r[k] for r in rows], num_seeds), jnp.float32)
        for k in base
    }


def compile_run(
    config: TrainConfig, before_compile: Callable[[Any], None] | None = None
) -> CompiledRun:
    """Builds the trainer, initialises all runs, compiles one chunk ahead of time.

    Args:
      config: a validated training config.
      before_compile: called with the initial state (all runs) before the chunk
        compiles, e.g. to check that a checkpoint fits it.
    """
    trainer = get_algorithm(config.algo).make_trainer(config)
    schedule = make_schedule(config, trainer)
    points = sweep_points(config)
    num_runs = len(points) * config.num_seeds
    params = run_params(trainer, points, config.num_seeds)
    keys = jnp.concatenate([seed_keys(config)] * len(points))
    layout = mesh.make_layout(config, num_runs)  # checks runner.mesh first
    trainer = mesh.sharded_trainer(trainer, layout)
    traces: list = []
    inner = make_chunk(trainer, schedule.updates_per_chunk)

    def counted(state, params):
        traces.append(1)  # runs once per trace: a retrace adds an entry
        return inner(state, params)

    init = mesh.jit_init(
        lambda k, p: strong_types(jax.vmap(trainer.init)(k, p)), layout, keys, params
    )
    params = mesh.put_params(params, layout)
    state = init(keys, params)
    if before_compile is not None:
        before_compile(state)
    if layout is None:  # one device: a single seed runs unbatched (over_runs)
        per_run = config.num_seeds == 1
        chunk = jax.jit(over_runs(counted, num_runs, per_run), donate_argnums=0)
    else:
        chunk = mesh.jit_chunk(counted, layout, state, params)
    start = time.perf_counter()
    chunk.lower(state, params).compile()
    compile_s = time.perf_counter() - start
    return CompiledRun(
        config, trainer, schedule, points, params, keys, init, chunk, compile_s, traces
    )


def over_runs(chunk: Callable, num_runs: int, per_run: bool = False) -> Callable:
    """``chunk`` lifted to states and params with a leading run axis of ``num_runs``.

    Several runs are a ``vmap``. A single run (one seed, no sweep) drops its size-1
    axis, runs the chunk unbatched and puts the axis back on the outputs: under a
    size-1 ``vmap`` XLA's CPU backend lays out some reductions (the LayerNorm
    scale gradient ``[1, N, M, H] -> [1, N, H]``) as a fusion up to 30x slower
    (issue 17), and the axis buys nothing. Checkpoints and results keep their
    leading axis either way.

    XLA compiles a size-1 batch differently from a larger one, so the numbers of
    one seed alone and of the same seed inside a vmap differ in the last bits. With
    ``per_run`` (a one-seed sweep) the runs go one after another (``lax.map`` of
    the unbatched chunk), so every point of the sweep computes exactly what the
    point computes alone.
    """
    if num_runs != 1 and not per_run:
        return jax.vmap(chunk, axis_name=RUN_AXIS)

    def one(state, params):
        run = jax.tree.map(lambda x: x[0], (state, params))
        return jax.tree.map(lambda x: x[None], chunk(*run))

    if num_runs == 1:
        return one
    return lambda state, params: jax.lax.map(lambda run: chunk(*run), (state, params))


def strong_types(state: Any) -> Any:
    """The state with every weakly typed leaf made strong (gymnax resets some
    fields to Python scalars; a chunk returns them strongly typed, and the
    difference would retrace the chunk on its second call)."""

    def strong(x):
        if getattr(x, "weak_type", False):
            return jax.lax.convert_element_type(x, x.dtype)
        return x

    return jax.tree.map(strong, state)


def nonfinite_leaves(state: Any) -> list[str]:
    """Paths of floating-point leaves of ``state`` that hold NaN or inf."""
    bad = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or jnp.issubdtype(dtype, jax.dtypes.prng_key):
            continue
        arr = np.asarray(leaf)
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            bad.append(jax.tree_util.keystr(path))
    return bad


def debug_check(run: CompiledRun, state: Any, chunk_index: int) -> None:
    """Raises RuntimeError if the state holds NaN/inf or the books do not balance."""
    bad = nonfinite_leaves(state)
    if bad:
        raise RuntimeError(f"chunk {chunk_index}: non-finite values in {bad[:5]}")
    if run.trainer.books_imbalance is not None:
        imbalance = np.asarray(jax.vmap(run.trainer.books_imbalance)(state))
        if np.max(np.abs(imbalance)) > 1e-4:
            raise RuntimeError(
                f"chunk {chunk_index}: books out of balance by {imbalance.tolist()}"
            )
