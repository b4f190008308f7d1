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


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a mapping repeating a key.

    Plain ``yaml.safe_load`` keeps the last of two equal keys without a word, so a
    config that sets ``lr`` twice silently runs with the second value. Only the
    mapping constructor changes: every tag is still resolved as by ``safe_load``.
    """

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key (a list or mapping as a key)
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a scalar", key_node.start_mark
                ) from None
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {first.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` semantics, but a repeated mapping key is an error."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass


def load_yaml(path: str | Path) -> dict:
    """Reads a YAML mapping with ``yaml.safe_load`` semantics (never the unsafe
    loader); a key repeated within one mapping is an error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with path.open() as f:
            data = safe_load(f.read())
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
            node[keys[-1]] = safe_load(raw) if raw.strip() else ""
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
    if len(value) > MAX_NAME_LENGTH:
        raise ConfigError(
            f"'{key}' must be at most {MAX_NAME_LENGTH} characters, got {len(value)}"
        )
    check_printable(value, key)
    return value


MAX_NAME_LENGTH = 100  # a run name is one path component (filesystems allow 255)


def check_printable(value: str, key: str) -> str:
    """Checks that ``value`` holds no NUL or other control character (a path with
    one cannot be created, and a name with one cannot be read back in a listing).

    Raises:
      ConfigError: naming ``key``.
    """
    bad = [c for c in value if ord(c) < 32 or ord(c) == 127]
    if bad:
        raise ConfigError(f"'{key}' must not contain control characters, got {value!r}")
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
        if isinstance(value, str):
            with contextlib.suppress(ValueError, OverflowError):
                value = float(value)  # YAML 1.1 reads "1e6" (no dot) as a string
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
    if isinstance(value, tuple):  # a list of numbers: the range holds for each
        for i, item in enumerate(value):
            _check_range(f, item, f"{dotted}[{i}]")
        return
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


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is tuple:
        return f"list of {_type_name(args[0]) if args else 'values'}"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _number_text(x) -> str:
    """An exact integer up to 10 digits (2147483647, 1048576), else ``%g``."""
    if isinstance(x, int) and len(str(abs(x))) <= 10:
        return str(x)
    return f"{x:g}"


def _range_text(f: dataclasses.Field) -> str:
    lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
    if lo is None and hi is None:
        return ""
    left = "(" if f.metadata.get("lo_open") else "["
    lo_text = "-inf" if lo is None else _number_text(lo)
    hi_text = "inf" if hi is None else _number_text(hi)
    return f"{left}{lo_text}, {hi_text}]"


def describe(cls: type, skip: Sequence[str] = ()) -> list[tuple[str, ...]]:
    """``[(key, type, default, range, doc)]`` of a config section, from its fields'
    metadata (what ``marketjax config SECTION`` prints)."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            default = "(section)"
        elif f.default is not dataclasses.MISSING:
            default = yaml.safe_dump(to_dict(f.default), default_flow_style=True)
            default = default.strip().removesuffix("...").strip()
        else:
            default = "(required)"
        doc = f.metadata.get("doc", "")
        if dataclasses.is_dataclass(hint):
            doc = doc or f"the {f.name}: section"
        rows.append((f.name, _type_name(hint), default, _range_text(f), doc))
        args = typing.get_args(hint)
        if (
            typing.get_origin(hint) is tuple
            and args
            and dataclasses.is_dataclass(args[0])
        ):  # a list of entries (compare's envs, algorithms): each entry's keys
            for row in describe(args[0]):
                rows.append((f"{f.name}[].{row[0]}", *row[1:]))
    return rows
