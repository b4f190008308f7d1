"""The networks agents are made of: MLPs, a convolutional bid, a shared trunk.

Flax modules written for ONE input (or any leading batch axes); the families of
``agents/families.py`` wrap them into agents' bid and action parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

CONV_FEATURES = 16  # channels of the conv family's 3 x 3 layer (MinAtar's DQN net)
NORMS = ("layer", "rms")  # the normalisation after each hidden Dense


def hidden_layers(
    x: jax.Array, hidden: Sequence[int], layer_norm: bool, norm: str
) -> jax.Array:
    """Dense, normalisation (if ``layer_norm``), ReLU, for each width in ``hidden``.

    Called inside a compact module's ``__call__``: the layers are that module's
    own submodules (``Dense_0``, ``LayerNorm_0``, ...).
    """
    for width in hidden:
        x = nn.Dense(width)(x)
        if layer_norm:
            x = nn.LayerNorm()(x) if norm == "layer" else nn.RMSNorm()(x)
        x = nn.relu(x)
    return x


class MLP(nn.Module):
    """A ReLU MLP with optional normalisation; ``out`` outputs (squeezed if 1).

    ``norm`` picks the normalisation after each hidden Dense when ``layer_norm``
    is set: ``"layer"`` is LayerNorm (Ba et al. 2016: centre, scale by the
    standard deviation, learned scale and bias); ``"rms"`` is RMSNorm (Zhang &
    Sennrich 2019: scale by the root mean square, learned scale only), which skips
    the mean and the bias and their gradients.
    """

    hidden: Sequence[int]
    out: int
    layer_norm: bool = True
    norm: str = "layer"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = hidden_layers(x, self.hidden, self.layer_norm, self.norm)
        x = nn.Dense(self.out)(x)
        return x[..., 0] if self.out == 1 else x


class Trunk(nn.Module):
    """The hidden layers of :class:`MLP` without its output layer: f32[..., D] ->
    f32[..., hidden[-1]], the features a population of heads shares (the ``trunk``
    family; the torso of Osband et al. 2016's bootstrapped DQN heads)."""

    hidden: Sequence[int]
    layer_norm: bool = True
    norm: str = "layer"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return hidden_layers(x, self.hidden, self.layer_norm, self.norm)


class ConvMLP(nn.Module):
    """A 3 x 3 convolution (ReLU) over an image observation, then :class:`MLP`.

    Input: f32[D] or f32[B, D], the flattened ``shape`` = (H, W, C) image.
    """

    shape: tuple[int, int, int]
    hidden: Sequence[int]
    out: int
    layer_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        lead = x.shape[:-1]
        image = x.reshape((-1, *self.shape))  # f32[B, H, W, C]
        h = nn.relu(nn.Conv(CONV_FEATURES, (3, 3), padding="SAME")(image))
        h = h.reshape((*lead, -1))  # f32[..., H * W * 16]
        return MLP(self.hidden, self.out, self.layer_norm)(h)


def perturb_floats(key: jax.Array, tree: Any, scale: jax.Array) -> Any:
    """Adds N(0, scale²) noise to every floating-point leaf of ``tree``."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    out = [
        leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        if jnp.issubdtype(leaf.dtype, jnp.floating)
        else leaf
        for k, leaf in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)
