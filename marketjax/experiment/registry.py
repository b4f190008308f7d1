"""The algorithm registry and the parsing of whole training configs.

An algorithm is a name, a frozen dataclass for its own config section (the YAML
section named after the algorithm: ``deep:``, ``ppo:``, ``wide:``), and
``make_trainer(config) -> Trainer`` (``marketjax.core.schema``). The runner, the
checkpoints, the command line and the comparison harness only ever see a
:class:`Trainer`, so one runner serves every algorithm, and a user's own algorithm
joins with :func:`register`. Built-ins live in ``marketjax/algos/``.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from marketjax.algos import ALGORITHMS
from marketjax.core.config import (
    ConfigError,
    _unknown_key_message,
    check_plain_name,
    check_printable,
    parse,
    to_dict,
)
from marketjax.core.schema import (  # re-exported: the first wave's home
    RunnerConfig,
    TrainConfig,
    Trainer,
    planned_updates,
    sweepable_keys,
    total_updates,
)
from marketjax.experiment.mesh import check_episodes

__all__ = [
    "Algorithm",
    "RunnerConfig",
    "TrainConfig",
    "Trainer",
    "algorithm_names",
    "get_algorithm",
    "parse_train_config",
    "planned_updates",
    "register",
    "sweep_points",
    "total_updates",
    "train_config_to_dict",
]


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """A registered training algorithm."""

    name: str
    config_class: type
    make_trainer: Callable[[TrainConfig], Trainer]
    # Optional ``report(final_state, config, out_dir) -> dict``: what a finished
    # run adds to its summary.json (and pictures it draws into out_dir); the
    # state has a leading seed axis.
    report: Callable | None = None


_REGISTERED: dict[str, Algorithm] = {}


def register(
    name: str,
    config_class: type,
    make_trainer: Callable,
    report: Callable | None = None,
) -> None:
    """Registers an algorithm so configs (``algo: name``) and the harness can use it."""
    _REGISTERED[name] = Algorithm(name, config_class, make_trainer, report)


def algorithm_names() -> list[str]:
    return sorted({*ALGORITHMS, *_REGISTERED})


def get_algorithm(name: str) -> Algorithm:
    """The algorithm registered under ``name`` (built-ins are imported on first use)."""
    if name not in _REGISTERED and name in ALGORITHMS:
        module = importlib.import_module(ALGORITHMS[name])
        report = getattr(module, "report", None)
        register(name, module.CONFIG_CLASS, module.make_trainer, report)
    if name not in _REGISTERED:
        raise ConfigError(
            _unknown_key_message(name, algorithm_names(), "algo").replace(
                "unknown key", "unknown algorithm"
            )
        )
    return _REGISTERED[name]


_TOP_KEYS = [
    f.name
    for f in dataclasses.fields(TrainConfig)
    if f.name not in ("algo_config", "sweep")
]


def _flatten(mapping: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _parse_sweep(data: Any, algo_name: str, config_class: type) -> tuple:
    """The ``sweep:`` section as ``((dotted key, (values, ...)), ...)``.

    Raises:
      ConfigError: a key that is not a sweepable key of the algorithm's section
        (shape-setting keys such as num_agents, hidden or num_envs), or values that
        are not a non-empty list.
    """
    if data is None:
        return ()
    if not isinstance(data, Mapping):
        raise ConfigError("'sweep' must map dotted keys to lists of values")
    allowed = [f"{algo_name}.{k}" for k in sweepable_keys(config_class)]
    grid = []
    for key, values in _flatten(data).items():
        key = str(key)
        if key not in allowed:
            why = (
                "changes shapes or the program's structure"
                if key.split(".")[-1] in _TOP_KEYS
                or (
                    key.startswith(f"{algo_name}.")
                    and key.split(".", 1)[1]
                    in {f.name for f in dataclasses.fields(config_class)}
                )
                else "is not a key of this config"
            )
            raise ConfigError(
                f"sweep key '{key}' {why}; sweepable keys: {', '.join(allowed)}"
            )
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"'sweep.{key}' must be a non-empty list of values")
        grid.append((key, tuple(values)))
    return tuple(grid)


def parse_train_config(data: Mapping) -> TrainConfig:
    """Validates a whole training config (a mapping) into a :class:`TrainConfig`.

    Raises:
      ConfigError: naming the first bad key (unknown, missing, mistyped, out of
        range, an unknown algorithm or environment, a key that cannot be swept).
    """
    if not isinstance(data, Mapping):
        raise ConfigError("config: the top level must be a mapping of keys")
    algo_name = data.get("algo")
    if not isinstance(algo_name, str):
        raise ConfigError("missing required key 'algo' (a string such as 'deep')")
    algorithm = get_algorithm(algo_name)
    common = {k: v for k, v in data.items() if k not in (algo_name, "sweep")}
    for key in common:
        if key not in _TOP_KEYS:
            if key in algorithm_names():
                raise ConfigError(f"section '{key}' given but algo is '{algo_name}'")
            raise ConfigError(
                _unknown_key_message(str(key), [*_TOP_KEYS, algo_name, "sweep"], "")
            )
    config = parse(TrainConfig, common)
    check_plain_name(config.name, "name")
    check_printable(config.runner.out_dir, "runner.out_dir")
    from marketjax.envs.gymnax_adapter import check_env_name

    try:
        check_env_name(config.env)
    except ValueError as e:
        raise ConfigError(f"'env': {e}") from None
    section_data = data.get(algo_name)
    section = parse(algorithm.config_class, section_data, algo_name)
    config = dataclasses.replace(config, algo_config=section)
    resolve = getattr(section, "resolve", None)
    if resolve is not None:  # choices the config leaves to the env ("auto")
        config = dataclasses.replace(config, algo_config=resolve(config))
        section = config.algo_config
    check_episodes(config)  # before the section's checks, which divide by it
    validate = getattr(section, "validate", None)
    if validate is not None:
        validate(config)  # cross-key checks; raises ConfigError naming the key
    grid = _parse_sweep(data.get("sweep"), algo_name, algorithm.config_class)
    config = dataclasses.replace(config, sweep=grid)
    for _, point in sweep_points(config):  # every point passes the range checks
        if validate is not None:  # and its own section's cross-key checks
            point.algo_config.validate(point)
    return config


def sweep_points(config: TrainConfig) -> list[tuple[str, TrainConfig]]:
    """The sweep's grid as ``[(label, config of that point)]`` (one point, label
    ``""``, when the config has no sweep).

    A label joins ``key=value`` pairs with commas, in the sweep's key order:
    ``deep.lr=0.001,deep.rent=0.0``. A point's config is the config a user would
    run alone with those overrides.
    """
    if not config.sweep:
        return [("", config)]
    keys = [k for k, _ in config.sweep]
    out = []
    for values in itertools.product(*(v for _, v in config.sweep)):
        section = to_dict(config.algo_config)
        for key, value in zip(keys, values, strict=True):
            section[key.split(".", 1)[1]] = value
        parsed = parse(type(config.algo_config), section, config.algo)
        label = ",".join(f"{k}={getattr(parsed, k.split('.', 1)[1])!r}" for k in keys)
        out.append((label, dataclasses.replace(config, algo_config=parsed, sweep=())))
    return out


def train_config_to_dict(config: TrainConfig) -> dict:
    """The resolved config as a plain mapping, the algo section under its name."""
    out = to_dict(dataclasses.replace(config, algo_config=None, sweep=()))
    out.pop("algo_config")
    out.pop("sweep")
    out[config.algo] = to_dict(config.algo_config)
    if config.sweep:
        out["sweep"] = {k: list(v) for k, v in config.sweep}
    return out
