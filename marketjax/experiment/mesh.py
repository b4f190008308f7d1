"""Runs and episodes laid out over a device mesh (the ``runner.mesh`` section).

A run of R = points × seeds training runs, each with B parallel episodes, is laid
out over a 2-D ``jax.sharding.Mesh`` of ``seeds × episodes`` devices (both axes
``Auto``, so XLA's SPMD partitioner places what is not pinned):

- the leading run axis of every state leaf and of the params is sharded over
  ``seeds``: runs are independent programs, so this changes no number;
- every state leaf whose dataclass field is declared with ``axes("B", ...)``
  (:mod:`marketjax.core.axes`) has its B axis sharded over ``episodes``. The
  PartitionSpecs are derived from that metadata, never written by hand, and the
  state is re-pinned at the start and end of every update
  (``jax.lax.with_sharding_constraint``) so the layout survives ``lax.scan``.

Everything else (the population's wealth and parameters, optimizer states, the
books) is replicated over ``episodes``. Where a replicated value is computed from
sharded ones, XLA inserts the cross-device reduction: the settlement's
``segment_sum`` of B payments into N + 1 accounts (``markets/ledger.transfer``)
becomes per-device partial sums and one all-reduce, and a minibatch's gradient
mean becomes an all-reduce. Those sums are reordered, so episode sharding equals
one device up to float32 rounding (docs/scaling.md states the tolerance); seed
sharding is bit-identical.

Multi-process runs (``jax.distributed``) use the same mesh over the global device
list: jitted functions take host numpy inputs and produce global arrays; metrics
come back replicated so every process can read them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from marketjax.core.axes import AXES_KEY
from marketjax.core.config import ConfigError
from marketjax.core.schema import TrainConfig, Trainer

SEEDS, EPISODES = "seeds", "episodes"
MESH_AXIS = {"B": EPISODES}  # state axis name -> mesh axis (others replicated)


def check_episodes(config: TrainConfig) -> None:
    """Raises ConfigError unless ``runner.mesh.episodes`` divides ``num_envs``."""
    episodes = config.runner.mesh.episodes
    if config.num_envs % episodes:
        raise ConfigError(
            f"'runner.mesh.episodes' ({episodes}) must divide num_envs "
            f"({config.num_envs})"
        )


def mesh_shape(
    config: TrainConfig, num_runs: int, devices: int | None = None
) -> tuple[int, int]:
    """``(seeds, episodes)`` devices of a run, checked against the config.

    Args:
      config: the training config (``runner.mesh``, ``num_envs``).
      num_runs: R = sweep points × seeds.
      devices: devices available (default ``jax.device_count()``, global).

    Raises:
      ConfigError: one line naming the ``runner.mesh`` key that does not fit.
    """
    devices = jax.device_count() if devices is None else devices
    check_episodes(config)
    mesh = config.runner.mesh
    episodes = mesh.episodes
    if episodes > devices:
        raise ConfigError(
            f"'runner.mesh.episodes' ({episodes}) exceeds the {devices} devices "
            "(force CPU devices with XLA_FLAGS=--xla_force_host_platform_"
            "device_count=N)"
        )
    if mesh.seeds:
        if mesh.seeds * episodes > devices:
            raise ConfigError(
                f"'runner.mesh.seeds' x 'runner.mesh.episodes' ({mesh.seeds} x "
                f"{episodes}) exceeds the {devices} devices"
            )
        if num_runs % mesh.seeds:
            raise ConfigError(
                f"'runner.mesh.seeds' ({mesh.seeds}) must divide the runs "
                f"(num_seeds x sweep points = {num_runs})"
            )
        return mesh.seeds, episodes
    free = devices // episodes  # the default: seeds get the devices left
    seeds = free if config.runner.shard_seeds and num_runs % free == 0 else 1
    return seeds, episodes


@dataclasses.dataclass(frozen=True)
class Layout:
    """A mesh and how a run's state maps onto it."""

    mesh: Mesh
    seeds: int
    episodes: int

    def sharding(self, *spec) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(*spec))

    def inner_specs(self, state: Any) -> Any:
        """One run's state -> a pytree of PartitionSpec (None: not pinned)."""
        return leaf_specs(state, self.episodes > 1)

    def run_shardings(self, state: Any) -> Any:
        """All runs' state (leading R axis) -> a pytree of NamedSharding."""
        specs = leaf_specs(state, self.episodes > 1, run_axis=True)
        return jax.tree.map(lambda s: self.sharding(*s), specs, is_leaf=_is_spec)

    def constrain(self, state: Any) -> Any:
        """Pins one run's B-axis leaves to the episodes axis (inside jit/vmap)."""
        if self.episodes == 1:
            return state
        specs = self.inner_specs(state)

        def pin(x, spec):
            if spec is None:
                return x
            return jax.lax.with_sharding_constraint(x, self.sharding(*spec))

        return jax.tree.map(pin, state, specs, is_leaf=lambda x: x is None)


def _is_spec(x) -> bool:
    return isinstance(x, PartitionSpec)


def _names_of(state: Any, path) -> tuple[str, ...] | None:
    """Axis names of the outermost ``axes(...)`` field on a leaf's path."""
    obj = state
    for key in path:
        name = getattr(key, "name", None)
        if name is None or not dataclasses.is_dataclass(obj):
            return None
        f = {f.name: f for f in dataclasses.fields(obj)}.get(name)
        if f is None:
            return None
        if AXES_KEY in f.metadata:
            return f.metadata[AXES_KEY]
        obj = getattr(obj, name)
    return None


def leaf_specs(state: Any, shard_episodes: bool, run_axis: bool = False) -> Any:
    """PartitionSpecs of every leaf, derived from the ``axes`` metadata.

    Args:
      state: a (nested) struct dataclass; leaves are arrays (or shape structs).
      shard_episodes: map the B axis to the ``episodes`` mesh axis.
      run_axis: leaves carry a leading run axis (mapped to ``seeds``).

    Returns:
      The state's structure with a ``PartitionSpec`` per leaf; without
      ``run_axis`` a leaf that no ``axes("B", ...)`` field covers is ``None``
      (left to XLA), with it ``P("seeds")``.
    """
    paths, treedef = jax.tree_util.tree_flatten_with_path(state)
    lead = (SEEDS,) if run_axis else ()
    out = []
    for path, leaf in paths:
        names = _names_of(state, path)
        axes_ = [MESH_AXIS.get(n) if shard_episodes else None for n in names or ()]
        ndim = len(getattr(leaf, "shape", ())) - len(lead)
        axes_ = axes_[:ndim]
        if any(axes_):
            out.append(PartitionSpec(*lead, *axes_))
        else:
            out.append(PartitionSpec(*lead) if run_axis else None)
    return jax.tree_util.tree_unflatten(treedef, out)


def make_layout(config: TrainConfig, num_runs: int) -> Layout | None:
    """The run's layout, or None on one device (checks ``runner.mesh`` first)."""
    seeds, episodes = mesh_shape(config, num_runs)
    if seeds * episodes == 1:
        return None
    devices = np.asarray(jax.devices()[: seeds * episodes]).reshape(seeds, episodes)
    mesh = Mesh(devices, (SEEDS, EPISODES), axis_types=(AxisType.Auto,) * 2)
    return Layout(mesh, seeds, episodes)


def sharded_trainer(trainer: Trainer, layout: Layout | None) -> Trainer:
    """The trainer with its state pinned to the episodes axis around each update."""
    if layout is None or layout.episodes == 1:
        return trainer

    def update(state, params):
        state, metrics = trainer.update(layout.constrain(state), params)
        return layout.constrain(state), metrics

    return trainer._replace(update=update)


def as_host(tree: Any) -> Any:
    """Typed keys -> their raw key data, arrays -> numpy (inputs any process has)."""

    def host(x):
        if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
            return np.asarray(jax.random.key_data(x))
        return np.asarray(x)

    return jax.tree.map(host, tree)


def jit_init(init, layout: Layout | None, keys: jax.Array, params: dict):
    """``init(keys, params)`` jitted straight into the layout's shardings.

    Returns a function of ``(keys, params)``; under a layout it takes the same
    host values on every process and returns global arrays.
    """
    if layout is None:
        return jax.jit(init)
    impl = jax.random.key_impl(keys)

    def from_data(key_data, p):
        return init(jax.random.wrap_key_data(key_data, impl=impl), p)

    shapes = jax.eval_shape(init, keys, params)
    fn = jax.jit(from_data, out_shardings=layout.run_shardings(shapes))
    return lambda k, p: fn(as_host(k), p)  # params: host or global arrays


def put_params(params: dict, layout: Layout | None) -> dict:
    """The runs' params ``{key: f32[R]}`` as global arrays sharded over seeds."""
    if layout is None:
        return params
    sharding = layout.sharding(SEEDS)

    def put(v):
        v = np.asarray(v)
        return jax.make_array_from_callback(v.shape, sharding, lambda idx: v[idx])

    return {k: put(v) for k, v in params.items()}


def jit_chunk(chunk, layout: Layout | None, state: Any, params: dict):
    """``vmap(chunk)`` over runs, jitted with the layout's in/out shardings.

    Metrics come back replicated so that every process can read them.
    """
    if layout is None:
        return jax.jit(jax.vmap(chunk), donate_argnums=0)
    state_sh = layout.run_shardings(state)
    params_sh = jax.tree.map(lambda _: layout.sharding(SEEDS), params)
    metrics_sh = layout.sharding()
    return jax.jit(
        jax.vmap(chunk, spmd_axis_name=SEEDS),
        in_shardings=(state_sh, params_sh),
        out_shardings=(state_sh, metrics_sh),
        donate_argnums=0,
    )


def gather(tree: Any) -> Any:
    """A global state as local arrays on every process (a collective: all call
    it); on one process the state itself."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    def is_key(x):
        return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)

    impls = [
        jax.random.key_impl(x) if is_key(x) else None for x in jax.tree.leaves(tree)
    ]
    raw = jax.tree.map(lambda x: jax.random.key_data(x) if is_key(x) else x, tree)
    host = multihost_utils.process_allgather(raw, tiled=True)
    leaves, treedef = jax.tree.flatten(host)
    leaves = [
        x if impl is None else jax.random.wrap_key_data(x, impl=impl)
        for x, impl in zip(leaves, impls, strict=True)
    ]
    return jax.tree.unflatten(treedef, leaves)
