"""Atomic files and checkpoints (flax msgpack; never pickle).

A checkpoint holds the training state of every seed and a small metadata mapping. It
is written to a temporary file in the same folder and moved into place with
``os.replace``, so a crash leaves either the old checkpoint or the new one, never half
of one. Typed PRNG keys are stored as their raw ``uint32`` key data and re-wrapped on
load using the template's key implementation.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization


def _file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the umask (0o644 usually)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Writes ``data`` to ``path`` atomically (temporary file, fsync, rename).

    The file gets the mode of a file written with ``open()`` (``mkstemp`` alone
    would leave it readable by its owner only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Writes ``obj`` as strict JSON, atomically; NaN and inf become ``null``.

    (``json.dumps`` would otherwise write the bare tokens ``NaN``/``Infinity``,
    which strict JSON parsers reject.)
    """
    write_atomic(path, json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n")


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_storable(state: Any) -> Any:
    return jax.tree.map(
        lambda x: np.asarray(jax.random.key_data(x)) if _is_key(x) else np.asarray(x),
        state,
    )


def _with_empty_fields(expected: Any, stored: Any) -> Any:
    """``stored`` with every field that holds no arrays in ``expected`` (``{}``)
    added where missing: a checkpoint written before such a field existed (e.g.
    ``Population.shared``, empty for every family but the trunk) still loads."""
    if not isinstance(expected, dict) or not isinstance(stored, dict):
        return stored
    out = dict(stored)
    for key, value in expected.items():
        if key not in out and not jax.tree.leaves(value):
            out[key] = value
        elif key in out:
            out[key] = _with_empty_fields(value, out[key])
    return out


def save_checkpoint(path: str | Path, state: Any, meta: dict) -> None:
    """Saves ``state`` (any pytree of arrays) and ``meta`` (JSON-able) atomically."""
    payload = {
        "state": serialization.to_state_dict(_to_storable(state)),
        "meta": json.dumps(meta),
    }
    write_atomic(path, serialization.msgpack_serialize(payload))


def load_checkpoint(path: str | Path, template: Any) -> tuple[Any, dict]:
    """Loads a checkpoint written by :func:`save_checkpoint`.

    Args:
      path: the checkpoint file.
      template: a pytree with the state's structure (arrays or ``ShapeDtypeStruct``,
        e.g. from ``jax.eval_shape``); its typed-key leaves say how to re-wrap keys.

    Raises:
      ValueError: if the file's shapes do not match the template's.
    """
    with open(path, "rb") as f:
        payload = serialization.msgpack_restore(f.read())
    storable_template = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(
            jax.random.key_data(x).shape if _is_key(x) else x.shape,
            jnp.uint32 if _is_key(x) else x.dtype,
        ),
        template,
        is_leaf=_is_key,
    )
    stored = _with_empty_fields(
        serialization.to_state_dict(storable_template), payload["state"]
    )
    restored = serialization.from_state_dict(storable_template, stored)

    def rewrap(t, x):
        x = jnp.asarray(x)
        want = jax.random.key_data(t).shape if _is_key(t) else t.shape
        if x.shape != tuple(want):
            raise ValueError(f"checkpoint {path}: shape {x.shape} != expected {want}")
        if _is_key(t):
            return jax.random.wrap_key_data(x, impl=jax.random.key_impl(t))
        return x.astype(t.dtype)

    state = jax.tree.map(rewrap, template, restored, is_leaf=_is_key)
    return state, json.loads(payload["meta"])
