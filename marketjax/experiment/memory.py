"""The memory a training config needs, estimated before anything compiles.

A run holds its training state (every run's networks, optimiser moments, wealth and
env states: measured exactly with ``jax.eval_shape`` of the initialiser, which traces
but never compiles), the rollout of one update (R runs x ``steps_per_update`` steps,
each an observation, the agents' bids and a few scalars), and the activations of the
agents' networks during that rollout. The estimate is

    2 x state  +  3 x rollout  +  2 x activations

(state: the chunk's input and output; rollout and activations: the forward records,
their gradients and temporaries). Agents that share one trunk (``deep.family:
trunk``) run one network per observation, not ``num_agents``: their activations
are those of one network (their bids are in the rollout). It is an
order-of-magnitude guard: it refuses a
config that cannot fit (``num_envs=1e6``, ``deep.num_agents=1e5`` with wide
networks) with one line naming the keys, instead of an out-of-memory traceback
minutes later.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.agents.families import SHARED_TRUNK
from marketjax.core.config import ConfigError
from marketjax.experiment.registry import TrainConfig, get_algorithm, sweep_points

F32 = 4


def available_bytes() -> int | None:
    """Memory a run may use: the accelerator's limit, else ``MemAvailable`` of
    ``/proc/meminfo`` (None if neither can be read)."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _tree_bytes(tree) -> int:
    return sum(
        math.prod(x.shape) * np.dtype(x.dtype).itemsize
        if not jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
        else math.prod(x.shape) * 8
        for x in jax.tree.leaves(tree)
    )


def estimate(config: TrainConfig) -> tuple[int, list[tuple[str, int]]]:
    """``(total bytes, [(what, bytes), ...])`` of a config (see module docstring)."""
    trainer = get_algorithm(config.algo).make_trainer(config)
    runs = len(sweep_points(config)) * config.num_seeds
    section = config.algo_config
    a = config.algo
    keys = jax.ShapeDtypeStruct((runs,), jax.random.key(0).dtype)
    params = {
        k: jax.ShapeDtypeStruct((runs,), jnp.float32) for k in (trainer.params or {})
    }
    state = jax.eval_shape(jax.vmap(trainer.init), keys, params)
    state_bytes = _tree_bytes(state)
    from marketjax.envs.gymnax_adapter import env_spec

    spec = env_spec(config.env)
    agents = getattr(section, "num_agents", 1)
    agents = agents if isinstance(agents, int) else 1
    widths = getattr(section, "hidden", None) or (64,)
    hidden = sum(widths) if isinstance(widths, (tuple, list)) else int(widths)
    steps = runs * trainer.steps_per_update  # samples of one update, all runs
    per_step = spec.obs_dim + max(spec.num_actions, 1) + agents + 8
    rollout = steps * per_step * F32
    shared = getattr(section, "family", None) in SHARED_TRUNK
    activations = steps * (1 if shared else agents) * hidden * F32
    horizon = "rollout_steps" if hasattr(section, "rollout_steps") else "num_steps"
    common = f"num_seeds={config.num_seeds} x num_envs={config.num_envs}"
    common += f" x {a}.{horizon}={getattr(section, horizon, 1)}"
    if len(sweep_points(config)) > 1:
        common += f" x {len(sweep_points(config))} sweep points"
    terms = [
        (f"state ({a}.num_agents={agents}, {a}.hidden, {common})", 2 * state_bytes),
        (f"rollout ({common})", 3 * rollout),
        (
            f"activations ({common} x {a}.num_agents={agents} x {a}.hidden)",
            2 * activations,
        ),
    ]
    if not hasattr(section, "num_agents") or shared:
        terms[2] = (f"activations ({common} x {a}.hidden)", terms[2][1])
    if not hasattr(section, "num_agents"):
        terms[0] = (f"state ({a}.hidden, {common})", terms[0][1])
    return sum(b for _, b in terms), terms


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def check_memory(config: TrainConfig, available: int | None = None) -> int:
    """Refuses a config whose estimate exceeds the memory available.

    Returns:
      the estimate in bytes.

    Raises:
      ConfigError: one line with the estimate, the largest term and its keys.
    """
    total, terms = estimate(config)
    available = available_bytes() if available is None else available
    if available is not None and total > available:
        what, _ = max(terms, key=lambda t: t[1])
        raise ConfigError(
            f"the config needs about {gib(total)} but {gib(available)} is "
            f"available; the largest part is the {what}: lower one of those keys"
        )
    return total
