"""The training-config schema shared by every algorithm, and the algorithm registry.

An algorithm is a name, a frozen dataclass for its own config section (the YAML
section named after the algorithm: ``deep:``, ``ppo:``, ``wide:``), and
``make_trainer(config) -> Trainer``. The runner, the checkpoints, the command line and
the comparison harness only ever see a :class:`Trainer`, so one runner serves every
algorithm, and a user's own algorithm joins with :func:`register`.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from marketjax.experiment.config import (
    ConfigError,
    _unknown_key_message,
    check_plain_name,
    field,
    parse,
    to_dict,
)

# Built-in algorithms: name -> module defining CONFIG_CLASS and make_trainer.
_BUILTIN = {
    "deep": "marketjax.markets.deep_train",
    "ppo": "marketjax.baselines.ppo",
    "wide": "marketjax.markets.wide_train",
}


class Trainer(NamedTuple):
    """What an algorithm gives the runner (all functions are for ONE seed).

    Attributes:
      init: ``init(key) -> state``, the whole training state (a pytree).
      update: ``update(state) -> (state, metrics)``: one update, i.e.
        ``steps_per_update`` environment steps plus learning. ``metrics`` is a dict
        of f32 scalars and must contain ``episode_return_sum`` and
        ``episode_count`` (completed episodes during the update); other entries
        are averaged over the updates of a chunk.
      steps_per_update: environment steps per update (for one seed).
      books_imbalance: optional ``books_imbalance(state) -> f32`` scalar, the relative
        imbalance of the market's books, checked between chunks in debug mode.
    """

    init: Callable[[Any], Any]
    update: Callable[[Any], tuple[Any, dict]]
    steps_per_update: int
    books_imbalance: Callable[[Any], Any] | None = None


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


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """A registered training algorithm."""

    name: str
    config_class: type
    make_trainer: Callable[[TrainConfig], Trainer]


_REGISTERED: dict[str, Algorithm] = {}


def register(name: str, config_class: type, make_trainer: Callable) -> None:
    """Registers an algorithm so configs (``algo: name``) and the harness can use it."""
    _REGISTERED[name] = Algorithm(name, config_class, make_trainer)


def algorithm_names() -> list[str]:
    return sorted({*_BUILTIN, *_REGISTERED})


def get_algorithm(name: str) -> Algorithm:
    """The algorithm registered under ``name`` (built-ins are imported on first use)."""
    if name not in _REGISTERED and name in _BUILTIN:
        module = importlib.import_module(_BUILTIN[name])
        register(name, module.CONFIG_CLASS, module.make_trainer)
    if name not in _REGISTERED:
        raise ConfigError(
            _unknown_key_message(name, algorithm_names(), "algo").replace(
                "unknown key", "unknown algorithm"
            )
        )
    return _REGISTERED[name]


@dataclasses.dataclass(frozen=True)
class RunnerConfig:
    """How the host runner drives the compiled chunks (``runner:`` section)."""

    num_chunks: int = field(10, lo=1, doc="compiled chunks the run is split into")
    checkpoint: bool = field(True, doc="write a checkpoint after every chunk")
    out_dir: str = field("runs", doc="parent folder of run directories")
    progress: bool = field(True, doc="draw a tqdm progress bar")
    debug: bool = field(False, doc="check books and NaN/inf between chunks")
    shard_seeds: bool = field(
        True, doc="spread seeds over all local devices when they divide evenly"
    )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Top-level keys every training config has (DESIGN.md, "Command line")."""

    name: str = field(doc="run name: the run directory is <out_dir>/<name>")
    algo: str = field(doc="registered algorithm: deep, wide, ppo, ...")
    env: str = field(doc="a gymnax id or one of marketjax's environments")
    total_env_steps: int = field(lo=1, doc="environment steps per seed")
    seed: int = field(0, lo=0)
    num_seeds: int = field(1, lo=1, doc="seeds run in one program (vmap)")
    num_envs: int = field(16, lo=1, doc="parallel episodes per seed")
    runner: RunnerConfig = RunnerConfig()
    algo_config: Any = None  # the section named after `algo`, parsed by its class


_TOP_KEYS = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "algo_config"]


def parse_train_config(data: Mapping) -> TrainConfig:
    """Validates a whole training config (a mapping) into a :class:`TrainConfig`.

    Raises:
      ConfigError: naming the first bad key (unknown, missing, mistyped, out of
        range, an unknown algorithm or environment).
    """
    if not isinstance(data, Mapping):
        raise ConfigError("config: the top level must be a mapping of keys")
    algo_name = data.get("algo")
    if not isinstance(algo_name, str):
        raise ConfigError("missing required key 'algo' (a string such as 'deep')")
    algorithm = get_algorithm(algo_name)
    common = {k: v for k, v in data.items() if k != algo_name}
    for key in common:
        if key not in _TOP_KEYS:
            if key in algorithm_names():
                raise ConfigError(f"section '{key}' given but algo is '{algo_name}'")
            raise ConfigError(_unknown_key_message(key, [*_TOP_KEYS, algo_name], ""))
    config = parse(TrainConfig, common)
    check_plain_name(config.name, "name")
    from marketjax.envs.gymnax_adapter import check_env_name

    try:
        check_env_name(config.env)
    except ValueError as e:
        raise ConfigError(f"'env': {e}") from None
    section = parse(algorithm.config_class, data.get(algo_name), algo_name)
    config = dataclasses.replace(config, algo_config=section)
    validate = getattr(section, "validate", None)
    if validate is not None:
        validate(config)  # cross-key checks; raises ConfigError naming the key
    return config


def train_config_to_dict(config: TrainConfig) -> dict:
    """The resolved config as a plain mapping, the algo section under its name."""
    out = to_dict(dataclasses.replace(config, algo_config=None))
    out.pop("algo_config")
    out[config.algo] = to_dict(config.algo_config)
    return out
