"""What every algorithm shares: the training-config schema, the Trainer interface,
the update-count rule and the sweepable-parameter rule.

This module imports nothing from marketjax but :mod:`marketjax.core.config`, so every
layer (markets, learners, algorithms, the experiment harness) may import it.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from marketjax.core.config import field


class Trainer(NamedTuple):
    """What an algorithm gives the runner (all functions are for ONE seed).

    Attributes:
      init: ``init(key, params) -> state``, the whole training state (a pytree).
      update: ``update(state, params) -> (state, metrics)``: one update, i.e.
        ``steps_per_update`` environment steps plus learning. ``metrics`` is a dict
        of f32 scalars and must contain ``episode_return_sum`` and
        ``episode_count`` (completed episodes during the update); other entries
        are averaged over the updates of a chunk, except those listed in
        :data:`SUMMED_METRICS` (counts, summed) and :data:`MAXED_METRICS` (worst
        cases, the maximum).
      steps_per_update: environment steps per update (for one seed).
      books_imbalance: optional ``books_imbalance(state) -> f32`` scalar, the relative
        imbalance of the market's books, checked between chunks in debug mode.
      params: the default sweepable parameters, ``{name: float}`` (see
        :func:`sweepable_params`); the runner turns them into f32 array leaves, so
        a sweep over them is a ``vmap``, never a recompile.
    """

    init: Callable[[Any, Any], Any]
    update: Callable[[Any, Any], tuple[Any, dict]]
    steps_per_update: int
    books_imbalance: Callable[[Any], Any] | None = None
    params: dict | None = None


# Metric sinks of the host runner (experiment/loggers.py); jsonl is always written.
LOGGERS = ("jsonl", "tensorboard", "wandb")

# Metrics that count events: summed over a chunk's updates rather than averaged.
SUMMED_METRICS = ("entries", "exits", "dividends", "parent_paid", "minted")
# Metrics that are worst cases: the largest over a chunk's updates.
MAXED_METRICS = ("equ_iterations_max", "equ_residual_max")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """How runs and episodes are laid out over devices (``runner.mesh``).

    A 2-D device mesh ``seeds × episodes``: runs (seeds × sweep points) are spread
    over the first axis, each run's B parallel episodes over the second.
    ``seeds: 0`` means every device the episodes leave free (as before the mesh
    existed: all local devices for seeds when they divide the runs).
    """

    seeds: int = field(0, lo=0, hi=1 << 16, doc="devices for runs (0: the rest)")
    episodes: int = field(
        1, lo=1, hi=1 << 16, doc="devices sharing each run's episodes (B)"
    )


@dataclasses.dataclass(frozen=True)
class RunnerConfig:
    """How the host runner drives the compiled chunks (``runner:`` section)."""

    num_chunks: int = field(10, lo=1, hi=100_000, doc="compiled chunks of the run")
    checkpoint: bool = field(True, doc="write a checkpoint after every chunk")
    out_dir: str = field("runs", doc="parent folder of run directories")
    progress: bool = field(True, doc="draw a tqdm progress bar")
    debug: bool = field(False, doc="check books and NaN/inf between chunks")
    shard_seeds: bool = field(
        True, doc="spread seeds over all local devices when they divide evenly"
    )
    mesh: MeshConfig = MeshConfig()
    watchdog_s: float = field(
        60.0, lo=0.0, lo_open=True, hi=1e6, doc="a chunk may always take this long"
    )
    watchdog_factor: float = field(
        20.0, lo=1.0, hi=1e6, doc="...or this many times the median earlier chunk"
    )
    watchdog_restart: bool = field(
        False, doc="restart a stalled run from its last checkpoint (else just say so)"
    )
    loggers: tuple[Literal[LOGGERS], ...] = field(
        ("jsonl",), doc="where metrics go: jsonl (always), tensorboard, wandb"
    )
    wandb_mode: Literal["offline", "online", "disabled"] = field(
        "offline", doc="W&B mode; offline keeps runs in <run dir>/wandb until synced"
    )
    wandb_project: str = field("marketjax", doc="W&B project of the run")
    cpu_threads: int | Literal["auto"] = field(
        "auto",
        lo=0,
        hi=4096,
        doc="XLA CPU pool threads (auto: 1 for small programs, episodes x "
        "networks <= 3072, else one per core; 0: one per core); PJRT_NPROC wins",
    )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Top-level keys every training config has (DESIGN.md, "Command line")."""

    name: str = field(doc="run name: the run directory is <out_dir>/<name>")
    algo: str = field(doc="registered algorithm: deep, wide, ppo, ...")
    env: str = field(doc="a gymnax id or one of marketjax's environments")
    total_env_steps: int = field(lo=1, hi=10**12, doc="environment steps per seed")
    seed: int = field(
        0, lo=0, hi=2**31 - 1, doc="PRNG seed; the seeds' keys are split from it"
    )
    num_seeds: int = field(1, lo=1, hi=4096, doc="seeds run in one program (vmap)")
    num_envs: int = field(16, lo=1, hi=1 << 20, doc="parallel episodes per seed")
    env_reset: Literal["eager", "lazy"] = field(
        "eager", doc="auto-reset: every step (gymnax) or only after some episode ended"
    )
    runner: RunnerConfig = RunnerConfig()
    algo_config: Any = None  # the section named after `algo`, parsed by its class
    sweep: tuple = ()  # ((dotted key, (values, ...)), ...) from the `sweep:` section


def planned_updates(config: TrainConfig, steps_per_update: int) -> tuple[int, int]:
    """``(updates_per_chunk, num_chunks)`` of a run: the one definition of how many
    updates a run makes, used by the runner and by trainers' schedules (learning-rate
    annealing, exploration), so that a schedule ends exactly with the run.

    ``total_env_steps`` is rounded up to whole updates, and the updates to whole
    chunks of equal size.
    """
    wanted = max(1, math.ceil(config.total_env_steps / steps_per_update))
    per_chunk = math.ceil(wanted / config.runner.num_chunks)
    return per_chunk, math.ceil(wanted / per_chunk)


def total_updates(config: TrainConfig, steps_per_update: int) -> int:
    """How many updates the runner will make (see :func:`planned_updates`)."""
    per_chunk, num_chunks = planned_updates(config, steps_per_update)
    return per_chunk * num_chunks


def sweepable_keys(section_class: type) -> list[str]:
    """The keys of an algorithm section that may be swept: its ``float`` fields.

    A float never sets an array's shape, so every float key of a section is read by
    its trainer from ``params`` (an array leaf) rather than from the config; ints,
    bools, strings and tuples set shapes or the program's structure and cannot be
    swept inside one compiled program.
    """
    hints = typing.get_type_hints(section_class)
    return [
        f.name
        for f in dataclasses.fields(section_class)
        if hints[f.name] is float and f.init and not f.metadata.get("static")
    ]


def sweepable_params(section: Any) -> dict[str, float]:
    """``{key: value}`` of a parsed section's sweepable keys (see above)."""
    return {k: float(getattr(section, k)) for k in sweepable_keys(type(section))}
