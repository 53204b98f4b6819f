r"""Every candidate `--method auto` scores, on the test set: what auto's choice gets against the other candidates, and
what calibrating on all the images changes (auto calibrates on 4/5 of them and holds 1/5 out to choose with).

    .venv/bin/python benchmarks/int8_candidates.py run --model runs/hard/resnet18.onnx --calibration DIR \\
        --recipe tensorrt --jsonl runs/hard/candidates.jsonl [--limit-test 10000] [--test-idx DIR]
    .venv/bin/python benchmarks/int8_candidates.py summary runs/hard/candidates.jsonl [...]

`run` writes one JSON line per candidate and calibration: the candidate's scores on auto's validation slice (the
held-out fit, which is what auto sees) and its Δtop-1 and agreement with fp32 on the test images, for ranges fitted
on the 4/5 auto calibrates with ("held-out") and on all the images ("all"). Weighted candidates are also run with
bias correction, since auto tries it on whichever weighted candidate scores best. `run` replays auto's choice
(`edgeres.quantize.ptq._pick_plan`'s rules) per calibration set, writes its lines first, and marks them; `summary`
prints, over the sets, each candidate's mean test Δ for both fits, auto's choice with each fit, and the candidate the
test set would have picked (a ceiling no quantizer can use). This is a study of auto's rules: the test set scores
here and never chooses.

`--test-idx` reads Fashion-MNIST's test split from a folder holding only `t10k-*-idx*-ubyte.gz` (to run where the
training split is not at hand).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edgeres.artifacts import temp_dir
from edgeres.config import QuantConfig
from edgeres.data.calibration import load_calibration_set
from edgeres.data.datasets import ImageSet, load_dataset
from edgeres.data.fashion_mnist import CLASSES, read_idx
from edgeres.onnx_model import onnx_info
from edgeres.paths import calibration_path
from edgeres.quantize.calibrate import quiet
from edgeres.quantize.plans import AUTO_CANDIDATES, Plan, Planner
from edgeres.quantize.ptq import _score_key
from edgeres.quantize.recipes import recipe_for
from edgeres.quantize.search import Evaluator, split_validation

sys.path.insert(0, str(Path(__file__).parent))
from int8_peers import predictions, scored  # noqa: E402


def test_set(idx_dir: Path | None) -> ImageSet:
    if idx_dir is None:
        return load_dataset("fashion-mnist", "test")
    images = read_idx(idx_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(idx_dir / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return ImageSet("fashion-mnist-test", list(CLASSES), labels, images)


def run(args: argparse.Namespace) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = args.model
    info = onnx_info(src)
    test = test_set(args.test_idx)
    x_test, y = test.tensors(info.preprocessing, "test images")[:args.limit_test], test.labels[:args.limit_test]
    ref = predictions(src, x_test, simulate=False)
    calib = load_calibration_set(calibration_path(str(args.calibration)))
    x_all = calib.images.tensors(info.preprocessing, "calibration images")
    cfg = QuantConfig(recipe=args.recipe)
    cal_idx, val_idx = split_validation(len(x_all), cfg.val_fraction)
    recipe = recipe_for(args.recipe)
    simulate = recipe.accuracy_mode == "simulate"
    todo = [(p, m, pct, False) for p, m, pct in AUTO_CANDIDATES] + \
           [(p, m, pct, True) for p, m, pct in AUTO_CANDIDATES if p == "weighted"]
    with temp_dir("candidates") as tmp, open(args.jsonl, "a") as out:
        work = Path(tmp)
        pre = work / "pre.onnx"
        with quiet():
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        ev = Evaluator(pre, x_all[val_idx], calib.images.labels[val_idx], recipe, work)
        fits = {"held-out": Planner(pre, x_all[cal_idx], info.input_name, recipe, cfg, work),
                "all": Planner(pre, x_all, info.input_name, recipe, cfg, work)}
        fitted: dict[str, Plan] = {}
        held: list[dict] = []  # auto's view first: every candidate on the validation slice
        for placement, method, pct, bias in todo:
            plan = fits["held-out"].plan(placement, method, pct, bias_correction=bias)
            held.append({"model": src.name, "calibration": calib.root.name, "recipe": recipe.name, "plan": plan.label,
                         "placement": placement, "bias_correction": bias, "validation": ev.variant(plan)[1].to_dict(),
                         "args": (placement, method, pct, bias)})
            fitted[plan.label] = plan  # written again for the test set below, not fitted twice
        chosen = auto_choice(held, recipe.latency_representative)
        print(f"{calib.root.name} {recipe.name}: auto chooses {chosen}", flush=True)
        for row in sorted(held, key=lambda r: r["plan"] != chosen):  # its choice first: a cut-short run still says
            for fit, planner in fits.items():
                t0 = time.perf_counter()
                plan = fitted[row["plan"]] if fit == "held-out" else planner.plan(*row["args"][:3],
                                                                                  bias_correction=row["args"][3])
                path = work / "candidate.onnx"
                plan.write(pre, path)
                d, a, _ = scored(predictions(path, x_test, simulate), y, ref)
                line = {**{k: v for k, v in row.items() if k != "args" and (fit == "held-out" or k != "validation")},
                        "fit": fit, "auto_choice": row["plan"] == chosen, "delta": round(d, 2),
                        "agreement": round(a, 2), "seconds": round(time.perf_counter() - t0, 1)}
                print(json.dumps(line), file=out, flush=True)
                print(f"{calib.root.name} {recipe.name} {plan.label} ({fit}): Δ {d:+.2f}, agreement {a:.2f}",
                      flush=True)


def auto_choice(rows: list[dict], latency_representative: bool) -> str:
    """The plan ``_pick_plan`` keeps, from the held-out rows of one calibration set and recipe."""
    plain = [r for r in rows if not r["bias_correction"]]
    key = {r["plan"]: _score_key(r["validation"]) for r in rows}
    weighted = [r for r in plain if r["placement"] == "weighted"]
    tried = list(plain)
    if weighted:
        top = max(weighted, key=lambda r: key[r["plan"]])
        tried += [r for r in rows if r["plan"] == top["plan"] + " + bias correction"]
    best = max(tried, key=lambda r: key[r["plan"]])
    ort = [r for r in plain if r["placement"] == "ort"]
    if latency_representative and ort and best["placement"] == "weighted":
        fast = max(ort, key=lambda r: key[r["plan"]])
        v, b = fast["validation"], best["validation"]
        if v["drop"] <= b["drop"] + 0.5 and v["agreement"] >= b["agreement"] - 1.0:
            best = fast
    return str(best["plan"])


def summary(files: list[Path]) -> None:
    rows = [json.loads(ln) for f in files for ln in f.read_text().splitlines() if ln.strip()]
    for model, recipe in sorted({(r["model"], r["recipe"]) for r in rows}):
        mine = [r for r in rows if r["model"] == model and r["recipe"] == recipe]
        sets = sorted({r["calibration"] for r in mine})
        cell = {(r["calibration"], r["plan"], r["fit"]): r for r in mine}
        plans = list(dict.fromkeys(r["plan"] for r in mine))
        print(f"\n{model}, recipe {recipe}, {len(sets)} calibration sets ({', '.join(sets)}): mean test Δtop-1 pt "
              f"(agreement %) per fit")
        print("| candidate | held-out fit: Δ | agreement | all images: Δ | agreement | validation cosine (mean) |")
        print("|---|---|---|---|---|---|")
        for p in plans:
            h = [cell[s, p, "held-out"] for s in sets if (s, p, "held-out") in cell]
            a = [cell[s, p, "all"] for s in sets if (s, p, "all") in cell]
            print(f"| {p} | {_mean(h, 'delta')} | {_mean(h, 'agreement')} | {_mean(a, 'delta')} | "
                  f"{_mean(a, 'agreement')} | {np.mean([r['validation']['cosine'] for r in h]):.5f} |")
        choice = {r["calibration"]: r["plan"] for r in mine if r["auto_choice"]}  # written first by `run`
        print("\n| row | " + " | ".join(sets) + " | mean Δ |\n|---|" + "---|" * (len(sets) + 1))
        best = {s: max((r for r in mine if r["calibration"] == s), key=lambda r: r["delta"]) for s in sets}
        for label, picked in (("auto's choice, held-out fit (auto today)",
                               [cell[s, choice[s], "held-out"] for s in sets if (s, choice.get(s), "held-out") in cell]),
                              ("auto's choice, refit on all images",
                               [cell[s, choice[s], "all"] for s in sets if (s, choice.get(s), "all") in cell]),
                              ("best on the test set (a ceiling)", [best[s] for s in sets])):
            cells = " | ".join(f"{r['delta']:+.2f} {r['plan']} ({r['fit']})" for r in picked)
            print(f"| {label} | {cells} | {_mean(picked, 'delta')} |")


def _mean(rows: list[dict], key: str) -> str:
    if not rows:
        return "—"
    v = np.array([r[key] for r in rows], dtype=float)
    return f"{v.mean():+.3f}" if key == "delta" else f"{v.mean():.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", type=Path, required=True)
    r.add_argument("--calibration", required=True, help="a calibration set's name or folder")
    r.add_argument("--recipe", default="tensorrt")
    r.add_argument("--jsonl", type=Path, required=True, help="appended to")
    r.add_argument("--limit-test", type=int, default=10000)
    r.add_argument("--test-idx", type=Path)
    s = sub.add_parser("summary")
    s.add_argument("files", type=Path, nargs="+")
    args = ap.parse_args()
    run(args) if args.cmd == "run" else summary(args.files)


if __name__ == "__main__":
    main()
