"""Axis names of market-state leaves, kept in dataclass field metadata.

A state field declared ``owner: jax.Array = axes("B")`` says that its leading axis
is the episode axis B; ``holdings = axes("B", "N", "G")`` names three. The sharding
layer derives ``PartitionSpec``\\ s from these names instead of writing them by hand
(:func:`leaf_axes` walks a state and returns the names of every array leaf).

Names: ``B`` parallel episodes, ``N`` agents, ``G`` goods, ``D`` observation
features; ``()`` marks a scalar shared by the whole market.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flax import struct

AXES_KEY = "axes"


def axes(*names: str, **kwargs: Any):
    """A ``flax.struct`` field whose leading axes are named ``names``."""
    metadata = {**kwargs.pop("metadata", {}), AXES_KEY: tuple(names)}
    return struct.field(metadata=metadata, **kwargs)


def leaf_axes(state: Any) -> dict[str, tuple[str, ...]]:
    """Axis names of every annotated array field of a (nested) struct dataclass.

    Returns:
      ``{dotted.path: names}`` for every field declared with :func:`axes`, walking
      nested dataclasses (``population.wealth -> ("N",)``).
    """
    out: dict[str, tuple[str, ...]] = {}

    def walk(obj: Any, prefix: str) -> None:
        if not dataclasses.is_dataclass(obj):
            return
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            path = f"{prefix}{f.name}"
            if AXES_KEY in f.metadata:
                out[path] = f.metadata[AXES_KEY]
            walk(value, path + ".")

    walk(state, "")
    return out
