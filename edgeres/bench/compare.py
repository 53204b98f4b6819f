"""Two bench reports side by side: two targets, or before and after."""
from __future__ import annotations

from pathlib import Path

from edgeres.bench.report import load_report, max_noise
from edgeres.errors import ArtifactError


def compare_reports(a: Path, b: Path) -> tuple[str, dict]:
    """A table of top-1 and p50 per precision found in both reports, and whether each p50 change exceeds
    the host noise that the two runs themselves measured.
    """
    ra, rb = load_report(a), load_report(b)
    try:
        return _compare(ra, rb, a, b)
    except (KeyError, TypeError, AttributeError, ValueError, ZeroDivisionError) as e:
        raise ArtifactError(f"{a} or {b} is a malformed report ({type(e).__name__}: {e}); re-run `edgeres bench` "
                            f"for both") from None


def _compare(ra: dict, rb: dict, a: Path, b: Path) -> tuple[str, dict]:
    by_b = {r["label"]: r for r in rb["results"]}
    noise = [max_noise(r) for r in (ra, rb)]
    limit = max((n[0] for n in noise if n is not None), default=None)
    rows = []
    for r in ra["results"]:
        o = by_b.get(r["label"])
        if o is None:
            continue
        ratio = o["latency"]["p50_ms"] / r["latency"]["p50_ms"]
        within = None if limit is None else abs(ratio - 1) * 100 <= limit
        rows.append({"label": r["label"],
                     "top1": [r["accuracy"]["top1"], o["accuracy"]["top1"]],
                     "p50_ms": [r["latency"]["p50_ms"], o["latency"]["p50_ms"]],
                     "p50_ratio": ratio, "within_noise": within})
    head = f"A: {a} ({ra['target']['name']})\nB: {b} ({rb['target']['name']})"
    lines = [head, f"{'precision':20} {'top-1 A':>8} {'top-1 B':>8} {'p50 A ms':>9} {'p50 B ms':>9} {'B/A':>6}"]
    mark = {True: "  within noise", False: "", None: ""}
    lines += [f"{x['label']:20} {x['top1'][0]:8.2f} {x['top1'][1]:8.2f} {x['p50_ms'][0]:9.3f} "
              f"{x['p50_ms'][1]:9.3f} {x['p50_ratio']:6.3f}{mark[x['within_noise']]}" for x in rows]
    if limit is not None:
        lines.append("host noise (largest spread of window p50s within one run): "
                     + ", ".join(f"{k} {n[0]:.1f}%" if n else f"{k} unknown" for k, n in zip("AB", noise)))
    swept = _sweeps(ra, by_b)
    if swept:
        lines.append("bench --sweep, images/s B/A at each batch both swept: " + "; ".join(
            f"{label} " + ", ".join(f"{x['batch']} {x['ratio']:.2f}×" for x in swept if x["label"] == label)
            for label in dict.fromkeys(x["label"] for x in swept)))
    return "\n".join(lines), {"a": str(a), "b": str(b), "rows": rows, "sweep": swept,
                              "noise_pct": [n[0] if n else None for n in noise]}


def _sweeps(ra: dict, by_b: dict[str, dict]) -> list[dict]:
    """Each row's images per second in both reports at every batch both swept, and B over A."""
    out = []
    for r in ra["results"]:
        theirs = {p["batch"]: p for p in (by_b.get(r["label"]) or {}).get("sweep") or []}
        for p in r.get("sweep") or []:
            q = theirs.get(p["batch"])
            if q is not None:
                out.append({"label": r["label"], "batch": p["batch"], "ips": [p["throughput_ips"], q["throughput_ips"]],
                            "ratio": q["throughput_ips"] / p["throughput_ips"]})
    return out
