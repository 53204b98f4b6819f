"""Auto's last resorts, AdaRound and QAT of the chosen plan, and the test that decides whether each is kept."""
from __future__ import annotations

import time
from typing import Any

from edgeres.config import QuantConfig
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


def _judged(ev: Evaluator, plan: Plan, new: Plan, out: dict[str, Any]) -> tuple[Score, Score]:
    """Scores ``plan`` and its correction ``new`` on the validation slice into ``out`` (before, after, kept, fell)."""
    before, after = ev.variant(plan)[1], ev.variant(new)[1]
    fell = _fell(before, after)
    out.update(before=before.to_dict(), after=after.to_dict(), kept=not fell, fell=fell)
    return before, after


def _verdict(out: dict[str, Any], instead: str) -> str:
    return "" if out["kept"] else f"; {' and '.join(out['fell'])} fell: kept {instead}"


def fine_tuned(ev: Evaluator | None, planner: Planner, plan: Plan, cfg: QuantConfig) -> tuple[Plan, dict]:
    """QAT of the chosen plan for ``cfg.qat`` steps; kept only if no measure of ``_fell`` falls on the validation slice."""
    if not isinstance(plan, Weighted):
        raise ConfigError("--qat fine-tunes with the weighted placement's fake-quantization, and this run chose ONNX "
                          "Runtime's; add --placement weighted")
    t0 = time.perf_counter()
    new, out = planner.qat(plan, cfg.qat)
    out.update(seconds=round(time.perf_counter() - t0, 1), kept=True)
    if ev is not None:
        before, after = _judged(ev, plan, new, out)
        log(f"QAT, {cfg.qat} steps: agreement {before.agreement:.2f} → {after.agreement:.2f}%, drop "
            f"{before.drop:.2f} → {after.drop:.2f} pt" + _verdict(out, "the post-training model"))
    return (new if out["kept"] else plan), out


def adarounded(ev: Evaluator | None, planner: Planner, plan: Plan, cfg: QuantConfig,
                rows: list[dict]) -> tuple[Plan, dict]:
    """AdaRound for the ``cfg.adaround`` worst layers (by the sensitivity pass, else by each layer's own output
    error); kept only if no measure of ``_fell`` falls on the validation slice.
    """
    from edgeres.quantize.correction import local_errors

    if not isinstance(plan, Weighted):
        raise ConfigError("--adaround learns int8 weights of the weighted placement, and this run chose ONNX "
                          "Runtime's; add --placement weighted")
    if rows:
        worst, ranked_by = [r["node"] for r in rows[:cfg.adaround]], "sensitivity"
    else:
        errs = local_errors(planner.acts(), plan.plan.ranges, planner.unsigned, plan.plan.weights)
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
