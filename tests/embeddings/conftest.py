"""Numpy helpers: random MLPs and a reference forward pass without eager JAX ops
(each eager op on a new shape compiles a kernel; numpy keeps these tests fast)."""

import itertools

import numpy as np
import pytest

_ACT = {
    "relu": lambda a: np.maximum(a, 0.0),
    "tanh": np.tanh,
    "softplus": lambda a: np.logaddexp(a, 0.0),
}


def np_mlp_init(seed, sizes, scale=1.0):
    rng = np.random.default_rng(seed)
    return [
        (
            (rng.standard_normal((i, o)) * scale / np.sqrt(i)).astype(np.float32),
            (0.1 * rng.standard_normal(o)).astype(np.float32),
        )
        for i, o in itertools.pairwise(sizes)
    ]


def np_mlp_apply(layers, x, activation):
    h = np.asarray(x, np.float64)
    for i, (w, b) in enumerate(layers):
        a = h @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
        h = a if i == len(layers) - 1 else _ACT[activation](a)
    return h


@pytest.fixture
def np_mlp():
    """``(init(seed, sizes, scale=1.0), apply(layers, x, activation))``."""
    return np_mlp_init, np_mlp_apply
