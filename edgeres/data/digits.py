"""A small ImageFolder of rendered digits (28×28 grey, ten classes): a data set that is not Fashion-MNIST, made
from nothing but the font Pillow ships, for trying fine-tuning and the user-data path where nothing can be fetched.

Each image is one digit drawn at a random size, stroke width, rotation, shear and position, with noise: an
MNIST-like task that a model must learn, not memorize.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from edgeres.artifacts import remove_stale_temporaries
from edgeres.errors import ConfigError


def _digit(d: int, rng: np.random.Generator, side: int) -> Image.Image:
    big = side * 4
    img = Image.new("L", (big, big), 0)
    font = ImageFont.load_default(size=int(big * rng.uniform(0.55, 0.85)))
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = draw.textbbox((0, 0), str(d), font=font, stroke_width=int(rng.integers(1, 5)))
    pos = ((big - (x1 - x0)) / 2 - x0 + rng.normal(0, big * 0.06), (big - (y1 - y0)) / 2 - y0 + rng.normal(0, big * 0.06))
    draw.text(pos, str(d), fill=int(rng.integers(170, 256)), font=font, stroke_width=int(rng.integers(0, 4)),
              stroke_fill=255)
    shear = rng.uniform(-0.3, 0.3)
    img = img.transform(img.size, Image.Transform.AFFINE, (1, shear, -shear * big / 2, 0, 1, 0),
                        Image.Resampling.BILINEAR)
    img = img.rotate(rng.uniform(-20, 20), Image.Resampling.BILINEAR)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0))).resize((side, side), Image.Resampling.LANCZOS)
    a = np.asarray(img, np.float32) + rng.normal(0, 12, (side, side))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")


def _colour(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The grey digit as a mask between two random colours that differ in brightness."""
    fg, bg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    while abs(int(fg.mean()) - int(bg.mean())) < 60:
        fg, bg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    a = np.asarray(img, np.float32)[..., None] / 255.0
    return Image.fromarray((a * fg + (1 - a) * bg).clip(0, 255).astype(np.uint8), "RGB")


def make_digits(out: Path, train_per_class: int = 100, test_per_class: int = 50, side: int = 28,
                seed: int = 0, rgb: bool = False) -> Path:
    """Write ``out/train/<digit>/*.png`` and ``out/test/<digit>/*.png`` atomically; returns ``out``.
    ``rgb`` draws each digit in a random colour on another.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists; give a new folder for the digits set (nothing was changed)")
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    remove_stale_temporaries(out.parent, f".{out.name}.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=out.parent))
    try:
        for split, n in (("train", train_per_class), ("test", test_per_class)):
            for d in range(10):
                folder = tmp / split / str(d)
                folder.mkdir(parents=True)
                for i in range(n):
                    img = _digit(d, rng, side)
                    (_colour(img, rng) if rgb else img).save(folder / f"{i:05d}.png")
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
