"""dataset → checkpoint: SGD with a one-cycle or cosine schedule, evaluated and saved every epoch."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeres.archs import config_for
from edgeres.artifacts import write_manifest
from edgeres.config import TrainConfig
from edgeres.data import fashion_mnist
from edgeres.data.datasets import (
    DEFAULT_DATASET,
    ImageSet,
    default_preprocessing,
    load_dataset,
)
from edgeres.data.preprocess import Preprocessing
from edgeres.distributed import World, close_world, init_world
from edgeres.errors import ArtifactError, ConfigError
from edgeres.hw import cpu_features, has_native_bf16
from edgeres.models import Checkpoint, build_model, load_checkpoint, save_checkpoint
from edgeres.progress import log, progress


@dataclass
class TrainResult:
    checkpoint: Path
    top1: float
    epochs_run: int
    seconds: float
    rank: int = 0  # this process's rank under torchrun


def _limit(ds: ImageSet, n: int | None, seed: int) -> ImageSet:
    if n is None or n >= len(ds):
        return ds
    idx = np.random.default_rng(seed).permutation(len(ds))[:n]
    return ds.subset(np.sort(idx))


def _augment(x: torch.Tensor, mode: str, gen: torch.Generator, total: int | None = None,
             part: slice = slice(None)) -> torch.Tensor:
    """Random flips (and crops) of ``x``, which is ``part`` of a batch of ``total``: every rank draws the same
    numbers for the whole batch and keeps its share, so the result does not depend on the number of ranks.
    """
    if mode == "none":
        return x
    flip = (torch.rand(total or x.shape[0], generator=gen) < 0.5)[part]
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if mode == "flip+crop":
        pad = max(1, x.shape[-1] // 10)
        xp = F.pad(x, (pad,) * 4, mode="replicate")
        dx, dy = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=gen))
        x = xp[..., dy:dy + x.shape[-2], dx:dx + x.shape[-1]]
    return x


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 500,
             world: World = World()) -> float:
    """Top-1 accuracy (%) of ``model`` on preprocessed images (each rank scores its share)."""
    model.eval()
    world.broadcast_buffers(model)
    mine = world.shard(len(x))
    x, y = x[mine], y[mine]
    correct = 0
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[i:i + batch_size]).contiguous(memory_format=torch.channels_last)
        correct += int((model(xb).argmax(1).numpy() == y[i:i + batch_size]).sum())
    total = world.sum(len(x))
    return 100.0 * world.sum(correct) / max(1.0, total)


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "onecycle" and steps >= 3:
        # each phase needs at least one step: with 4 steps, 0.25 left the warm-up phase empty (a division by zero)
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps,
                                                   pct_start=max(0.25, 2.0 / steps), div_factor=20.0,
                                                   final_div_factor=200.0)
    warm = max(1, steps // 20)  # cosine; also one-cycle runs of 1–2 steps, too short for its two phases
    def cosine(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, steps - warm))))

    return torch.optim.lr_scheduler.LambdaLR(opt, cosine)


def data_inputs(cfg: TrainConfig) -> dict[str, Path | str]:
    if cfg.data == DEFAULT_DATASET:
        d = fashion_mnist.locate()
        return {name: d / name for name in fashion_mnist.FILES}
    return {"data": cfg.data}


def train(cfg: TrainConfig, out: Path, resume: bool = False,
          preprocessing: Preprocessing | None = None) -> TrainResult:
    """Train ``cfg.arch`` on ``cfg.data`` and write the checkpoint ``out`` after every epoch.

    Under ``torchrun`` every rank takes its share of each global batch; rank 0 writes the checkpoint.
    """
    cfg.validate()
    world = init_world()
    try:
        return _train(cfg, Path(out), resume, preprocessing, world)
    finally:
        close_world(world)


def _train(cfg: TrainConfig, out: Path, resume: bool, preprocessing: Preprocessing | None, world: World) -> TrainResult:
    if cfg.batch_size % world.size:
        raise ConfigError(f"--batch-size {cfg.batch_size} is the global batch and must divide among {world.size} "
                          f"processes; use a multiple of {world.size}")
    say = log if world.main else (lambda _msg: None)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(world.threads())
    pre = preprocessing or default_preprocessing(cfg.data, cfg.size)
    train_set = _limit(load_dataset(cfg.data, "train"), cfg.limit_train, cfg.seed)
    test_set = _limit(load_dataset(cfg.data, "test"), cfg.limit_test, cfg.seed + 1)
    model_cfg = config_for(cfg.arch, pre.channels, len(train_set.classes), cfg.stem)
    model = build_model(model_cfg, cfg.zero_init_residual).to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack it
    net = model  # the plain module: evaluated and saved; ``model`` is what trains (DDP across ranks)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    steps_per_epoch = len(train_set) // cfg.batch_size
    if steps_per_epoch < 1:
        raise ConfigError(f"{len(train_set)} training images is fewer than one batch of {cfg.batch_size}; "
                          f"lower --batch-size")
    sched = _scheduler(opt, cfg, steps_per_epoch * cfg.epochs)
    start_epoch, history = 0, []
    if resume and out.is_file():
        ck = load_checkpoint(out)
        if ck.extra.get("train_config") != asdict(cfg):
            raise ConfigError(f"{out} was trained with other settings; drop --resume or pass the same options")
        model.load_state_dict(ck.state_dict)
        opt.load_state_dict(ck.extra["optimizer"])
        sched.load_state_dict(ck.extra["scheduler"])
        start_epoch, history = int(ck.extra["epoch"]), list(ck.extra.get("history", []))
        say(f"resuming {out} after epoch {start_epoch}")
    elif resume:
        raise ArtifactError(f"--resume given but {out} does not exist; drop --resume to start afresh")

    x_train = train_set.tensors(pre, "preprocess train")
    x_test = test_set.tensors(pre, "preprocess test")
    y_train = torch.from_numpy(train_set.labels)
    bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and has_native_bf16())
    if world.size > 1:
        model = nn.parallel.DistributedDataParallel(net)
    say(f"training {cfg.arch} ({cfg.stem} stem, {pre.size} px) on {len(train_set)} images, "
        f"{'bf16 autocast' if bf16 else 'fp32'}, {torch.get_num_threads()} threads"
        + (f" × {world.size} processes ({world.backend})" if world.size > 1 else ""))
    t0 = time.perf_counter()
    top1 = history[-1]["top1"] if history else float("nan")
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        perm = torch.randperm(len(x_train), generator=gen)
        steps = range(steps_per_epoch)
        bar = progress(steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step") if world.main else steps
        part = world.part(cfg.batch_size)
        running = 0.0
        for step in bar:
            idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size][part]
            xb = _augment(torch.from_numpy(x_train[idx.numpy()]), cfg.augment, gen, cfg.batch_size, part)
            xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(xb).float(), y_train[idx], label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            lv = loss.item()
            running = 0.9 * running + 0.1 * lv if step else lv
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{running:.3f}", lr=f"{sched.get_last_lr()[0]:.3f}")
        running = world.sum(running) / world.size
        top1 = evaluate(net, x_test, test_set.labels, world=world)
        history.append({"epoch": epoch + 1, "loss": round(running, 4), "top1": round(top1, 2)})
        say(f"epoch {epoch + 1}/{cfg.epochs}: loss {running:.3f}, test top-1 {top1:.2f}%")
        if not world.main:
            world.barrier()  # rank 0 writes the checkpoint
            continue
        sd = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
        ckpt = Checkpoint(model_cfg, sd, pre, train_set.classes, {
            "epoch": epoch + 1, "history": history, "train_config": asdict(cfg),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        })
        save_checkpoint(out, ckpt)
        write_manifest(out, "checkpoint", data_inputs(cfg), asdict(cfg), pre.to_dict(),
                       {"top1": round(top1, 2), "epoch": epoch + 1, "history": history,
                        "test_images": len(test_set), "train_images": len(train_set),
                        "autocast": "bf16" if bf16 else "fp32", "cpu_features": cpu_features(),
                        "processes": world.size, "threads_per_process": torch.get_num_threads()})
        world.barrier()
    return TrainResult(out, top1, cfg.epochs - start_epoch, time.perf_counter() - t0, world.rank)
