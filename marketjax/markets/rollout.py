"""The one rollout every market shares: ``num_steps`` steps of ``market.step``.

A market is any object with pure ``init(key, population) -> state``,
``step(key, state, params) -> (state, record)``, ``forget(state, replaced) ->
state`` and ``experience(key, state, records, params) -> Experience``
(``learners/base.py``); ``rollout`` scans its ``step``.
"""

from __future__ import annotations

from typing import Any

import jax


def rollout(
    market: Any, key: jax.Array, state: Any, params: Any, num_steps: int
) -> tuple[Any, Any]:
    """``num_steps`` market steps with ``lax.scan``; records stacked [T, ...]."""

    def body(s, k):
        return market.step(k, s, params)

    return jax.lax.scan(body, state, jax.random.split(key, num_steps))
