"""Pixels as a model sees them: decoding conventions, resize and centre crop, normalization.

This module imports nothing of edgeres (numpy and Pillow only): ``edgeres bundle`` ships it verbatim next to
``infer.py``, so a deployed script computes exactly what ``edgeres predict`` and bench compute.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
FORMATS = ["PNG", "JPEG"]  # never a decoder chosen by the file's content (EPS, …)


def decode(path: str) -> Image.Image:
    """A PNG or JPEG file as a loaded PIL image (raises OSError or ValueError for anything else)."""
    with Image.open(path, formats=FORMATS) as im:
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


def normalize(img: Image.Image, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A prepared PIL image to float32 CHW: scaled to [0, 1], then ``(x - mean) / std`` per channel."""
    a = np.asarray(img, dtype=np.float32) / 255.0
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]
    return (a - m) / s
