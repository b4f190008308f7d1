"""Test-wide JAX settings (equinox's habit: catch silent broadcasting bugs)."""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
