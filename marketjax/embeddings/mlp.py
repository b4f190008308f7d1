"""Multi-layer perceptrons as plain data: parameter parsing, activations, reference.

Shared by the Theorem 3.1 embedding (:mod:`marketjax.embeddings.nn_market`) and the
Eq. (1) production economy (:mod:`marketjax.embeddings.prices`). An MLP is a list of
``(W f[in, out], b f[out])`` pairs as in flax ``Dense`` (``y = x @ W + b``); hidden
layers apply an activation, the last layer is linear. Flax parameter dicts
(``{"params": {"Dense_0": {"kernel": ..., "bias": ...}, ...}}`` or
``{"Dense_0": {...}}``) are accepted too, ordered by the number in their name.

Every activation comes with its derivative written out, so the market side never
differentiates the network (the firms of Eq. (1) know their own technology).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Layers = list[tuple[jax.Array, jax.Array]]

# name -> (sigma(a), sigma'(a)); relu'(0) = 0, as jax.grad(jax.nn.relu)(0.0).
ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "relu": (jax.nn.relu, lambda a: (a > 0).astype(a.dtype)),
    "tanh": (jnp.tanh, lambda a: 1.0 - jnp.tanh(a) ** 2),
    "softplus": (jax.nn.softplus, jax.nn.sigmoid),
    "sigmoid": (
        jax.nn.sigmoid,
        lambda a: jax.nn.sigmoid(a) * (1.0 - jax.nn.sigmoid(a)),
    ),
    "identity": (lambda a: a, jnp.ones_like),
}


def check_activation(activation: str) -> str:
    """Returns ``activation`` or raises ``ValueError`` naming the valid ones."""
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; expected one of "
            f"{', '.join(sorted(ACTIVATIONS))}"
        )
    return activation


def _dense_index(name: str) -> int:
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match else -1


def _from_flax(params: Mapping) -> list[tuple[Any, Any]]:
    if "params" in params and isinstance(params["params"], Mapping):
        params = params["params"]
    names = sorted(params, key=lambda n: (_dense_index(str(n)), str(n)))
    pairs = []
    for name in names:
        layer = params[name]
        if not isinstance(layer, Mapping) or "kernel" not in layer:
            raise ValueError(f"layer {name!r}: expected a mapping with a 'kernel'")
        if "bias" not in layer:
            raise ValueError(f"layer {name!r}: no 'bias' (use_bias=False unsupported)")
        pairs.append((layer["kernel"], layer["bias"]))
    return pairs


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def as_layers(params: Any) -> Layers:
    """Normalises MLP parameters to a list of float32 ``(W f[in, out], b f[out])``.

    Args:
      params: a sequence of ``(W, b)`` pairs, or a flax ``Dense`` parameter dict.

    Returns:
      The layers as float32 arrays, in order.

    Raises:
      ValueError: no layers; a kernel that is not 2-D; a bias whose length is not the
        kernel's output width; consecutive layers whose widths do not chain; or
        non-finite weights (checked when the arrays are concrete, i.e. outside jit).
        The message names the layer and the problem.
    """
    if isinstance(params, Mapping):
        pairs = _from_flax(params)
    elif isinstance(params, Sequence) and not isinstance(params, str):
        pairs = list(params)
    else:
        raise ValueError(
            "params must be a list of (W, b) pairs or a flax Dense parameter dict, "
            f"got {type(params).__name__}"
        )
    if not pairs:
        raise ValueError("params: the network has no layers")
    layers: Layers = []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, Sequence) and len(pair) == 2):
            raise ValueError(f"layer {i}: expected a (W, b) pair")
        w, b = pair
        w = jnp.asarray(w, jnp.float32)
        b = jnp.asarray(b, jnp.float32)
        if w.ndim != 2:
            raise ValueError(f"layer {i}: kernel must be 2-D [in, out], got {w.shape}")
        if b.shape != (w.shape[1],):
            raise ValueError(
                f"layer {i}: bias shape {b.shape} does not match the kernel's output "
                f"width {w.shape[1]} (kernel {w.shape})"
            )
        if layers and layers[-1][0].shape[1] != w.shape[0]:
            raise ValueError(
                f"layer {i}: input width {w.shape[0]} does not match layer {i - 1}'s "
                f"output width {layers[-1][0].shape[1]}"
            )
        for what, arr in (("kernel", w), ("bias", b)):
            if _is_concrete(arr) and not np.isfinite(np.asarray(arr)).all():
                raise ValueError(f"layer {i}: {what} has non-finite values (nan/inf)")
        layers.append((w, b))
    return layers


def add_bias(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a f[..., out] + b f[out]`` with the broadcast written out (rank promotion)."""
    return a + jnp.broadcast_to(b, a.shape)


def apply(layers: Layers, x: jax.Array, activation: str) -> jax.Array:
    """The reference MLP forward pass ``f[..., in] -> f[..., out]`` (not a market)."""
    sigma = ACTIVATIONS[check_activation(activation)][0]
    h = x
    for i, (w, b) in enumerate(layers):
        a = add_bias(h @ w, b)
        h = a if i == len(layers) - 1 else sigma(a)
    return h


def init(key: jax.Array, sizes: Sequence[int], scale: float = 1.0) -> Layers:
    """A random MLP: LeCun-normal kernels (times ``scale``), small random biases.

    Args:
      key: a typed key (``jax.random.key``).
      sizes: widths ``(in, hidden..., out)``, at least two entries.
      scale: multiplies the kernels' standard deviation ``1/sqrt(in)``.
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes must have at least two entries, got {tuple(sizes)}")
    layers: Layers = []
    for k, (n_in, n_out) in zip(
        jax.random.split(key, len(sizes) - 1),
        itertools.pairwise(sizes),
        strict=True,
    ):
        k_w, k_b = jax.random.split(k)
        w = jax.random.normal(k_w, (n_in, n_out), jnp.float32) * (scale / n_in**0.5)
        b = 0.1 * jax.random.normal(k_b, (n_out,), jnp.float32)
        layers.append((w, b))
    return layers
