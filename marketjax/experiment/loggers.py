"""Metric sinks of the host runner: ``runner.loggers: [jsonl, tensorboard, wandb]``.

``metrics.jsonl`` is always written (``train_io``); the loggers here receive the
same rows, one per chunk, on the host between chunk calls (nothing inside jit
writes).

* ``tensorboard``: events written by ``tensorboardX`` (a small writer package, the
  ``tensorboard`` extra: ``pip install marketjax[tensorboard]``) into
  ``<run dir>/tensorboard/`` (per grid point for a sweep), at step = env steps per
  seed: every finite scalar of the row, and ``mean_return/seed_<s>`` per seed.
* ``wandb``: one Weights & Biases run per run directory (the ``wandb`` extra),
  ``mode=runner.wandb_mode`` (``offline`` by default: files under
  ``<run dir>/wandb/``, nothing leaves the machine until ``wandb sync``), project
  ``runner.wandb_project``, the whole config as the run's config. The same scalars
  as TensorBoard at the same steps; a sweep's grid points are prefixed
  ``<point label>/``.
"""

from __future__ import annotations

import math
from pathlib import Path

from marketjax.core.config import ConfigError
from marketjax.core.schema import TrainConfig

TENSORBOARD_DIR = "tensorboard"

# logger name -> (module it imports, the extra that installs it)
_PACKAGES = {
    "tensorboard": ("tensorboardX", "tensorboard"),
    "wandb": ("wandb", "wandb"),
}


def check_loggers(config: TrainConfig) -> None:
    """Raises ConfigError (before compiling) if a named logger cannot be used."""
    for name in config.runner.loggers:
        if name not in _PACKAGES:
            continue
        module, extra = _PACKAGES[name]
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(
                f"'runner.loggers': {name} needs the {module} package "
                f"(pip install 'marketjax[{extra}]')"
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
    """The run's loggers beyond jsonl: one TensorBoard writer per point directory,
    one W&B run per run directory.

    Args:
      config: the run's config (``runner.loggers``, ``runner.wandb_*``).
      dirs: the grid points' directories (``[run_dir]`` without a sweep).
      run_dir: the run directory (default: ``dirs[0]`` without a sweep, else the
        points' parent).
      config_dict: what W&B records as the run's config (the dumped config).
    """

    def __init__(
        self,
        config: TrainConfig,
        dirs: list[Path],
        run_dir: Path | None = None,
        config_dict: dict | None = None,
    ):
        self.writers = []
        self.wandb_run = None
        self.prefixes = [""] if len(dirs) == 1 else [f"{d.name}/" for d in dirs]
        loggers = config.runner.loggers
        if "tensorboard" in loggers:
            from tensorboardX import SummaryWriter

            self.writers = [SummaryWriter(str(d / TENSORBOARD_DIR)) for d in dirs]
        if "wandb" in loggers:
            import wandb

            if run_dir is None:
                run_dir = dirs[0] if len(dirs) == 1 else dirs[0].parent
            self.wandb_run = wandb.init(
                project=config.runner.wandb_project,
                name=config.name,
                dir=str(run_dir),
                mode=config.runner.wandb_mode,
                config=config_dict or {},
            )

    def log(self, point: int, row: dict) -> None:
        """Writes one chunk's metrics row of grid point ``point`` and flushes."""
        values = scalars(row)
        step = row["env_steps"]
        if self.writers:
            writer = self.writers[point]
            for key, value in values.items():
                writer.add_scalar(key, value, global_step=step)
            writer.flush()
        if self.wandb_run is not None:
            prefix = self.prefixes[point]
            self.wandb_run.log({prefix + k: v for k, v in values.items()}, step=step)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers = []
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None
