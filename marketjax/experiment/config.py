"""Config primitives, re-exported from :mod:`marketjax.core.config` (their home),
so that ``from marketjax.experiment.config import load_yaml`` keeps working."""

from marketjax.core.config import (
    ConfigError,
    _unknown_key_message,
    apply_overrides,
    check_plain_name,
    dump_yaml,
    field,
    load_yaml,
    parse,
    to_dict,
)

__all__ = [
    "ConfigError",
    "_unknown_key_message",
    "apply_overrides",
    "check_plain_name",
    "dump_yaml",
    "field",
    "load_yaml",
    "parse",
    "to_dict",
]
