"""float ONNX → Q/DQ ONNX: static post-training quantization with a calibration set on disk."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeres.artifacts import (
    atomic_path,
    check_against_manifest,
    refuse_overwriting_inputs,
    temp_dir,
    write_json_atomic,
    write_manifest,
    write_text_atomic,
)
from edgeres.config import DEFAULT_DATASET, QuantConfig
from edgeres.data.calibration import (
    MIN_IMAGES,
    CalibrationSet,
    check_disjoint,
    check_matches,
    load_calibration_set,
    sample_calibration,
)
from edgeres.data.datasets import load_dataset
from edgeres.errors import AccuracyBudgetExceeded, ArtifactError, ConfigError, DataError
from edgeres.hw import cpu_features
from edgeres.onnx_model import (
    PRECISION_KEY,
    RECIPE_KEY,
    load_onnx,
    metadata,
    onnx_info,
    set_metadata,
)
from edgeres.paths import DEFAULT_CALIBRATION, calibration_path
from edgeres.progress import log
from edgeres.quantize.calibrate import quiet, tensor_ranges
from edgeres.quantize.check import require_valid_qdq
from edgeres.quantize.last_resort import adarounded, fine_tuned, judge_of, training_draw
from edgeres.quantize.plans import AUTO_CANDIDATES, ORT_METHODS, Plan, Planner, Weighted, resolve_placement
from edgeres.quantize.ranges import SEARCHED, weighting
from edgeres.quantize.recipes import Recipe, recipe_for
from edgeres.quantize.search import (
    Evaluator,
    quantizable_layers,
    sensitivity,
    sensitivity_markdown,
    split_validation,
)


@dataclass
class SearchResult:
    """What quantize tried and decided, beyond the calibration itself (the manifest's ``results.search``)."""

    validation_images: int = 0
    tried: list[dict[str, Any]] = field(default_factory=list)  # method auto: each candidate's scores on the slice
    equalize: dict[str, Any] | None = None
    all_int8: dict[str, Any] | None = None  # scores of the all-int8 model on the validation slice
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    budget_steps: list[dict[str, Any]] = field(default_factory=list)
    float_layers: list[str] = field(default_factory=list)
    adaround: dict[str, Any] | None = None
    qat: dict[str, Any] | None = None
    plan: str = ""  # what was written: placement, method and corrections
    offset_inputs: int = 0  # inputs written over 256 levels with an offset (tensorrt recipe; `qdq_writer`)
    search_weights: dict[str, Any] | None = None  # a searched method's images and their weighting (`ranges`)
    seconds: float = 0.0  # the whole quantization, calibration to file
    latency_cost: dict[str, Any] | None = None
    trt_cache: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class QuantResult:
    onnx: Path
    recipe: Recipe
    method: str
    calibration_images: int
    quantize_nodes: int
    ranges: dict[str, tuple[float, float]]
    search: SearchResult = field(default_factory=SearchResult)


AUTO_ESCALATE_BELOW = 99.0  # --method auto tries AdaRound, then QAT, when the chosen plan agrees less than this (%)
AUTO_ADAROUND = 8  # layers
AUTO_QAT = 200  # steps


def _score_key(t: dict) -> tuple[float, float, float]:
    """Fidelity to fp32 first: the logits' cosine is continuous, while on a validation slice of ~100 images top-1
    agreement moves in 1-point steps and the label drop is noisier still (a candidate that happens to fix fp32's
    mistakes is not closer to it).
    """
    return (t["cosine"], t["agreement"], -t["drop"])


def _fast_alternative(best: dict, tried: list[dict]) -> dict | None:
    """When ``best`` is of the weighted placement: the best-scoring candidate of ONNX Runtime's placement (its fused
    int8 kernels) that is within 0.5 pt of ``best``'s drop and 1 point of its agreement, if any. The best of those
    that qualify, not the best of all of them: a candidate that scores a higher cosine but fails the margins must not
    hide one that meets them.
    """
    if best["placement"] != "weighted":
        return None
    close = [t for t in tried if t["placement"] == "ort" and t["drop"] <= best["drop"] + 0.5
             and t["agreement"] >= best["agreement"] - 1.0]
    return max(close, key=_score_key) if close else None


def _pick_plan(ev: Evaluator, planner: Planner, cfg: QuantConfig, weighted_only: bool) -> tuple[Plan, list[dict]]:
    """Score every candidate on the validation slice and keep the best (the cpu recipe keeps ONNX Runtime's fast
    placement unless the weighted one is clearly more accurate).
    """
    tried: list[dict] = []

    def run(plan_args: tuple[str, str, float | None], bias: bool = False) -> dict:
        t0 = time.perf_counter()
        plan = planner.plan(plan_args[0], plan_args[1], plan_args[2], bias_correction=bias)
        _, s = ev.variant(plan)
        row = {"plan": plan.label, "placement": plan.placement, "method": plan.method, "percentile": plan_args[2],
               "bias_correction": bias, "seconds": round(time.perf_counter() - t0, 1), **s.to_dict(), "_plan": plan}
        tried.append(row)
        log(f"  {plan.label}: agreement {s.agreement:.2f}%, cosine {s.cosine:.5f}, drop {s.drop:.2f} pt "
            f"({row['seconds']:.0f} s)")
        return row

    allowed = {"weighted"} if weighted_only else {"weighted", "ort"} if cfg.placement == "auto" else {cfg.placement}
    for placement, method, pct in AUTO_CANDIDATES:
        if placement in allowed:
            run((placement, method, pct), cfg.bias_correction and placement == "weighted")
    weighted = [t for t in tried if t["placement"] == "weighted"]
    if weighted and not cfg.bias_correction:
        top = max(weighted, key=_score_key)
        run(("weighted", top["method"], top["percentile"]), bias=True)
        weighted = [t for t in tried if t["placement"] == "weighted"]
    best = max(tried, key=_score_key)
    fast = _fast_alternative(best, tried) if planner.recipe.latency_representative else None
    if fast is not None:
        log(f"  {best['plan']} scores best, but {fast['plan']} is within 0.5 pt and runs ONNX Runtime's fused "
            f"int8 kernels: keeping it")
        best = fast
    log(f"method auto chose {best['plan']}")
    return best["_plan"], [{k: v for k, v in t.items() if k != "_plan"} for t in tried]


def _fit_budget(ev: Evaluator, plan: Plan, rows: list[dict], cfg: QuantConfig,
                base_drop: float) -> tuple[list[dict], list[dict]]:
    """Keep the most sensitive layers (``rows``, worst first) in float, one more at a time, until the budget holds."""
    steps, kept = [], []
    limit = len(rows) - 1 if cfg.max_float_layers is None else min(cfg.max_float_layers, len(rows) - 1)
    for r in rows[:limit]:  # keeping every layer in float would not be an int8 model
        kept.append(r)
        _, s = ev.variant(plan, exclude=[k["node"] for k in kept])
        steps.append({"float_layers": [k["module"] for k in kept], **s.to_dict()})
        log(f"  {len(kept)} layer(s) in float ({r['module']}): drop {s.drop:.2f} pt")
        if cfg.max_drop is not None and s.drop <= cfg.max_drop:
            return kept, steps
    raise AccuracyBudgetExceeded(
        f"even with {len(kept)} of {len(rows)} layers in float the drop is {steps[-1]['drop'] if steps else base_drop:.2f} pt "
        f"(all-int8: {base_drop:.2f}), over --max-drop {cfg.max_drop}; raise the budget, use --method auto, "
        f"or a larger calibration set")


def _latency_cost(final: Path, all_int8: Path, recipe: Recipe, input_shape: tuple[int, ...]) -> dict:
    """p50 at batch 1 with the float layers against all-int8, on this CPU (ONNX Runtime), in alternating windows."""
    from edgeres.backends.base import Session
    from edgeres.backends.latency import LatencyConfig, compare_latency
    from edgeres.backends.onnxruntime import OrtSession

    sessions: dict[str, Session] = {"all_int8": OrtSession(all_int8), "with_float_layers": OrtSession(final)}
    try:
        stats = compare_latency(sessions, np.zeros((1, *input_shape), np.float32), 1, LatencyConfig(0.2, 10, 2.0, 10))
    finally:
        for s in sessions.values():
            s.close()
    p50 = {k: v.p50_ms for k, v in stats.items()}
    return {"p50_ms": p50, "ratio": p50["with_float_layers"] / p50["all_int8"], "measured_on": "this CPU, ONNX Runtime",
            "representative": recipe.latency_representative,
            "note": "" if recipe.latency_representative else "the tensorrt recipe's CPU latency says nothing about the "
                                                              "device: run `edgeres bench` there"}


def _equalized(pre: Path, x: np.ndarray, input_name: str, work: Path, batch: int) -> tuple[Path, dict]:
    """``pre`` after cross-layer equalization, checked to compute the same function on calibration images."""
    from edgeres.backends.onnxruntime import OrtSession
    from edgeres.quantize.equalize import equalize

    eq = work / "equalized.onnx"
    done = equalize(pre, eq, x, input_name, batch)
    probe = x[:64]
    a, b = OrtSession(pre).infer_all(probe), OrtSession(eq).infer_all(probe)
    done["max_abs_diff"] = float(np.abs(a - b).max())
    done["max_abs_logit"] = float(np.abs(a).max())
    if done["max_abs_diff"] > 1e-3 * max(1.0, done["max_abs_logit"]):
        raise ArtifactError(f"equalization changed the model's output by {done['max_abs_diff']:.2e}; "
                            f"quantize without --equalize and report it")
    log(f"equalized {done['pairs']} Conv/BN → Relu → Conv pairs: channel max/median "
        f"{done['max_over_median_before']} → {done['max_over_median_after']} (median over pairs)")
    return eq, done


def _name_nodes(pre: Path) -> None:
    """Give each unnamed or twice-named node of ``pre`` a name of its own: bias correction, AdaRound, the sensitivity
    pass and the float-layer budget key layers by name, and an imported graph may leave names empty (ONNX Runtime's
    pre-processing keeps them so), where every layer would share one entry.
    """
    model = onnx.load(str(pre))
    seen: set[str] = set()
    renamed = 0
    for i, n in enumerate(model.graph.node):
        if not n.name or n.name in seen:
            n.name, renamed = f"{n.op_type}_{i}_{n.output[0]}", renamed + 1
        seen.add(n.name)
    if renamed:
        onnx.save(model, str(pre))


def calibration_for(cfg: QuantConfig, dataset: str | None, model: Path) -> CalibrationSet:
    """``--calibration`` if given; else the shipped set for Fashion-MNIST models, a class-balanced sample of the
    model's own training split for others, and a refusal for a model that names no data set.
    """
    if cfg.calibration is not None:
        return load_calibration_set(calibration_path(cfg.calibration), cfg.allow_small)
    if dataset == DEFAULT_DATASET:
        return load_calibration_set(calibration_path(DEFAULT_CALIBRATION), cfg.allow_small)
    if dataset is None:
        raise ConfigError(f"{model} names no data set to draw calibration images from; pass --calibration FOLDER "
                          f"(`edgeres calib make --data YOUR_DATA --out FOLDER` makes one)")
    log(f"calibration: a class-balanced sample of {dataset}'s training split (pass --calibration to choose)")
    calib = sample_calibration(dataset)
    if len(calib.images) < MIN_IMAGES and not cfg.allow_small:
        raise DataError(f"{dataset}'s training split gives only {len(calib.images)} calibration images, fewer than "
                        f"{MIN_IMAGES}; pass --allow-small or a larger --calibration set")
    return calib


def qdq_from_onnx(onnx_path: Path, out: Path, cfg: QuantConfig = QuantConfig()) -> QuantResult:
    """Quantize ``onnx_path`` to explicit Q/DQ with ``cfg.recipe``; writes ``out`` and its manifest."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    cfg.validate()
    out = Path(out)
    for made in (out, out.with_suffix(".sensitivity.json"), out.with_suffix(".sensitivity.md"),
                 out.with_suffix(".calib.cache")):
        refuse_overwriting_inputs(made, {"input model": Path(onnx_path)})
    check_against_manifest(Path(onnx_path), "model", "export it again with `edgeres export`")
    info = onnx_info(Path(onnx_path))
    if info.precision != "fp32":
        raise ConfigError(f"{onnx_path} is already {info.precision}; quantize the float model from `edgeres export`")
    static = info.input_shape[0] if isinstance(info.input_shape[0], int) else None
    if static:  # an imported graph with its batch fixed: feed it that batch
        cfg = replace(cfg, batch_size=static)
    calib = calibration_for(cfg, info.dataset, Path(onnx_path))
    check_matches(calib, info.preprocessing.channels, info.dataset, info.classes)
    eval_data = cfg.eval_data or info.dataset
    if eval_data:
        check_disjoint(calib, load_dataset(eval_data, "test"), info.preprocessing)
    recipe = recipe_for(cfg.recipe)
    x_all = calib.images.tensors(info.preprocessing, "calibration images")
    if cfg.needs_validation:
        cal_idx, val_idx = split_validation(len(x_all), cfg.val_fraction)
    else:
        cal_idx, val_idx = np.arange(len(x_all)), np.arange(0)
    x = x_all[cal_idx]
    search = SearchResult(validation_images=int(len(val_idx)))
    kept: list[dict] = []
    all_int8: Path | None = None
    weighted_only = cfg.bias_correction or cfg.adaround > 0 or cfg.qat > 0
    t_start = time.perf_counter()
    with temp_dir("quant") as tmpdir:
        work = Path(tmpdir)
        pre = work / "pre.onnx"
        with quiet():  # ONNX's shape inference suffices for an exported classifier (the same nodes and initializers
            # as with ONNX Runtime's symbolic one, whose module imports torch where installed: 3 s of every quantize)
            quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
        _name_nodes(pre)
        if cfg.equalize:
            pre, search.equalize = _equalized(pre, x, info.input_name, work, static or 50)
        ev = Evaluator(pre, x_all[val_idx], calib.images.labels[val_idx], recipe, work) if len(val_idx) else None
        planner = Planner(pre, x, info.input_name, recipe, replace(cfg, batch_size=static or cfg.batch_size), work)
        log(f"calibrating on {len(x)} images ({cfg.method}, recipe {recipe.name}) …")
        if cfg.method == "auto":
            if ev is None:
                raise ConfigError("--method auto needs a validation slice; set --val-fraction above 0")
            plan, search.tried = _pick_plan(ev, planner, cfg, weighted_only)
        else:
            placement = "weighted" if weighted_only and cfg.placement == "auto" else cfg.placement
            plan = planner.plan(resolve_placement(placement, recipe, cfg.method), cfg.method, cfg.percentile,
                                cfg.bias_correction)
        rows: list[dict] = []
        if ev is not None:
            all_int8, base = ev.variant(plan, keep=True)
            if cfg.sensitivity:
                rows = sensitivity(ev, plan, quantizable_layers(pre), True)
        escalate = cfg.method == "auto" and isinstance(plan, Weighted) and ev is not None and \
            base.agreement < AUTO_ESCALATE_BELOW
        if escalate and not (cfg.adaround or cfg.qat):  # auto's last resorts, each kept only if it scores no worse
            log(f"validation agreement {base.agreement:.2f}% < {AUTO_ESCALATE_BELOW}%: trying AdaRound on the "
                f"{AUTO_ADAROUND} worst layers, then {AUTO_QAT} QAT steps ({cfg.qat_restarts} runs)")
            cfg = replace(cfg, adaround=AUTO_ADAROUND, qat=AUTO_QAT)
        if cfg.adaround or cfg.qat:  # judged on the slice and on training images that neither calibrate nor train
            draw = training_draw(cfg, info.dataset, info.preprocessing, x_all, x)
            judge = judge_of(ev, draw)
        if cfg.adaround:
            plan, search.adaround = adarounded(judge, planner, plan, cfg, rows)
            if ev is not None and search.adaround["kept"] and all_int8 is not None:
                all_int8.unlink()
                all_int8, base = ev.variant(plan, keep=True)
        if cfg.qat and escalate and base.agreement >= AUTO_ESCALATE_BELOW:
            log("AdaRound brought the validation slice up to the mark: no QAT")
        elif cfg.qat:
            plan, search.qat = fine_tuned(judge, planner, plan, cfg, draw.x)
            search.qat["source"] = draw.source
            if ev is not None and search.qat["kept"] and all_int8 is not None:
                all_int8.unlink()
                all_int8, base = ev.variant(plan, keep=True)
        if ev is not None:
            search.all_int8 = base.to_dict()
            over = cfg.max_drop is not None and base.drop > cfg.max_drop
            if over and not rows:
                rows = sensitivity(ev, plan, quantizable_layers(pre), False)
            if cfg.sensitivity:
                search.sensitivity = rows
                write_json_atomic(out.with_suffix(".sensitivity.json"), {"baseline": base.to_dict(), "layers": rows})
                write_text_atomic(out.with_suffix(".sensitivity.md"), sensitivity_markdown(rows, base.to_dict()))
            if over:
                log(f"all-int8 drops {base.drop:.2f} pt > --max-drop {cfg.max_drop}: keeping layers in float …")
                kept, search.budget_steps = _fit_budget(ev, plan, rows, cfg, base.drop)
        search.float_layers = [k["module"] for k in kept]
        search.plan = plan.label
        search.offset_inputs = len(plan.plan.offset) if isinstance(plan, Weighted) else 0
        if plan.method in SEARCHED:
            search.search_weights = weighting(planner.acts().margins, cfg.search_weights)
        search.seconds = round(time.perf_counter() - t_start, 1)
        method, pct = plan.method, plan.percentile or cfg.percentile
        with atomic_path(out) as tmp:
            plan.write(pre, tmp, exclude=[k["node"] for k in kept])
            model = load_onnx(tmp)
            rep = require_valid_qdq(model, recipe.tensorrt_rules, str(out))
            src_meta = metadata(load_onnx(Path(onnx_path)))
            src_meta.update({PRECISION_KEY: "int8", RECIPE_KEY: json.dumps(
                {"recipe": recipe.name, "method": method, "percentile": pct if method == "percentile" else None,
                 "placement": plan.placement, "plan": plan.label, "calibration": calib.root.name,
                 "float_layers": search.float_layers, "offset_inputs": search.offset_inputs})})
            set_metadata(model, src_meta)
            onnx.save(model, str(tmp))
            if kept and all_int8 is not None:
                search.latency_cost = _latency_cost(tmp, all_int8, recipe, info.preprocessing.input_shape)
            ranges = plan.tensor_ranges()
            if cfg.trt_cache_version:
                from edgeres.quantize.trt_cache import write_calibration_cache
                every = tensor_ranges(planner.ort_data(method if method in ORT_METHODS else "minmax", pct))
                amax = {k: max(abs(lo), abs(hi)) for k, (lo, hi) in {**every, **ranges}.items()}
                search.trt_cache = str(write_calibration_cache(out.with_suffix(".calib.cache"), amax,
                                                                  cfg.trt_cache_version, method))
            calib_input = calib.manifest_file() if calib.manifest_file().is_file() else calib.root
            write_manifest(out, "onnx-int8-qdq", {"onnx": onnx_path, "calibration_manifest": calib_input},
                           asdict(cfg), info.preprocessing.to_dict(),
                           {"recipe": asdict(recipe), "method": method, "placement": plan.placement,
                            "calibration_images": len(x),
                            "calibration_source": calib.source, "quantize_nodes": rep.quantize_nodes,
                            "per_channel_weights": rep.per_channel_weights,
                            "requantizing_concats": rep.requantizing_concats,
                            "float_weight_layers": rep.float_weight_layers, "cpu_features": cpu_features(),
                            "checked_disjoint_from": eval_data, "search": search.to_dict()}, content=tmp)
    return QuantResult(out, recipe, method, len(x), rep.quantize_nodes, ranges, search)
