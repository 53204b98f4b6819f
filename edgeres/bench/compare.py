"""Two bench reports side by side: two targets, or before and after."""
from __future__ import annotations

from pathlib import Path

from edgeres.bench.report import load_report


def compare_reports(a: Path, b: Path) -> tuple[str, dict]:
    ra, rb = load_report(a), load_report(b)
    by_b = {r["label"]: r for r in rb["results"]}
    rows = []
    for r in ra["results"]:
        o = by_b.get(r["label"])
        if o is None:
            continue
        rows.append({"label": r["label"],
                     "top1": [r["accuracy"]["top1"], o["accuracy"]["top1"]],
                     "p50_ms": [r["latency"]["p50_ms"], o["latency"]["p50_ms"]],
                     "p50_ratio": o["latency"]["p50_ms"] / r["latency"]["p50_ms"]})
    head = f"A: {a} ({ra['target']['name']})\nB: {b} ({rb['target']['name']})"
    lines = [head, f"{'precision':20} {'top-1 A':>8} {'top-1 B':>8} {'p50 A ms':>9} {'p50 B ms':>9} {'B/A':>6}"]
    lines += [f"{x['label']:20} {x['top1'][0]:8.2f} {x['top1'][1]:8.2f} {x['p50_ms'][0]:9.3f} "
              f"{x['p50_ms'][1]:9.3f} {x['p50_ratio']:6.2f}" for x in rows]
    return "\n".join(lines), {"a": str(a), "b": str(b), "rows": rows}
