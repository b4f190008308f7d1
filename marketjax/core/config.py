"""YAML configs into frozen, hashable dataclasses, with errors that name the key.

Every config is a tree of frozen dataclasses (STYLE.md point 9). ``parse`` walks a
plain mapping (from ``yaml.safe_load``) against a dataclass schema and fails, before
anything compiles, with one line naming the offending key: an unknown key (with the
closest valid key for a misspelling), a missing key, a wrong type, or a value out of
range. Ranges and choices live in field metadata, written with :func:`field`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config key is unknown, missing, mistyped or out of range."""


def field(
    default: Any = dataclasses.MISSING,
    *,
    lo=None,
    hi=None,
    lo_open=False,
    doc: str = "",
    static: bool = False,
):
    """A dataclass field with an optional range ``lo <= value <= hi``.

    Args:
      default: default value (omit for a required key).
      lo: smallest allowed value (``None``: unbounded).
      hi: largest allowed value (``None``: unbounded).
      lo_open: if True the lower bound is strict (``lo < value``).
      doc: one line describing the key (shown by error messages and docs).
      static: a float that sets shapes or the program's structure, so it cannot
        be swept (every other float key of an algorithm section can).
    """
    metadata = {"lo": lo, "hi": hi, "lo_open": lo_open, "doc": doc, "static": static}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults: configs are hashable")
    return dataclasses.field(default=default, metadata=metadata)


def load_yaml(path: str | Path) -> dict:
    """Reads a YAML mapping with ``yaml.safe_load`` (never the unsafe loader)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with path.open() as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(e)})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return data


def apply_overrides(data: Mapping, overrides: Sequence[str]) -> dict:
    """Returns a copy of ``data`` with ``key.sub=value`` overrides applied.

    Values are parsed as YAML scalars (``lr=3e-4`` is a float, ``debug=true`` a bool).
    """
    out = _deep_copy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        if not all(keys):
            raise ConfigError(f"override {item!r} has an empty key")
        node = out
        for k in keys[:-1]:
            if node.get(k) is None:  # absent, or an empty YAML section (`deep:`)
                node[k] = {}
            child = node[k]
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {k!r} is not a section")
            node = child
        try:
            node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(
                f"override {item!r}: value is not valid YAML ({_yaml_problem(e)})"
            ) from None
    return out


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line saying what is wrong with a YAML text, and where."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{problem}{where}"


def check_plain_name(value: str, key: str) -> str:
    """Checks that ``value`` names one directory: no separators, not hidden.

    A run or results name becomes ``<out_dir>/<name>``; a name such as ``../x``
    or ``a/b`` would write (or, with ``--overwrite``, delete) outside ``out_dir``.

    Raises:
      ConfigError: naming ``key``.
    """
    if not value or "/" in value or "\\" in value or value.startswith("."):
        raise ConfigError(f"'{key}' must be a plain directory name, got {value!r}")
    return value


def _deep_copy(data: Mapping) -> dict:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def parse(cls: type, data: Mapping | None, where: str = ""):
    """Builds the frozen dataclass ``cls`` from a mapping, validating every key.

    Args:
      cls: a (frozen) dataclass type; nested dataclass fields are parsed recursively.
      data: the mapping, e.g. a section of a YAML file (``None`` means empty).
      where: dotted prefix of this section, used in error messages.

    Raises:
      ConfigError: one line naming the key that is wrong and why.
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where or 'config'}: expected a mapping of keys, got "
            f"{type(data).__name__}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(_unknown_key_message(str(key), list(fields), where))
    values = {}
    for name, f in fields.items():
        dotted = f"{where}.{name}" if where else name
        if name in data:
            values[name] = _coerce(hints[name], data[name], dotted)
            _check_range(f, values[name], dotted)
        elif (
            f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):
            if dataclasses.is_dataclass(hints[name]):
                values[name] = parse(hints[name], {}, dotted)
            else:
                raise ConfigError(f"missing required key '{dotted}'")
    return cls(**values)


def _unknown_key_message(key: str, valid: list[str], where: str) -> str:
    dotted = f"{where}.{key}" if where else key
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key '{dotted}'{hint}; valid keys: {', '.join(sorted(valid))}"


def _coerce(hint: Any, value: Any, dotted: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _coerce(a, value, dotted)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"'{dotted}' must be one of {choices}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{dotted}' must be a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(item, v, f"{dotted}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, dotted)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{dotted}' must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"'{dotted}' must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)  # YAML reads "1e-3" (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{dotted}' must be a number, got {value!r}")
        if not math.isfinite(value):  # NaN passes every range check
            raise ConfigError(f"'{dotted}' must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{dotted}' must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} for '{dotted}'")


def _check_range(f: dataclasses.Field, value: Any, dotted: str) -> None:
    lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
    if value is None or not isinstance(value, (int, float)):
        return
    if lo is not None:
        bad = value <= lo if f.metadata.get("lo_open") else value < lo
        if bad:
            op = ">" if f.metadata.get("lo_open") else ">="
            raise ConfigError(f"'{dotted}' must be {op} {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"'{dotted}' must be <= {hi}, got {value!r}")


def to_dict(config) -> dict:
    """A plain, YAML-serialisable mapping of a config (tuples become lists)."""

    def plain(x):
        if dataclasses.is_dataclass(x):
            return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, tuple):
            return [plain(v) for v in x]
        return x

    return plain(config)


def dump_yaml(config) -> str:
    """The resolved config as YAML text (what a run directory stores)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)
