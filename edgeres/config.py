"""Configuration of the stages, torch-free, so that the CLI takes its defaults and choices from one place."""
from __future__ import annotations

from dataclasses import dataclass

from edgeres.errors import ConfigError

DEFAULT_MAX_BATCH = 32  # the engines' largest batch: accuracy is scored in batches of this size


@dataclass(frozen=True)
class BuildConfig:
    """What ``edgeres build`` makes: one artifact for one target."""

    target: str
    precision: str | None = None  # default: the ONNX's own (int8 for Q/DQ models)
    dla_core: int | None = None
    batch: int = 1  # the batch the engine is optimized for (the profile's opt)
    max_batch: int = DEFAULT_MAX_BATCH
    allow_tf32: bool = False
    force_device: bool = False  # build a Jetson target's engine on another machine (recorded in the manifest)

    def validate(self) -> None:
        if not 1 <= self.batch <= self.max_batch:
            raise ConfigError(f"--batch must be between 1 and --max-batch ({self.max_batch}), got {self.batch}")
        if self.max_batch > 4096:
            raise ConfigError(f"--max-batch {self.max_batch} is over 4096 (the exported models' limit)")


__all__ = ["DEFAULT_MAX_BATCH", "BuildConfig"]
