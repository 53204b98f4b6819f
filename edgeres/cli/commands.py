"""train, export, quantize, build."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgeres.archs import ARCHS, STEMS  # plain data: no torch import
from edgeres.cli import default, emit, handle_errors, json_option, preprocessing_options
from edgeres.cli.device import ssh_options
from edgeres.config import (
    AMP_MODES,
    AUGMENTS,
    DEVICES,
    METHODS,
    PLACEMENTS,
    PRECISIONS,
    QAT_RANGES,
    RECIPES,
    SCHEDULES,
    SEARCH_WEIGHTS,
    BuildConfig,
    ExportConfig,
    QuantConfig,
    TrainConfig,
)


def train_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The training options, shared by `train` and `run` (one definition, one default each)."""
    for opt in reversed([
        click.option("--data", default=default(TrainConfig, "data"), show_default=True,
                     help="fashion-mnist, or an ImageFolder root: train/ (and test/, val/) class folders, or class "
                          "folders alone (a tenth is then kept apart as the test split)."),
        click.option("--weights", default=None,
                     help="Fine-tune: start from this torchvision or edgeres checkpoint; the head is replaced when the "
                          "classes differ."),
        click.option("--freeze-backbone", type=int, default=default(TrainConfig, "freeze_backbone"), show_default=True,
                     help="With --weights: train only the head for this many epochs, then everything."),
        click.option("--val-split", type=float, default=None,
                     help="Share of the training images held out to pick the best epoch (default: 0.1 for a folder "
                          "without val/, none for fashion-mnist)."),
        click.option("--epochs", type=int, default=default(TrainConfig, "epochs"), show_default=True),
        click.option("--batch-size", type=int, default=default(TrainConfig, "batch_size"), show_default=True),
        click.option("--lr", type=float, default=default(TrainConfig, "lr"), show_default=True,
                     help="Peak learning rate."),
        click.option("--schedule", type=click.Choice(SCHEDULES), default=default(TrainConfig, "schedule"),
                     show_default=True),
        click.option("--arch", type=click.Choice(list(ARCHS)), default=None,
                     help="ResNet, or the seed's variants ResNeXt and DenseNet (torchvision's definitions). "
                          "Default: the --weights' architecture, else resnet18."),
        click.option("--stem", type=click.Choice(STEMS), default=None,
                     help="Default: the --weights' stem, else imagenet."),
        click.option("--size", type=int, default=None,
                     help="Input side in pixels. Default: 40 for fashion-mnist, 224 for RGB folders (resize 256, "
                          "centre crop), a grey folder's own size; with edgeres --weights, theirs."),
        click.option("--augment", type=click.Choice(AUGMENTS), default=default(TrainConfig, "augment"),
                     show_default=True,
                     help="auto: flip for fashion-mnist, RandomResizedCrop + flip for RGB folders, a shifted crop for "
                          "grey."),
        click.option("--device", type=click.Choice(DEVICES), default=default(TrainConfig, "device"), show_default=True,
                     help="auto: the GPU when torch sees one."),
        click.option("--amp", type=click.Choice(AMP_MODES), default=default(TrainConfig, "amp"), show_default=True,
                     help="Autocast: auto uses bf16 where the device has it natively (fp16 with a scaler on older "
                          "GPUs)."),
        click.option("--workers", type=int, default=None,
                     help="Image-loading processes for folders (default: up to 4)."),
        click.option("--seed", type=int, default=default(TrainConfig, "seed"), show_default=True),
        click.option("--limit-train", type=int, default=None, help="Use only N training images (quick runs)."),
        click.option("--limit-test", type=int, default=None, help="Evaluate on only N test images."),
        click.option("--allow-duplicates", is_flag=True,
                     help="Train although test or validation images are copies of training images, or one image sits "
                          "in two classes (refused by default: `edgeres data show DATA` lists them)."),
    ]):
        fn = opt(fn)
    return fn


@click.command("train")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo/model.pt"), show_default=True)
@train_options
@click.option("--resume", is_flag=True, help="Continue from the checkpoint at --out.")
@json_option
@handle_errors
def train_cmd(out: Path, resume: bool, as_json: bool, **options: Any) -> None:
    """Train ResNet-18 (or --arch) from scratch, or fine-tune --weights; checkpoint after every epoch.

    \b
    Examples:
      edgeres train --data fashion-mnist --epochs 2 --out runs/demo/model.pt
      edgeres train --data my_photos --weights resnet18-f37072fd.pth --freeze-backbone 1 --epochs 5 --out runs/my/model.pt
      torchrun --standalone --nproc-per-node 2 -m edgeres train --out runs/ddp/model.pt   # data-parallel
    """
    from edgeres.train import train

    cfg = TrainConfig(**options)
    r = train(cfg, out, resume=resume)
    if r.rank:
        return  # under torchrun, rank 0 reports
    kept = f" (epoch {r.best_epoch}, validation top-1 {r.val_top1:.2f}%)" if r.val_top1 is not None else ""
    emit(as_json, {"checkpoint": r.checkpoint, "top1": r.top1, "epochs_run": r.epochs_run, "seconds": r.seconds,
                   "val_top1": r.val_top1, "best_epoch": r.best_epoch, "device": r.device},
         f"{r.checkpoint}: test top-1 {r.top1:.2f}%{kept} after {cfg.epochs} epochs on {r.device} ({r.seconds:.0f} s)")


@click.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Default: CHECKPOINT with .onnx.")
@click.option("--target", default=None,
              help="Write an ONNX that this target's TensorRT parses (opset and op forms); default: opset 18.")
@click.option("--opset", type=int, default=None, help="Override the opset (13 to 25; within the target's parser).")
@click.option("--parity-images", type=int, default=default(ExportConfig, "parity_images"), show_default=True)
@click.option("--max-abs-diff", type=float, default=default(ExportConfig, "max_abs_diff"), show_default=True,
              help="Parity tolerance on logits, times the largest |logit| where that exceeds 1.")
@click.option("--data", default=None, help="Data set for parity images (default: the training set's test split; "
              "random images for a checkpoint that names none).")
@preprocessing_options("A torchvision checkpoint's", required=False)
@click.option("--classes", default=None, help="Its labels: a file with one class per line, or a,b,c.")
@json_option
@handle_errors
def export_cmd(checkpoint, out, target, opset, parity_images, max_abs_diff, data, size, resize, mean, std, classes,
               as_json):
    """Export a checkpoint to ONNX and check it against PyTorch on real test images.

    An edgeres checkpoint carries its preprocessing and labels; a torchvision one needs --size, --mean, --std and
    --classes.

    \b
    Examples:
      edgeres export runs/demo/model.pt --out runs/demo/model.onnx
      edgeres export runs/demo/model.pt --target jetson-nano --out runs/demo/model.nano.onnx   # opset 13
      edgeres export resnet18.pth --size 224 --resize 256 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 \\
          --classes imagenet_labels.txt --out resnet18.onnx
    """
    from edgeres.data.labels import parse_floats, read_labels
    from edgeres.export import ExportConfig, onnx_from_checkpoint

    out = out or checkpoint.with_suffix(".onnx")
    cfg = ExportConfig(opset=opset, parity_images=parity_images, max_abs_diff=max_abs_diff, data=data, target=target,
                       size=size, resize=resize, mean=parse_floats("--mean", mean) if mean else None,
                       std=parse_floats("--std", std) if std else None,
                       classes=tuple(read_labels(classes)) if classes else None)
    r = onnx_from_checkpoint(checkpoint, out, cfg)
    emit(as_json, {"onnx": r.onnx, "opset": r.opset, "target": target, "max_abs_diff": r.max_abs_diff,
                   "agreement": r.agreement, "images": r.images},
         f"{r.onnx}: opset {r.opset}{f' for {target}' if target else ''}; parity on {r.images} test images: "
         f"max |Δlogit| {r.max_abs_diff:.2e}, top-1 agreement {r.agreement:.2f}%")


def _not_kept(correction: dict[str, Any]) -> str:
    judged = f" on {correction['judged_on']} judging images"
    return judged + ("" if correction["kept"] else f"; not kept ({' and '.join(correction['fell'])} fell)")


@click.command("quantize")
@click.argument("onnx_path", metavar="ONNX", type=click.Path(path_type=Path))
@click.option("--int8", "int8", is_flag=True, help="Quantize to INT8 (the only mode, so optional; kept for clarity).")
@click.option("--recipe", type=click.Choice(RECIPES), default=default(QuantConfig, "recipe"), show_default=True,
              help="tensorrt: symmetric int8 Q/DQ; cpu: what ONNX Runtime runs fastest here.")
@click.option("--method", type=click.Choice([*METHODS, "auto"]), default=default(QuantConfig, "method"),
              show_default=True,
              help="Activation ranges. minmax, entropy, percentile: ONNX Runtime's calibrators; mse: least error of "
                   "each tensor; layer-mse, layer-cosine: least error of the layers reading it (of the logits' class "
                   "probabilities, for the last). auto tries "
                   "placements, methods and bias correction and keeps the best on a held-out validation slice.")
@click.option("--placement", type=click.Choice(PLACEMENTS), default=default(QuantConfig, "placement"),
              show_default=True,
              help="weighted: Q/DQ on Conv/Gemm inputs and weights only (TensorRT's guidance); ort: every op ONNX "
                   "Runtime quantizes (its fused CPU kernels). auto: weighted for tensorrt, ort for cpu.")
@click.option("--bias-correction", is_flag=True,
              help="Add back the mean output shift that rounding the weights causes (weighted placement).")
@click.option("--adaround", type=int, default=default(QuantConfig, "adaround"), show_default=True, metavar="K",
              help="Learn the int8 rounding of the K worst layers on calibration images (AdaRound; weighted).")
@click.option("--qat", type=int, default=default(QuantConfig, "qat"), show_default=True, metavar="STEPS",
              help="Last resort: quantization-aware fine-tuning for STEPS steps, fake-quant exactly where the "
                   "Q/DQ goes, distilled from the float model's logits (weighted).")
@click.option("--qat-images", type=int, default=default(QuantConfig, "qat_images"), show_default=True, metavar="N",
              help="QAT learns from N class-balanced images of the model's training split, none a calibration "
                   "image, and 1.2 N more (up to 1 GiB) judge AdaRound and QAT with the validation slice; 0, or a "
                   "model that names no data set: the calibration images, judged on the slice alone.")
@click.option("--qat-restarts", type=int, default=default(QuantConfig, "qat_restarts"), show_default=True, metavar="K",
              help="QAT runs K times (seeds 0 to K-1) and the judging images keep the run that agrees best; "
                   "each run takes QAT's time again.")
@click.option("--qat-ranges", type=click.Choice(QAT_RANGES), default=default(QuantConfig, "qat_ranges"),
              show_default=True,
              help="learned: QAT learns each activation range with the weights (LSQ) and the Q/DQ model is written "
                   "with them; fixed: it keeps the ranges the post-training plan chose.")
@click.option("--percentile", type=float, default=default(QuantConfig, "percentile"), show_default=True)
@click.option("--calibration", default=default(QuantConfig, "calibration"), show_default=True,
              help="A folder, or a set's name under calibration/. Default: the shipped set for a fashion-mnist model, "
                   "else a class-balanced sample of the model's own training split.")
@click.option("--allow-small", is_flag=True, help="Accept a calibration set under the minimum size.")
@click.option("--sensitivity", is_flag=True, help="Rank layers by how much INT8 hurts them (JSON + Markdown).")
@click.option("--max-drop", type=float, default=None,
              help="Top-1 points the int8 model may lose on the validation slice; worst layers stay float until it holds.")
@click.option("--max-float-layers", type=int, default=None,
              help="The budget may keep at most K layers in float (default: all but one).")
@click.option("--val-fraction", type=float, default=default(QuantConfig, "val_fraction"), show_default=True,
              help="Share of the calibration set held out for validation (auto, sensitivity, budget).")
@click.option("--trt-cache", "trt_cache_version", default=None, metavar="TRT_VERSION",
              help="Also write a legacy TensorRT calibration cache (implicit INT8, TensorRT ≤ 10), e.g. 8.5.2.")
@click.option("--equalize/--no-equalize", default=False, show_default=True,
              help="Cross-layer equalization of Conv/BN → ReLU → Conv pairs before calibration (planted outliers).")
@click.option("--offset-inputs/--no-offset-inputs", default=default(QuantConfig, "offset_inputs"), show_default=True,
              help="tensorrt recipe, weighted placement: quantize each never-negative input of an unpadded Conv or "
                   "Gemm (post-ReLU) over all 256 int8 levels, read 128 steps lower with the offset given back in "
                   "the layer's bias (exact); TensorRT's symmetric int8 otherwise uses 128 of them.")
@click.option("--search-weights", type=click.Choice(SEARCH_WEIGHTS), default=default(QuantConfig, "search_weights"),
              show_default=True,
              help="mse, layer-mse, layer-cosine: margin counts each calibration image by how near the float model's "
                   "decision it is (an image far from it cannot flip); uniform counts them alike.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Default: ONNX with .int8-RECIPE.onnx.")
@json_option
@handle_errors
def quantize_cmd(onnx_path, int8, recipe, method, placement, bias_correction, adaround, qat, qat_images, qat_restarts,
                 qat_ranges, percentile, calibration, allow_small, sensitivity, max_drop, max_float_layers, val_fraction,
                 trt_cache_version, equalize, offset_inputs, search_weights, out, as_json):
    """Post-training INT8 quantization to explicit Q/DQ ONNX, calibrated on images on disk.

    \b
    Examples:
      edgeres quantize runs/demo/model.onnx --int8 --recipe tensorrt
      edgeres quantize runs/demo/model.onnx --int8 --method auto --sensitivity --max-drop 0.3
      edgeres quantize runs/dense/model.onnx --int8 --method auto --qat 200   # DenseNet, every layer int8
    """
    from edgeres.quantize import QuantConfig, qdq_from_onnx

    out = out or onnx_path.with_name(f"{onnx_path.stem}.int8-{recipe}.onnx")
    cfg = QuantConfig(recipe, method, calibration, percentile, allow_small=allow_small, sensitivity=sensitivity,
                      max_drop=max_drop, max_float_layers=max_float_layers, val_fraction=val_fraction,
                      trt_cache_version=trt_cache_version, equalize=equalize, placement=placement,
                      bias_correction=bias_correction, adaround=adaround, qat=qat, qat_images=qat_images,
                      qat_restarts=qat_restarts, qat_ranges=qat_ranges, offset_inputs=offset_inputs,
                      search_weights=search_weights)
    r = qdq_from_onnx(onnx_path, out, cfg)
    s = r.search
    lines = [f"{r.onnx}: {r.recipe.name} recipe, {s.plan} on {r.calibration_images} calibration images, "
             f"{r.quantize_nodes} QuantizeLinear nodes, {s.seconds:.0f} s"]
    for t in s.tried:
        mark = "  ← chosen" if t["plan"] == s.plan else ""
        lines.append(f"  tried {t['plan']:40} agreement {t['agreement']:6.2f}%  cosine {t['cosine']:.5f}  "
                     f"drop {t['drop']:5.2f} pt  {t['seconds']:4.0f} s{mark}")
    if s.adaround and "after" in s.adaround:
        a = s.adaround
        lines.append(f"AdaRound on {len(a['layers'])} layer(s) (worst by {a['ranked_by']}, {a['seconds']:.0f} s): "
                     f"agreement {a['before']['agreement']:.2f} → {a['after']['agreement']:.2f}%"
                     + _not_kept(a))
    if s.qat and "after" in s.qat:
        q = s.qat
        runs = f", best of {len(q['restarts'])} runs (seed {q['seed']})" if len(q["restarts"]) > 1 else ""
        rg = q.get("ranges", {})
        runs += (f", ranges learned (×{rg['factor_min']:.2f} to ×{rg['factor_max']:.2f})" if rg.get("range_lr") else "")
        lines.append(f"QAT, {q['steps']} steps on {q['images']} {q['source']}{runs} ({q['seconds']:.0f} s): agreement "
                     f"{q['before']['agreement']:.2f} → {q['after']['agreement']:.2f}%"
                     + _not_kept(q))
    if s.equalize:
        e = s.equalize
        lines.append(f"equalized {e['pairs']} Conv/BN → ReLU → Conv pairs: channel max/median {e['max_over_median_before']}"
                     f" → {e['max_over_median_after']} (median over pairs), output unchanged to {e['max_abs_diff']:.1e}")
    if s.all_int8:
        b = s.all_int8
        lines.append(f"validation slice ({b['images']} images): all-int8 agreement {b['agreement']:.2f}%, "
                     f"top-1 drop {b['drop']:.2f} pt")
    if s.offset_inputs:
        lines.append(f"{s.offset_inputs} never-negative layer inputs over all 256 int8 levels (an offset, given back in "
                     f"each layer's bias; --no-offset-inputs: 128)")
    if s.search_weights and s.search_weights["by"] == "margin":
        w = s.search_weights
        lines.append(f"range search: each of {w['images']} images weighted by its float decision margin "
                     f"({w['effective_images']:.0f} effective; --search-weights uniform: alike)")
    if s.float_layers:
        lines.append(f"kept in float to meet --max-drop {max_drop}: {', '.join(s.float_layers)} "
                     f"(drop now {s.budget_steps[-1]['drop']:.2f} pt)")
        c = s.latency_cost or {}
        lines.append(f"latency cost: p50 {c['p50_ms']['with_float_layers']:.3f} ms vs {c['p50_ms']['all_int8']:.3f} ms "
                     f"all-int8 ({c['ratio']:.2f}×, {c['measured_on']}){'; ' + c['note'] if c['note'] else ''}")
    if sensitivity:
        lines.append(f"sensitivity: {out.with_suffix('.sensitivity.md')}")
    if s.trt_cache:
        lines.append(f"TensorRT calibration cache: {s.trt_cache}")
    emit(as_json, {"onnx": r.onnx, "recipe": r.recipe.name, "method": r.method, "plan": s.plan,
                   "calibration_images": r.calibration_images, "quantize_nodes": r.quantize_nodes,
                   "search": s.to_dict()}, "\n".join(lines))


@click.command("build")
@click.argument("onnx_path", metavar="ONNX", type=click.Path(path_type=Path))
@click.option("--target", required=True, help="A target name (edgeres targets), or jetson to detect the board.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="Default: the ONNX model's own (int8 for Q/DQ models).")
@click.option("--dla-core", type=int, default=None,
              help="Build for this DLA core (Xavier, Orin NX, AGX Orin): fp16 or int8, static batch.")
@click.option("--batch", type=int, default=default(BuildConfig, "batch"), show_default=True,
              help="The batch the engine is optimized for.")
@click.option("--max-batch", type=int, default=default(BuildConfig, "max_batch"), show_default=True,
              help="The largest batch the engine takes (DLA: --batch, static).")
@click.option("--tf32", "allow_tf32", is_flag=True, help="Let fp32 layers use TF32 (Ampere and newer); labelled tf32.")
@click.option("--force-device", is_flag=True,
              help="Build a Jetson target's engine on this machine anyway; the manifest records where.")
@click.option("--out", type=click.Path(path_type=Path), default=None)
@click.option("--host", default=None, metavar="USER@DEVICE",
              help="Build on this device with its own trtexec (nothing installed there: JetPack 4.6 and 5 too), and "
                   "bring the engine back here with its manifest.")
@ssh_options
@click.option("--trtexec", "trtexec_path", default=None, metavar="PATH",
              help="trtexec on --host (default: on PATH, else /usr/src/tensorrt/bin/trtexec).")
@json_option
@handle_errors
def build_cmd(onnx_path, target, precision, dla_core, batch, max_batch, allow_tf32, force_device, out, host,
              ssh_options, identity, accept_new_host_key, trtexec_path, as_json):
    """Build the runtime artifact for a target: a TensorRT engine, or an optimized ONNX for cpu.

    \b
    Examples:
      edgeres build runs/demo/model.int8-tensorrt.onnx --target jetson
      edgeres build runs/demo/model.jetson-agx-orin.onnx --target jetson-agx-orin --precision fp16 --dla-core 0
      edgeres build runs/demo/model.nano.onnx --target jetson --host nvidia@nano.local   # the device's trtexec
      edgeres build runs/demo/model.onnx --target cpu
    """
    from edgeres.backends.layer_info import LayerInfo, engine_note
    from edgeres.build import engine_from_onnx
    from edgeres.config import BuildConfig

    cfg = BuildConfig(target, precision, dla_core, batch, max_batch, allow_tf32, force_device)
    if host is not None:
        from edgeres.bench.trtexec_build import engine_from_onnx_on_device
        from edgeres.remote import SshHost

        with SshHost(host, tuple(ssh_options), identity, accept_new_host_key).connected() as one:
            r = engine_from_onnx_on_device(onnx_path, cfg, one, trtexec_path, out)
    else:
        r = engine_from_onnx(onnx_path, cfg, out)
    lines = [f"{r.artifact}: {r.runtime} {r.precision} for {r.target}, {r.artifact.stat().st_size / 2**20:.1f} MiB"]
    d = r.details
    if d.get("tensorrt"):
        how = (f"with trtexec: {d['command']}" if d.get("runner") == "trtexec" else
               f"flags {d['flags'] or 'none'}, cleared {d['cleared_flags'] or 'none'}; timing cache "
               f"{d['timing_cache_status']}; {d['seconds']} s")
        lines.append(f"TensorRT {d['tensorrt']} on {d['gpu']} (sm {d['compute_capability']}), built on "
                     f"{d['built_on']}{' (forced)' if d['forced_device'] else ''}; profile {d['profile']}; {how}")
        if d.get("dla_core") is not None:
            lines.append(f"DLA core {d['dla_core']}: {d['dla_layers']} layers on the DLA, "
                         f"{d['gpu_fallback_layers']} fall back to the GPU")
        said = engine_note("engine:", d["label"], [LayerInfo(**la) for la in d.get("layers") or []], d.get("dla_core"))
        lines += [said] if said else []
    emit(as_json, r.to_dict(), "\n".join(lines))
