"""Auto's last resorts, AdaRound and QAT of the chosen plan, and the test that decides whether each is kept."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeres.config import QuantConfig
from edgeres.data.preprocess import Preprocessing
from edgeres.errors import ConfigError
from edgeres.progress import log
from edgeres.quantize.plans import Plan, Planner, Weighted
from edgeres.quantize.search import Evaluator, Score

FIDELITY = ("cosine", "agreement", "snr_db")  # what a last-resort correction must not make worse on the slice


def _fell(before: Score, after: Score) -> list[str]:
    """The measures of fidelity to fp32 on which ``after`` scores below ``before``. A correction trained on the
    calibration images (AdaRound, QAT) can raise the logits' mean cosine while it changes their scale and flips
    predictions: on a DenseNet-121, 200 QAT steps raised the slice's cosine (0.99385 → 0.99492) while its agreement
    fell 94 → 93% and its SNR 20.2 → 15.4 dB, and the test images lost 1.3 points. So it is kept only if none falls.
    """
    return [k for k in FIDELITY if getattr(after, k) < getattr(before, k)]


def _record(out: dict[str, Any], before: Score, after: Score) -> None:
    """Into ``out``: the plan's and its correction's scores on the judging images, and whether it is kept."""
    fell = _fell(before, after)
    out.update(before=before.to_dict(), after=after.to_dict(), kept=not fell, fell=fell, judged_on=before.images)


def _judged(ev: Evaluator, plan: Plan, new: Plan, out: dict[str, Any]) -> tuple[Score, Score]:
    """Scores ``plan`` and its correction ``new`` on the judging images into ``out`` (before, after, kept, fell)."""
    before, after = ev.variant(plan)[1], ev.variant(new)[1]
    _record(out, before, after)
    return before, after


def _verdict(out: dict[str, Any], instead: str) -> str:
    return "" if out["kept"] else f"; {' and '.join(out['fell'])} fell: kept {instead}"


# judging images drawn for each QAT image (6,000 for the default 5,000): on the fp32-trained DenseNet-121, 928 judges
# kept the middle of three QAT runs on both recipes, and 6,000 others ranked them as the test images did
JUDGES_PER_QAT_IMAGE = 1.2
JUDGE_BYTES = 1 << 30  # and no more judges than fit in this (6,000 of 40×40×1 take 38 MB; 1,783 of 224×224×3 fit)


@dataclass
class TrainingDraw:
    """Images of the model's training split that are not calibration images (the validation slice included): what
    QAT learns from (``x``), and what judges AdaRound and QAT besides the slice (``judge_x``, ``judge_y``).
    """

    x: np.ndarray
    judge_x: np.ndarray
    judge_y: np.ndarray
    source: str


def training_draw(cfg: QuantConfig, dataset: str | None, pre: Preprocessing, calibration_all: np.ndarray,
                  calibration: np.ndarray) -> TrainingDraw:
    """``cfg.qat_images`` class-balanced images of the model's training split for QAT, and ``JUDGES_PER_QAT_IMAGE``
    times as many more (at most ``JUDGE_BYTES`` of them as the model sees them) to judge the last resorts (only those
    without ``cfg.qat``), none of them one of the calibration images ``calibration_all`` (whose slice judges too, and
    whose other images AdaRound fits), compared as the model sees them; or the ``calibration`` images, judged on the
    slice alone, when ``cfg.qat_images`` is 0 or the model names no data set.

    On a DenseNet-121, QAT on the 400 calibration images fitted them, and the slice's 100 images judged 200 QAT steps
    better on every measure (agreement 94 → 95%) that cost 0.75 points of agreement on 2,000 test images
    (`docs/int8-hard-case.md`): one image there is a point of agreement.
    """
    from edgeres.data.calibration import sample_calibration

    empty = np.zeros((0, *calibration.shape[1:]), np.float32)
    if not cfg.qat_images or dataset is None:
        return TrainingDraw(calibration, empty, np.zeros(0, np.int64), "calibration images")
    fit = JUDGE_BYTES // max(1, int(np.prod(calibration.shape[1:])) * 4)
    share = min(round(cfg.qat_images * JUDGES_PER_QAT_IMAGE), fit)  # without QAT (AdaRound alone), only judges
    total = share + (cfg.qat_images if cfg.qat else 0)
    drawn = sample_calibration(dataset, total, seed=1).images
    x = drawn.tensors(pre, "QAT and judging images" if cfg.qat else "judging images")
    seen = {a.tobytes() for a in calibration_all}
    fresh = np.array([a.tobytes() not in seen for a in x], bool)
    x, y = x[fresh], np.asarray(drawn.labels)[fresh]
    judge = np.ones(len(x), bool)
    if cfg.qat:  # a fixed shuffle splits the draw, each class in about the draw's proportions
        judge[:] = False
        judge[np.random.default_rng(0).permutation(len(x))[:round(len(x) * share / total)]] = True
    return TrainingDraw(x[~judge], x[judge], y[judge], f"images of {dataset}'s training split")


def judge_of(ev: Evaluator | None, draw: TrainingDraw) -> Evaluator | None:
    """The evaluator that decides whether a last resort is kept: the validation slice and the draw's judging images."""
    if ev is None or not len(draw.judge_x):
        return ev
    y = np.concatenate([ev.y, draw.judge_y]) if ev.y is not None else None
    work = ev.work / "judge"  # its variants' names would be the slice evaluator's, whose all-int8 file is kept
    work.mkdir(exist_ok=True)
    return Evaluator(ev.pre, np.concatenate([ev.x, draw.judge_x]), y, ev.recipe, work)


def fine_tuned(ev: Evaluator | None, planner: Planner, plan: Plan, cfg: QuantConfig,
               images: np.ndarray) -> tuple[Plan, dict]:
    """QAT of the chosen plan for ``cfg.qat`` steps on ``images``, ``cfg.qat_restarts`` times (seeds 0, 1, …: the
    minibatches and the probe); the judging images (``judge_of``) keep the run that agrees best (then the highest
    cosine), and keep it only if no measure of ``_fell`` falls against the plan.

    On the fp32-trained DenseNet-121 QAT's seed alone moved the test images' agreement by 0.85 points of 10,000, and
    the judges ranked the seeds as the test images did (`docs/int8-hard-case.md`).
    """
    if not isinstance(plan, Weighted):
        raise ConfigError("--qat fine-tunes with the weighted placement's fake-quantization, and this run chose ONNX "
                          "Runtime's; add --placement weighted")
    t0 = time.perf_counter()
    before = ev.variant(plan)[1] if ev is not None else None
    runs: list[tuple[Weighted, dict, Score | None]] = []
    for seed in range(cfg.qat_restarts if ev is not None else 1):  # without judges there is nothing to pick by
        tuned, info = planner.qat(plan, cfg.qat, images, seed)
        runs.append((tuned, {**info, "seed": seed}, ev.variant(tuned)[1] if ev is not None else None))
    new, out, after = max(runs, key=lambda r: (r[2].agreement, r[2].cosine) if r[2] is not None else (0.0, 0.0))
    out.update(seconds=round(time.perf_counter() - t0, 1), kept=True, restarts=[
        {"seed": i["seed"], "loss_last": i["loss_last"], **({"agreement": s.agreement, "cosine": s.cosine} if s else {})}
        for _, i, s in runs])
    if before is not None and after is not None:
        _record(out, before, after)
        tries = f" (best of {len(runs)} runs: seed {out['seed']})" if len(runs) > 1 else ""
        log(f"QAT, {cfg.qat} steps{tries}: agreement {before.agreement:.2f} → {after.agreement:.2f}%, drop "
            f"{before.drop:.2f} → {after.drop:.2f} pt" + _verdict(out, "the post-training model"))
    return (new if out["kept"] else plan), out


def adarounded(ev: Evaluator | None, planner: Planner, plan: Plan, cfg: QuantConfig,
                rows: list[dict]) -> tuple[Plan, dict]:
    """AdaRound for the ``cfg.adaround`` worst layers (by the sensitivity pass, else by each layer's own output
    error); kept only if no measure of ``_fell`` falls on the judging images.
    """
    from edgeres.quantize.correction import local_errors

    if not isinstance(plan, Weighted):
        raise ConfigError("--adaround learns int8 weights of the weighted placement, and this run chose ONNX "
                          "Runtime's; add --placement weighted")
    if rows:
        worst, ranked_by = [r["node"] for r in rows[:cfg.adaround]], "sensitivity"
    else:
        errs = local_errors(planner.acts(), plan.plan)
        worst, ranked_by = sorted(errs, key=errs.__getitem__, reverse=True)[:cfg.adaround], "layer output error"
    t0 = time.perf_counter()
    new = planner.adaround(plan, worst)
    out: dict[str, Any] = {"layers": new.adarounded, "ranked_by": ranked_by,
                           "seconds": round(time.perf_counter() - t0, 1), "kept": True}
    if ev is not None:
        before, after = _judged(ev, plan, new, out)
        log(f"AdaRound on {len(worst)} layer(s) (worst by {ranked_by}): agreement {before.agreement:.2f} → "
            f"{after.agreement:.2f}%, drop {before.drop:.2f} → {after.drop:.2f} pt" + _verdict(out, "rounding to nearest"))
    return (new if out["kept"] else plan), out
