"""Metric sinks of the host runner: ``runner.loggers: [jsonl, tensorboard]``.

``metrics.jsonl`` is always written (``train_io``); the loggers here receive the
same rows, one per chunk, on the host between chunk calls (nothing inside jit
writes). TensorBoard events are written by ``tensorboardX`` (a small writer
package, the ``tensorboard`` extra: ``pip install marketjax[tensorboard]``) into
``<run dir>/tensorboard/`` (per grid point for a sweep), at step = env steps per
seed: every finite scalar of the row, and ``mean_return/seed_<s>`` per seed.
"""

from __future__ import annotations

import math
from pathlib import Path

from marketjax.core.config import ConfigError
from marketjax.core.schema import TrainConfig

TENSORBOARD_DIR = "tensorboard"


def check_loggers(config: TrainConfig) -> None:
    """Raises ConfigError (before compiling) if a named logger cannot be used."""
    if "tensorboard" in config.runner.loggers:
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise ConfigError(
                "'runner.loggers': tensorboard needs the tensorboardX package "
                "(pip install 'marketjax[tensorboard]')"
            ) from None


def scalars(row: dict) -> dict[str, float]:
    """The finite scalars of a metrics row (per-seed returns as ``.../seed_<s>``)."""
    out = {}
    for key, value in row.items():
        if key in ("chunk", "env_steps"):
            continue
        if isinstance(value, list):
            for s, v in enumerate(value):
                if isinstance(v, (int, float)) and math.isfinite(v):
                    out[f"{key.removesuffix('_per_seed')}/seed_{s}"] = float(v)
        elif isinstance(value, (int, float)) and math.isfinite(value):
            out[key] = float(value)
    return out


class Loggers:
    """The run's loggers beyond jsonl, one writer per point directory."""

    def __init__(self, config: TrainConfig, dirs: list[Path]):
        self.writers = []
        if "tensorboard" in config.runner.loggers:
            from tensorboardX import SummaryWriter

            self.writers = [SummaryWriter(str(d / TENSORBOARD_DIR)) for d in dirs]

    def log(self, point: int, row: dict) -> None:
        """Writes one chunk's metrics row of grid point ``point`` and flushes."""
        if not self.writers:
            return
        writer = self.writers[point]
        for key, value in scalars(row).items():
            writer.add_scalar(key, value, global_step=row["env_steps"])
        writer.flush()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers = []
