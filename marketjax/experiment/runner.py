"""``make_train(config) -> train(key)`` and the host runner over compiled chunks.

``make_train`` is purejaxrl's recipe: the whole run is one ``jax.jit`` of a
``lax.scan`` over updates. The host runner splits the same updates into chunks: one
compiled chunk (``vmap`` over seeds of a ``lax.scan`` over updates) is called
repeatedly, and between calls the host draws the progress bar, appends metrics,
writes checkpoints and, in debug mode, checks the books and looks for NaN/inf. A
chunk is compiled once per run (ahead of time, so compile time is measured apart).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.experiment.registry import (
    TrainConfig,
    Trainer,
    get_algorithm,
    planned_updates,
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
    (NaN if no episode ended); every other entry is averaged over the updates.
    """
    total = jnp.sum(metrics["episode_return_sum"])
    count = jnp.sum(metrics["episode_count"])
    out = {
        k: jnp.mean(v)
        for k, v in metrics.items()
        if k not in ("episode_return_sum", "episode_count")
    }
    out["episodes"] = count
    out["mean_return"] = jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan)
    return out


def make_chunk(trainer: Trainer, updates_per_chunk: int) -> Callable:
    """``chunk(state) -> (state, metrics)`` for one seed: a scan over updates."""

    def chunk(state):
        state, metrics = jax.lax.scan(
            lambda s, _: trainer.update(s), state, None, length=updates_per_chunk
        )
        return state, reduce_metrics(metrics)

    return chunk


def seed_keys(config: TrainConfig) -> jax.Array:
    """One typed key per seed, all derived from ``config.seed``."""
    return jax.random.split(jax.random.key(config.seed), config.num_seeds)


def make_train(config: TrainConfig) -> Callable[[jax.Array], tuple[Any, dict]]:
    """purejaxrl's ``make_train``: returns ``train(key) -> (state, metrics)``.

    ``train`` runs every update of one seed in a single ``lax.scan`` (jit it, and
    ``vmap`` it over seed keys). ``metrics`` holds one reduced entry per chunk of the
    run's schedule, so it equals what the host runner logs.
    """
    trainer = get_algorithm(config.algo).make_trainer(config)
    schedule = make_schedule(config, trainer)
    chunk = make_chunk(trainer, schedule.updates_per_chunk)

    def train(key):
        state = trainer.init(key)
        return jax.lax.scan(
            lambda s, _: chunk(s), state, None, length=schedule.num_chunks
        )

    return train


@dataclasses.dataclass
class CompiledRun:
    """A trainer's init and its compiled chunk, for all seeds of a config."""

    config: TrainConfig
    trainer: Trainer
    schedule: Schedule
    init: Callable  # keys -> state (vmapped over seeds, jitted)
    chunk: Any  # compiled: state -> (state, metrics); each leaf has a leading S axis
    compile_s: float
    trace_count: int


def seed_sharding(config: TrainConfig) -> jax.sharding.NamedSharding | None:
    """A sharding of the leading seed axis over all devices, or None.

    Seeds are independent programs, so spreading them over devices (a 1-D mesh with
    an Auto axis, so vmapped gymnax states shard too) changes no number.
    """
    devices = jax.device_count()
    if not config.runner.shard_seeds or devices == 1 or config.num_seeds % devices:
        return None
    mesh = jax.make_mesh(
        (devices,), ("seeds",), axis_types=(jax.sharding.AxisType.Auto,)
    )
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seeds"))


def place_seeds(config: TrainConfig, state: Any) -> Any:
    """Puts a seed-batched state on the devices given by :func:`seed_sharding`."""
    sharding = seed_sharding(config)
    return state if sharding is None else jax.device_put(state, sharding)


def compile_run(config: TrainConfig) -> CompiledRun:
    """Builds the trainer, initialises all seeds, compiles one chunk ahead of time."""
    trainer = get_algorithm(config.algo).make_trainer(config)
    schedule = make_schedule(config, trainer)
    traces = []
    inner = make_chunk(trainer, schedule.updates_per_chunk)

    def counted(state):
        traces.append(1)  # runs at trace time only
        return inner(state)

    vmapped_init = jax.jit(jax.vmap(trainer.init))

    def init(keys):
        return place_seeds(config, vmapped_init(keys))

    state = init(seed_keys(config))
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(counted), donate_argnums=0).lower(state).compile()
    compile_s = time.perf_counter() - start
    return CompiledRun(
        config, trainer, schedule, init, compiled, compile_s, len(traces)
    )


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
