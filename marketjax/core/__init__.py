"""The dependency-free base every layer may import: config primitives, the
training-config schema, the Trainer interface and the update-count rule."""

from marketjax.core.config import ConfigError, field
from marketjax.core.schema import (
    RunnerConfig,
    TrainConfig,
    Trainer,
    planned_updates,
    sweepable_keys,
    sweepable_params,
    total_updates,
)

__all__ = [
    "ConfigError",
    "RunnerConfig",
    "TrainConfig",
    "Trainer",
    "field",
    "planned_updates",
    "sweepable_keys",
    "sweepable_params",
    "total_updates",
]
