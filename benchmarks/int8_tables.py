"""The tables of benchmarks/int8_peers.py: scoring against fp32, the paired test, one table per model and draw, and
the summary over the draws.

Every table ends with a control row, the float model itself (Δ 0, agreement 100%): where a quantizer that changed no
prediction would stand against the best peer. Where the best of several peer rows lands above fp32 by the luck of
which images flip, no faithful quantizer is "no worse than the best peer"; the control row shows how often.
"""
from __future__ import annotations

import numpy as np

from edgeres.paths import DEFAULT_CALIBRATION

Table = tuple[list[dict], np.ndarray, np.ndarray]  # rows, labels, fp32's predictions
CONTROL = "fp32 itself (control)"  # Δ 0, agreement 100: where a perfect quantizer would stand against the best peer


def scored(pred: np.ndarray, y: np.ndarray, ref: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Δtop-1 against fp32 (points), agreement with fp32 (%), and which images it gets right."""
    right = pred == y
    return 100 * float(right.mean() - (ref == y).mean()), 100 * float((pred == ref).mean()), right


def paired(a: np.ndarray, b: np.ndarray) -> str:
    """How two quantizers differ on the same test images: images only ``a`` gets right, only ``b`` does, and McNemar's
    exact two-sided p (a binomial test on those two counts): a p well above 0.05 means the test set cannot tell them
    apart.
    """
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    return f"+{only_a} / −{only_b}, p {mcnemar(only_a, only_b):.2f}"


def mcnemar(only_a: int, only_b: int) -> float:
    """McNemar's exact two-sided p for two classifiers that disagree on ``only_a + only_b`` images."""
    from math import comb

    n = only_a + only_b
    return min(1.0, 2 * sum(comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2 ** n) if n else 1.0


def images(n: int, n_test: int) -> str:
    """What the first ``n`` scored images are: test images, then (``--unseen-train``) unseen training images."""
    return f"{n} test images" if n <= n_test else f"{n_test} test + {n - n_test} unseen training images"


def print_tables(table: dict[str, Table], n: int, n_test: int, calib: str = DEFAULT_CALIBRATION) -> None:
    """One table per model, scored on the first ``n`` test images. ONNX Runtime's three calibrators are listed as
    one row, the best of them on these images (which flatters it).
    """
    print(f"\n{images(n, n_test)}; calibration: {calib} (500 images); Δtop-1 against each float model; "
          f"tensorrt recipe and peers as fake-quant, cpu recipe native in ONNX Runtime")
    print("vs best peer: test images this row gets right and the best peer (by Δ) gets wrong, the reverse, and "
          "McNemar's exact p")
    for arch, (rows, y, ref) in table.items():
        listed, best = listed_rows(rows, y, ref, n)
        print(f"\n{arch} (fp32 {100 * float((ref[:n] == y[:n]).mean()):.2f}%)")
        print("| quantizer | plan | Δtop-1 pt | agreement % | vs best peer | quantize s |\n|---|---|---|---|---|---|")
        for r in listed:
            if "skipped" in r:
                print(f"| {r['quantizer']} | skipped: {r['skipped']} | | | | |")
            else:
                vs = paired(r["right"], best["right"]) if best is not None and r is not best else ""
                print(f"| {r['quantizer']} | {r.get('plan', '')} | {r['delta']:+.2f} | {r['agreement']:.2f} | {vs} | "
                      f"{r['seconds']:.0f}{' (cached)' if r.get('cached') else ''} |")


def listed_rows(rows: list[dict], y: np.ndarray, ref: np.ndarray, n: int) -> tuple[list[dict], dict | None]:
    """The rows as the table lists them, scored on the first ``n`` test images (ONNX Runtime's calibrators as one
    row, its best on these images), and the best peer by Δtop-1.
    """
    done = [{**r, **dict(zip(("delta", "agreement", "right"), scored(r["pred"][:n], y[:n], ref[:n])))}
            for r in rows if "pred" in r]
    ort = [r for r in done if r["quantizer"].startswith("ort-")]
    listed = [r for r in done if not r["quantizer"].startswith("ort-")] + [r for r in rows if "skipped" in r]
    if ort:
        top = max(ort, key=lambda r: r["delta"])
        listed.append({**top, "quantizer": "ONNX Runtime quantize_static, best", "plan": top["quantizer"][4:]})
    peers = [r for r in listed if "right" in r and not r["quantizer"].startswith("edgeres")]
    control = dict(zip(("delta", "agreement", "right"), scored(ref[:n], y[:n], ref[:n])))
    listed.append({"quantizer": CONTROL, "plan": "no quantization", "seconds": 0.0, "pred": ref, **control})
    return listed, max(peers, key=lambda r: r["delta"]) if peers else None


def print_summary(tables: dict[int, dict[str, Table]], n_test: int) -> None:
    """Each quantizer over the calibration draws: Δtop-1 per draw, mean ± standard deviation, mean agreement; for
    edgeres's rows, in how many draws they are no worse than that draw's best peer.
    """
    seeds = list(tables)
    print(f"\nover {len(seeds)} calibration draws (seeds {', '.join(map(str, seeds))}; 0 is the shipped set), each scored "
          f"on all its images ({images(len(next(iter(tables[seeds[0]].values()))[1]), n_test)})")
    for arch in tables[seeds[0]]:
        per: dict[str, list[dict]] = {}
        wins: dict[str, int] = {}
        pooled: dict[str, list[int]] = {}  # images only the row gets right, only the draw's best peer does: summed
        for seed in seeds:
            rows, y, ref = tables[seed][arch]
            listed, best = listed_rows(rows, y, ref, len(y))
            for r in listed:
                if best is not None and "pred" in r and ours(r):
                    a, b = scored(r["pred"], y, ref)[2], scored(best["pred"], y, ref)[2]
                    sums = pooled.setdefault(r["quantizer"], [0, 0])
                    sums[0] += int((a & ~b).sum())
                    sums[1] += int((~a & b).sum())
            each_ort = [{**r, **dict(zip(("delta", "agreement"), scored(r["pred"], y, ref)))}
                        for r in rows if "pred" in r and r["quantizer"].startswith("ort-")]
            for r in listed + each_ort:
                if "delta" in r:
                    per.setdefault(r["quantizer"], []).append(r)
                    if best is not None and ours(r):
                        wins[r["quantizer"]] = wins.get(r["quantizer"], 0) + (r["delta"] >= best["delta"] - 1e-9)
        heads = " | ".join(f"Δ draw {s}" for s in seeds)
        print(f"\n{arch}\n| quantizer | {heads} | mean Δ ± sd pt | mean agreement % | ≥ best peer of its draw | "
              f"vs best peer, summed over the draws |")
        print("|---|" + "---|" * (len(seeds) + 4))
        for name, rs in per.items():
            d = np.array([r["delta"] for r in rs])
            a = np.mean([r["agreement"] for r in rs])
            w = f"{wins[name]}/{len(rs)}" if name in wins else ""
            vs = f"+{pooled[name][0]} / −{pooled[name][1]}, p {mcnemar(*pooled[name]):.2f}" if name in pooled else ""
            cells = " | ".join(f"{v:+.2f}" for v in d)
            print(f"| {name} | {cells} | {d.mean():+.3f} ± {d.std(ddof=1):.3f} | {a:.2f} | {w} | {vs} |")
    print("\nsummed over the draws: the draws share the test images, so the sums are not independent and p is too small")


def ours(row: dict) -> bool:
    return row["quantizer"].startswith("edgeres") or row["quantizer"] == CONTROL
