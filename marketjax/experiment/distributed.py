"""Several processes, one run: JAX's own multi-process runtime, driven by the CLI.

``marketjax train CONFIG --coordinator HOST:PORT --num-processes P --process-id I``
(or the environment variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``; flags win) calls ``jax.distributed.initialize`` before any
computation. Every process then runs the same program over the global device
mesh (:mod:`marketjax.experiment.mesh`): ``runner.mesh`` counts global devices,
so 2 processes × 2 devices give ``runner.mesh.episodes=4``. Only process 0 writes
the run directory; the others run the same host loop (every collective needs
all of them) into a scratch directory that is deleted afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from marketjax.core.config import ConfigError

ENV_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def distributed_args(
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    environ: Mapping[str, str] = os.environ,
) -> dict | None:
    """Arguments of ``jax.distributed.initialize``, or None for one process.

    Flags win over the environment variables :data:`ENV_VARS`.

    Raises:
      ConfigError: a flag is missing or out of range (names it).
    """
    coordinator = coordinator or environ.get(ENV_VARS[0])
    if num_processes is None and environ.get(ENV_VARS[1]):
        num_processes = _int(environ[ENV_VARS[1]], ENV_VARS[1])
    if process_id is None and environ.get(ENV_VARS[2]):
        process_id = _int(environ[ENV_VARS[2]], ENV_VARS[2])
    if coordinator is None and num_processes is None and process_id is None:
        return None
    if coordinator is None or num_processes is None or process_id is None:
        raise ConfigError(
            "'--coordinator', '--num-processes' and '--process-id' go together "
            "(or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)"
        )
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"'--coordinator' must be HOST:PORT, got {coordinator!r}")
    if num_processes < 1:
        raise ConfigError(f"'--num-processes' must be >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ConfigError(
            f"'--process-id' must be in [0, {num_processes}), got {process_id}"
        )
    return {
        "coordinator_address": coordinator,
        "num_processes": num_processes,
        "process_id": process_id,
    }


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"'{name}' must be an integer, got {text!r}") from None


def initialize(args: dict | None) -> bool:
    """Starts JAX's multi-process runtime (once, before any computation)."""
    if args is None or args["num_processes"] == 1:
        return False
    import jax

    jax.distributed.initialize(**args)
    return True


def train_as_process(
    config: Any, train: Callable[..., dict], *, resume: bool, overwrite: bool
) -> dict | None:
    """Runs ``train(config, resume=, overwrite=)`` on this process.

    Process 0 writes the run directory and returns the summary; every other
    process trains into a scratch directory, deletes it and returns None.
    """
    import jax

    if jax.process_count() == 1:
        return train(config, resume=resume, overwrite=overwrite)
    if resume:
        raise ConfigError("--resume is not supported with several processes yet")
    if jax.process_index() == 0:
        return train(config, resume=False, overwrite=overwrite)
    scratch = tempfile.mkdtemp(prefix=f"marketjax-p{jax.process_index()}-")
    try:
        runner = dataclasses.replace(config.runner, out_dir=scratch, progress=False)
        train(dataclasses.replace(config, runner=runner), resume=False, overwrite=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return None
