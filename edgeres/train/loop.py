"""dataset → checkpoint: SGD with a one-cycle or cosine schedule, from scratch or from given weights, on the CPU or a
GPU, evaluated and saved every epoch; with a validation split, the checkpoint is the best epoch's.
"""
from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeres.artifacts import check_out, write_manifest
from edgeres.config import DEFAULT_DATASET, TrainConfig
from edgeres.data import fashion_mnist
from edgeres.data.datasets import ImageSet, default_val_share, load_dataset, split_layout
from edgeres.data.preprocess import Preprocessing
from edgeres.data.survey import Duplicates, duplicates
from edgeres.distributed import World, close_world, init_world
from edgeres.errors import ArtifactError, ConfigError, DataError
from edgeres.hw import cpu_features, has_native_bf16
from edgeres.models import Checkpoint, load_checkpoint, save_checkpoint
from edgeres.progress import log, progress
from edgeres.train.finetune import drop_backbone_grads, freeze_backbone, start
from edgeres.train.loader import Feeder, default_workers, eval_batches, feeder, resolve_augment


@dataclass
class TrainResult:
    checkpoint: Path
    top1: float  # test top-1 (%) of the model in ``checkpoint``
    epochs_run: int
    seconds: float
    rank: int = 0  # this process's rank under torchrun
    val_top1: float | None = None  # validation top-1 (%) of the kept epoch, when there is a validation split
    best_epoch: int | None = None
    device: str = "cpu"


def limited_indices(total: int, n: int | None, seed: int) -> np.ndarray:
    """The images ``--limit-train``/``--limit-test`` N keeps of ``total``, sorted (all of them without a limit)."""
    if n is None or n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])


def _limit(ds: ImageSet, n: int | None, seed: int) -> ImageSet:
    return ds if n is None or n >= len(ds) else ds.subset(limited_indices(len(ds), n, seed))


def device_for(choice: str, local_rank: int = 0) -> torch.device:
    """``auto``: the GPU of this process when torch sees one, else the CPU."""
    if choice != "cpu" and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if choice == "cuda":
        raise ConfigError("--device cuda but torch sees no CUDA GPU (a CPU build of torch, or no driver); "
                          "use --device cpu")
    return torch.device("cpu")


def _precision_note(dtype: torch.dtype | None, amp: str, device: torch.device) -> str:
    if dtype is not None:
        return f"{str(dtype).removeprefix('torch.')} autocast"
    if amp == "auto" and device.type == "cpu":
        return "fp32 (this CPU has no native bf16; --amp bf16 emulates it, slower)"
    return "fp32"


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16 where the device computes it natively, fp16 (with a grad scaler) on GPUs without bf16, else none."""
    if amp == "off":
        return None
    if device.type == "cuda":
        if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
            return torch.float16
        return torch.bfloat16
    if amp == "fp16":
        raise ConfigError("--amp fp16 needs a GPU; on the CPU use --amp bf16 or off")
    return torch.bfloat16 if amp == "bf16" or has_native_bf16() else None


@torch.no_grad()
def evaluate(model: nn.Module, ds: ImageSet, pre: Preprocessing, world: World = World(), workers: int = 0,
             array: Any = None, device: torch.device = torch.device("cpu")) -> float:
    """Top-1 accuracy (%) of ``model`` on ``ds`` (each rank scores its share)."""
    model.eval()
    world.broadcast_buffers(model)
    correct = seen = 0
    for x, y in eval_batches(ds, pre, world, workers, array=array):
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        correct += int((model(x).argmax(1).cpu() == y).sum())
        seen += len(y)
    return 100.0 * world.sum(correct) / max(1.0, world.sum(seen))


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
    inputs: dict[str, Path | str] = ({name: fashion_mnist.locate() / name for name in fashion_mnist.FILES}
                                     if cfg.data == DEFAULT_DATASET else {"data": cfg.data})
    if cfg.weights:
        inputs["weights"] = Path(cfg.weights)
    return inputs


def last_path(out: Path) -> Path:
    """Where a run with a validation split keeps its latest epoch (the resume point); ``out`` holds the best."""
    return out.with_name(f"{out.stem}.last{out.suffix or '.pt'}")


def val_share(cfg: TrainConfig) -> float:
    return cfg.val_split if cfg.val_split is not None else default_val_share(cfg.data)


def _splits(cfg: TrainConfig, say: Callable[[str], None]) -> tuple[ImageSet, ImageSet | None, ImageSet, Duplicates]:
    share = val_share(cfg)
    has_val = share > 0 or (cfg.data != DEFAULT_DATASET and "val" in split_layout(Path(cfg.data)))
    train_set = _limit(load_dataset(cfg.data, "train", val_split=share), cfg.limit_train, cfg.seed)
    val_set = load_dataset(cfg.data, "val", val_split=share) if has_val else None
    test_set = _limit(load_dataset(cfg.data, "test"), cfg.limit_test, cfg.seed + 1)
    if len(set(train_set.labels.tolist())) < 2:
        raise DataError(f"{cfg.data} has {len(train_set.classes)} class(es) with training images; a classifier "
                        f"needs at least two class folders")
    for name, other in (("test", test_set), ("validation", val_set)):
        if other is not None and other.classes != train_set.classes:
            extra = sorted(set(other.classes) ^ set(train_set.classes))[:3]
            raise DataError(f"the {name} split's classes differ from the training split's ({', '.join(extra)}); "
                            f"give both the same class folders")
    dup = Duplicates()
    if cfg.data != DEFAULT_DATASET:  # a user's folder: a copied photo in test/ would make test top-1 a lie
        dup = duplicates(train_set, {"test": test_set, "validation": val_set}, cfg.data)
        if dup and not cfg.allow_duplicates:
            raise DataError(dup.refusal(cfg.data))
        if dup:
            say(f"training with identical images, as --allow-duplicates asks: {dup.counts()}")
    return train_set, val_set, test_set, dup


def train(cfg: TrainConfig, out: Path, resume: bool = False,
          preprocessing: Preprocessing | None = None) -> TrainResult:
    """Train on ``cfg.data`` and write the checkpoint ``out`` after every epoch (the best one by validation
    top-1 when there is a validation split). Under ``torchrun`` every rank takes its share of each global batch
    (NCCL on GPUs, gloo on CPUs); rank 0 writes the checkpoint.
    """
    cfg.validate()
    check_out(Path(out))
    cuda = device_for(cfg.device).type == "cuda"
    world = init_world(cuda)
    try:
        return _train(cfg, Path(out), resume, preprocessing, world, device_for(cfg.device, world.local_rank))
    finally:
        close_world(world)


def _train(cfg: TrainConfig, out: Path, resume: bool, preprocessing: Preprocessing | None, world: World,
           device: torch.device) -> TrainResult:
    if cfg.batch_size % world.size:
        raise ConfigError(f"--batch-size {cfg.batch_size} is the global batch and must divide among {world.size} "
                          f"processes; use a multiple of {world.size}")
    say = log if world.main else (lambda _msg: None)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(world.threads())
    train_set, val_set, test_set, dup = _splits(cfg, say)
    st = start(cfg, train_set.classes, preprocessing)
    pre = st.preprocessing
    net = st.model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack it
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    augment = resolve_augment(cfg.augment, cfg.data, pre)
    if len(train_set) < cfg.batch_size:
        raise ConfigError(f"{len(train_set)} training images is fewer than one batch of {cfg.batch_size}; "
                          f"lower --batch-size")
    sched = _scheduler(opt, cfg, len(train_set) // cfg.batch_size * cfg.epochs)
    start_epoch, history, best = 0, [], None
    source = last_path(out) if val_set is not None else out
    if resume and source.is_file():
        ck = load_checkpoint(source)
        if ck.extra.get("train_config") != asdict(cfg):
            raise ConfigError(f"{source} was trained with other settings; drop --resume or pass the same options")
        net.load_state_dict(ck.state_dict)
        opt.load_state_dict(ck.extra["optimizer"])
        sched.load_state_dict(ck.extra["scheduler"])
        start_epoch, history, best = int(ck.extra["epoch"]), list(ck.extra.get("history", [])), ck.extra.get("best")
        say(f"resuming {source} after epoch {start_epoch}")
    elif resume:
        raise ArtifactError(f"--resume given but {source} does not exist; drop --resume to start afresh")
    feed = feeder(train_set, pre, augment, cfg.batch_size, cfg.seed, world, cfg.workers, "preprocess train")
    workers = default_workers(world) if cfg.workers is None else cfg.workers
    x_test = test_set.tensors(pre, "preprocess test") if test_set.array is not None else None
    x_val = val_set.tensors(pre, "preprocess val") if val_set is not None and val_set.array is not None else None
    dtype = autocast_dtype(cfg.amp, device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    model: nn.Module = net  # what trains: DDP across ranks; ``net`` is the plain module, evaluated and saved
    if world.size > 1:
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    say(f"training {st.model_cfg.arch} ({st.model_cfg.stem} stem, {pre.size} px, {augment}) on {len(train_set)} "
        f"images from {st.note}; {device}, {_precision_note(dtype, cfg.amp, device)}, {torch.get_num_threads()} threads"
        + (f", validation {len(val_set)} images" if val_set else "")
        + (f" × {world.size} processes ({world.backend})" if world.size > 1 else ""))
    t0 = time.perf_counter()
    top1 = history[-1]["top1"] if history else float("nan")
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        frozen = epoch < cfg.freeze_backbone
        freeze_backbone(net, frozen)
        running, correct, seen = _epoch(model, feed, epoch, cfg, opt, sched, scaler, dtype, device, frozen, world)
        running = world.sum(running) / world.size
        train_top1 = 100.0 * world.sum(correct) / max(1.0, world.sum(seen))
        val_top1 = (evaluate(net, val_set, pre, world, workers, x_val, device) if val_set is not None else None)
        top1 = evaluate(net, test_set, pre, world, workers, x_test, device)
        history.append({"epoch": epoch + 1, "loss": round(running, 4), "top1": round(top1, 2),
                        "train_top1": round(train_top1, 2),
                        **({} if val_top1 is None else {"val_top1": round(val_top1, 2)})})
        kept = val_top1 is not None and (best is None or val_top1 > best["val_top1"])
        if val_top1 is None or kept:
            best = {"epoch": epoch + 1, "val_top1": val_top1, "top1": round(top1, 2)}
        say(f"epoch {epoch + 1}/{cfg.epochs}: loss {running:.3f}, "
            + (f"val top-1 {val_top1:.2f}%{' (best)' if kept else ''}, " if val_top1 is not None else "")
            + f"test top-1 {top1:.2f}%" + (" (head only)" if frozen else ""))
        if world.main:
            sd = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in net.state_dict().items()}
            state = {"epoch": epoch + 1, "history": history, "train_config": asdict(cfg), "best": best,
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "start": st.note}
            facts = {"history": history, "test_images": len(test_set), "train_images": len(train_set),
                     "val_images": len(val_set) if val_set else 0, "autocast": str(dtype or "fp32"),
                     "device": str(device), "cpu_features": cpu_features(), "start": st.note,
                     "processes": world.size, "threads_per_process": torch.get_num_threads(), "augment": augment,
                     **({"duplicates": dup.counts()} if dup else {})}
            ckpt = Checkpoint(st.model_cfg, sd, pre, train_set.classes, state)
            _save(last_path(out) if val_set is not None else out, ckpt, cfg, pre, {**facts, "top1": round(top1, 2),
                                                                                   "epoch": epoch + 1})
            if kept:
                ckpt = replace(ckpt, extra={k: v for k, v in state.items() if k not in ("optimizer", "scheduler")})
                _save(out, ckpt, cfg, pre, {**facts, "top1": round(top1, 2), "epoch": epoch + 1,
                                            "selected_by": f"validation top-1 {val_top1:.2f}%"})
        world.barrier()
    kept_top1 = best["top1"] if best and val_set is not None else top1
    return TrainResult(out, kept_top1, cfg.epochs - start_epoch, time.perf_counter() - t0, world.rank,
                       best["val_top1"] if best else None, best["epoch"] if best else None, str(device))


def _save(path: Path, ckpt: Checkpoint, cfg: TrainConfig, pre: Preprocessing, facts: dict[str, Any]) -> None:
    save_checkpoint(path, ckpt)
    write_manifest(path, "checkpoint", data_inputs(cfg), asdict(cfg), pre.to_dict(), facts)


def _epoch(model: nn.Module, feed: Feeder, epoch: int, cfg: TrainConfig, opt: torch.optim.Optimizer,
           sched: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler | None,
           dtype: torch.dtype | None, device: torch.device, frozen: bool, world: World) -> tuple[float, int, int]:
    """One pass over the training batches: the smoothed loss, and how many of this rank's (augmented) training
    images the model got right as it went, out of how many (the training error of He et al.'s curves).
    """
    batches = feed.epoch(epoch)
    bar = progress(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", total=feed.steps, unit="step") \
        if world.main else batches
    running, correct, seen = 0.0, 0, 0
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext())
    for step, (xb, yb) in enumerate(bar):
        xb = xb.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        yb = yb.to(device, non_blocking=True)
        with autocast:
            logits = model(xb).float()
            loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
        correct += int((logits.detach().argmax(1) == yb).sum())
        seen += len(yb)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
        else:
            loss.backward()
        if frozen:
            drop_backbone_grads(model)
        if scaler is not None:
            scaler.step(opt)  # skipped while the scale is too large for fp16: the schedule goes on regardless,
            scaler.update()  # as PyTorch's AMP recipe does, without its warning about that order
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
                sched.step()
        else:
            opt.step()
            sched.step()
        lv = loss.item()
        running = 0.9 * running + 0.1 * lv if step else lv
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{running:.3f}", lr=f"{sched.get_last_lr()[0]:.3f}")
    return running, correct, seen
