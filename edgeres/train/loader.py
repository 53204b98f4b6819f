"""Training and evaluation batches: Fashion-MNIST from one preprocessed array (the demo's fast path), any other
image set streamed from disk through a ``DataLoader`` with workers, so no decoded image is held in memory.

Augmentation draws from a generator seeded by (seed, epoch, image), so a run gives the same batches whatever the
number of workers or ranks.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from edgeres.config import DEFAULT_DATASET
from edgeres.data.datasets import ImageSet
from edgeres.data.pixels import RESAMPLE
from edgeres.data.preprocess import Preprocessing
from edgeres.distributed import World

ARRAY_AUGMENTS = ("none", "flip", "crop", "flip+crop")  # what the in-memory path does on whole batches


def resolve_augment(mode: str, data: str, pre: Preprocessing) -> str:
    """``auto``: the demo's flip for Fashion-MNIST, RandomResizedCrop + flip for RGB sets, a shifted crop for grey."""
    if mode != "auto":
        return mode
    if data == DEFAULT_DATASET:
        return "flip"
    return "rrc+flip" if pre.channels == 3 else "crop"


def _shift_crop(x: torch.Tensor, dx: int, dy: int, pad: int) -> torch.Tensor:
    xp = F.pad(x, (pad,) * 4, mode="replicate")
    return xp[..., dy:dy + x.shape[-2], dx:dx + x.shape[-1]]


def augment_batch(x: torch.Tensor, mode: str, gen: torch.Generator, total: int | None = None,
                  part: slice = slice(None)) -> torch.Tensor:
    """Random flips (and crops) of ``x``, which is ``part`` of a batch of ``total``: every rank draws the same
    numbers for the whole batch and keeps its share, so the result does not depend on the number of ranks.
    """
    if mode == "none":
        return x
    if "flip" in mode:
        flip = (torch.rand(total or x.shape[0], generator=gen) < 0.5)[part]
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if "crop" in mode:
        pad = max(1, x.shape[-1] // 10)
        dx, dy = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=gen))
        x = _shift_crop(x, dx, dy, pad)
    return x


def random_resized_crop(img: Image.Image, size: int, rng: np.random.Generator, resample: str) -> Image.Image:
    """torchvision's RandomResizedCrop: a box of 8–100% of the area (35–100% below 64 px) and aspect 3/4–4/3."""
    w, h = img.size
    lo = 0.08 if min(w, h) >= 64 else 0.35
    for _ in range(10):
        area = w * h * rng.uniform(lo, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return img.resize((size, size), RESAMPLE[resample], box=(x, y, x + cw, y + ch))
    side = min(w, h)
    x, y = (w - side) // 2, (h - side) // 2
    return img.resize((size, size), RESAMPLE[resample], box=(x, y, x + side, y + side))


class StreamedImages(torch.utils.data.Dataset):
    """Decodes, augments and normalizes one image per item; items are ``(epoch, index)`` pairs (eval: epoch -1)."""

    def __init__(self, ds: ImageSet, pre: Preprocessing, augment: str, seed: int) -> None:
        self.ds, self.pre, self.augment, self.seed = ds, pre, augment, seed

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, item: tuple[int, int]) -> tuple[np.ndarray, int]:
        epoch, i = item
        img = self.ds.image(i)
        label = int(self.ds.labels[i])
        if epoch < 0 or self.augment == "none":
            return self.pre(img), label
        rng = np.random.default_rng([self.seed, epoch, i])
        if "rrc" in self.augment:
            img = random_resized_crop(img.convert("L" if self.pre.channels == 1 else "RGB"), self.pre.size, rng,
                                      self.pre.resample)
        else:
            img = self.pre.prepare(img)
        if "flip" in self.augment and rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = self.pre.normalize(img)
        if "crop" in self.augment and "rrc" not in self.augment:
            pad = max(1, self.pre.size // 10)
            dx, dy = (int(v) for v in rng.integers(0, 2 * pad + 1, 2))
            x = _shift_crop(torch.from_numpy(x)[None], dx, dy, pad)[0].numpy()
        return x, label


@dataclass
class Feeder:
    """One epoch's batches for this rank: ``(images NCHW float32, labels int64)`` on the CPU."""

    ds: ImageSet
    pre: Preprocessing
    augment: str
    batch_size: int
    seed: int
    world: World
    workers: int
    array: np.ndarray | None = None  # the in-memory path: every image preprocessed once

    @property
    def steps(self) -> int:
        return len(self.ds) // self.batch_size

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        perm = torch.randperm(len(self.ds), generator=gen)
        part = self.world.part(self.batch_size)
        labels = torch.from_numpy(self.ds.labels)
        if self.array is not None:
            for step in range(self.steps):
                idx = perm[step * self.batch_size:(step + 1) * self.batch_size][part]
                x = augment_batch(torch.from_numpy(self.array[idx.numpy()]), self.augment, gen, self.batch_size, part)
                yield x, labels[idx]
            return
        batches = [[(epoch, int(i)) for i in perm[s * self.batch_size:(s + 1) * self.batch_size][part]]
                   for s in range(self.steps)]
        yield from _load(StreamedImages(self.ds, self.pre, self.augment, self.seed), batches, self.workers)


def _load(dataset: StreamedImages, batches: list[list[tuple[int, int]]],
          workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                                         persistent_workers=False, prefetch_factor=2 if workers else None)
    yield from loader


def default_workers(world: World) -> int:
    return max(0, min(4, (os.cpu_count() or 1) // world.local_size - 1))


def feeder(ds: ImageSet, pre: Preprocessing, augment: str, batch_size: int, seed: int, world: World,
           workers: int | None, desc: str) -> Feeder:
    """The in-memory path for array-backed sets (Fashion-MNIST) with batch augmentations, else streaming."""
    w = default_workers(world) if workers is None else workers
    if ds.array is not None and augment in ARRAY_AUGMENTS:
        return Feeder(ds, pre, augment, batch_size, seed, world, w, ds.tensors(pre, desc))
    return Feeder(ds, pre, augment, batch_size, seed, world, w)


def eval_batches(ds: ImageSet, pre: Preprocessing, world: World, workers: int, batch_size: int = 500,
                 array: np.ndarray | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's share of ``ds``, preprocessed without augmentation, in order."""
    mine = range(len(ds))[world.shard(len(ds))]
    if array is not None:
        for i in range(mine.start, mine.stop, batch_size):
            j = min(i + batch_size, mine.stop)
            yield torch.from_numpy(array[i:j]), torch.from_numpy(ds.labels[i:j])
        return
    batches = [[(-1, i) for i in mine[k:k + batch_size]] for k in range(0, len(mine), batch_size)]
    yield from _load(StreamedImages(ds, pre, "none", 0), batches, workers)
