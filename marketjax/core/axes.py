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

import jax
import jax.numpy as jnp
from flax import struct

AXES_KEY = "axes"
RUN_AXIS = "runs"  # the name of the runner's vmap over runs (seeds x sweep points)


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


def any_across_runs(flag: jax.Array) -> jax.Array:
    """bool[]: ``flag`` or'ed over every run the runner vmaps under :data:`RUN_AXIS`.

    Outside such a ``vmap`` (one run, ``lax.map`` over runs, or a device mesh) it
    is ``flag`` itself. The point: a predicate that is the same for every run is
    unbatched, so a ``lax.cond`` on it stays a branch under ``vmap`` instead of
    becoming a select that computes both sides.
    """
    try:
        return jax.lax.psum(flag.astype(jnp.int32), RUN_AXIS) > 0
    except NameError:  # the axis is not bound: no runs to or over
        return flag
