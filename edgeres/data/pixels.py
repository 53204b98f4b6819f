"""Pixels as a model sees them: decoding conventions, resize and centre crop, normalization.

This module imports nothing of edgeres (numpy and Pillow only): ``edgeres bundle`` ships it verbatim next to
``infer.py``, so a deployed script computes exactly what ``edgeres predict`` and bench compute. It must run on every
Jetson's own Python: 3.6 with numpy 1.13 and Pillow 5.1 (JetPack 4.6, Ubuntu 18.04's packages) and later, so it uses
no ``from __future__ import annotations`` and no Pillow API newer than 5.1 (tests/integration/test_bundle.py runs it
with those versions).
"""
import inspect
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

_FILTERS = getattr(Image, "Resampling", Image)  # Image.Resampling.* from Pillow 9.1; the same numbers as Image.* before
RESAMPLE = {
    "nearest": _FILTERS.NEAREST,
    "bilinear": _FILTERS.BILINEAR,
    "bicubic": _FILTERS.BICUBIC,
}
FORMATS = ["PNG", "JPEG"]  # never a decoder chosen by the file's content (EPS, …)
SUFFIXES = (".png", ".jpg", ".jpeg")  # the names of those files
# images in formats edgeres does not decode: refused by name wherever images are listed (edgeres and a bundle's
# infer.py alike), never left out in silence, which would train on a part of a class or score part of a test set
OTHER_IMAGES = (".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jp2", ".ppm", ".pgm", ".pbm")
SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")  # PNG's and JPEG's first bytes
# Image.open(formats=…) from Pillow 8.0 on; before it, the signature check in decode() keeps other decoders out
_ONLY_OURS: "dict[str, Any]" = {"formats": FORMATS} if "formats" in inspect.signature(Image.open).parameters else {}


def decode(path: str) -> Image.Image:
    """A PNG or JPEG file as a loaded PIL image (raises OSError or ValueError for anything else)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head.startswith(SIGNATURES):
        raise ValueError(f"{path} is not a PNG or JPEG file")
    with Image.open(path, **_ONLY_OURS) as im:
        if im.format not in FORMATS:
            raise ValueError(f"{path} is not a PNG or JPEG file ({im.format})")
        im.load()
        return im.copy()


def grey_or_rgb(img: Image.Image) -> Image.Image:
    """16-bit images scaled to 8 bits, palette and CMYK images to RGB, transparency composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        return Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGBA" if "transparency" in img.info or img.mode in ("RGBA", "LA", "PA") else "RGB")
        if img.mode == "RGBA":
            bg = Image.new("RGB", img.size, (255, 255, 255))
            bg.paste(img, mask=img.split()[3])
            img = bg
    return img


def resize_crop(img: Image.Image, size: int, channels: int, side: int, resample: str) -> Image.Image:
    """Colour mode, the shorter side resized to ``side``, the centre ``size``×``size`` cropped."""
    img = img.convert("L" if channels == 1 else "RGB")
    w, h = img.size
    if (w, h) != (size, size) or side != size:
        scale = side / min(w, h)
        nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), RESAMPLE[resample])
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return img


def normalize(img: Image.Image, mean: "Sequence[float]", std: "Sequence[float]") -> np.ndarray:
    """A prepared PIL image to float32 CHW: scaled to [0, 1], then ``(x - mean) / std`` per channel."""
    a = np.asarray(img, dtype=np.float32) / 255.0
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]
    return (a - m) / s
