"""The record of pure functions that defines an agent family (Definition 2.1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax


class AgentFamily(NamedTuple):
    """The pure functions of one agent family (``agents/families.py``'s docstring)."""

    name: str
    init: Callable[[jax.Array], Any]
    bid: Callable[[Any, jax.Array], jax.Array]
    act: Callable[[jax.Array, Any, jax.Array], jax.Array]
    mutate: Callable[[jax.Array, Any, jax.Array], Any]
    constant_action: bool  # True if α̂ ignores the observation
    num_actions: int  # size of the discrete action space
    # (params, obs f32[D]) -> f32[A], a program's value per action (qnet), or None
    values: Callable[[Any, jax.Array], jax.Array] | None = None
    # key -> parameters every agent shares (the trunk family's MLP), or None
    init_shared: Callable[[jax.Array], Any] | None = None
    # (shared, obs f32[..., D]) -> f32[..., H], the features ``bid`` and ``act``
    # read in place of the observation when set (trunk), or None
    features: Callable[[Any, jax.Array], jax.Array] | None = None
