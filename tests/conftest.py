"""Test-wide JAX settings (equinox's habit: catch silent broadcasting bugs)."""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# XLA's multi-threaded Eigen pool on CPU can wedge on vmapped programs (seen here
# once with PPO on MultiCatch; PyAutoFit#1528 narrows the same hang to this flag).
# Under `pytest -n 2` on 2 cores each worker gains nothing from it anyway.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
