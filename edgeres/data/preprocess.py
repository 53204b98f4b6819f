"""The one preprocessing definition: used by training, calibration and bench, stored in models."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from edgeres.data.pixels import RESAMPLE, normalize, resize_crop
from edgeres.errors import ArtifactError, ConfigError


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to ``resize`` (default ``size``), centre-crop ``size``², scale to [0, 1], normalize.

    ImageNet's evaluation transform is ``Preprocessing(224, 3, IMAGENET_MEAN, IMAGENET_STD, resize=256)``.
    """

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resample: str = "bilinear"
    layout: str = "NCHW"
    resize: int | None = None  # the shorter side before the crop; None: ``size`` (no border cropped)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ConfigError(f"mean and std need {self.channels} values each")
        if self.size < 8:
            raise ConfigError(f"input size must be at least 8 pixels, got {self.size}")
        if self.resize is not None and self.resize < self.size:
            raise ConfigError(f"resize must be at least the crop size {self.size}, got {self.resize}")
        if any(not math.isfinite(v) for v in (*self.mean, *self.std)) or min(self.std) <= 0:
            raise ConfigError(f"mean and std must be finite and std positive, got mean {self.mean} std {self.std}")
        if self.resample not in RESAMPLE:
            raise ConfigError(f"resample must be one of {', '.join(RESAMPLE)}, got {self.resample!r}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    @property
    def short_side(self) -> int:
        return self.resize or self.size

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.resize is None:
            del d["resize"]  # the records of models made before it existed stay the same
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        try:
            return cls(
                size=int(d["size"]),
                channels=int(d["channels"]),
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
                resample=str(d.get("resample", "bilinear")),
                layout=str(d.get("layout", "NCHW")),
                resize=None if d.get("resize") is None else int(d["resize"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"preprocessing record is malformed ({e}); re-export the model") from None

    @classmethod
    def from_json(cls, text: str) -> Preprocessing:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ArtifactError(f"preprocessing record is not JSON ({e}); re-export the model") from None

    def prepare(self, img: Image.Image) -> Image.Image:
        """Colour mode, resize and crop: the PIL half of the definition."""
        return resize_crop(img, self.size, self.channels, self.short_side, self.resample)

    def __call__(self, img: Image.Image) -> np.ndarray:
        """One PIL image in, a float32 CHW array out."""
        return self.normalize(self.prepare(img))

    def normalize(self, img: Image.Image) -> np.ndarray:
        """A prepared (mode, size) PIL image to the normalized float32 CHW array."""
        return normalize(img, self.mean, self.std)



IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Fashion-MNIST: train-split pixel mean and std.
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)
