"""Bench reports: JSON (versioned schema), Markdown and a PNG; and the table printed to the terminal."""
from __future__ import annotations

import json
from pathlib import Path

from edgeres.artifacts import atomic_path, staged_dir, write_json_atomic, write_text_atomic
from edgeres.backends.layer_info import LayerInfo, compute_layers, engine_note
from edgeres.backends.memory import MemoryUse
from edgeres.bench.classes import markdown_lines, plot_confusion
from edgeres.bench.sweep import plot_sweep, sweep_lines, sweep_note
from edgeres.bench.thermal import short as thermal_short
from edgeres.errors import ArtifactError

COLUMNS = ["precision", "top-1 %", "Δtop-1 pt", "agree %", "p50 ms", "p90 ms", "p99 ms", "img/s @B", "vs fp32 p50"]


def _f(v: float | None, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def rows(report: dict) -> list[list[str]]:
    ref_p50 = report["results"][0]["latency"]["p50_ms"]
    out = []
    for r in report["results"]:
        a, lat, thr = r["accuracy"], r["latency"], r["throughput"]
        star = "" if r["latency_representative"] else "*"
        sim = "†" if r["accuracy_mode"].startswith("simulated") else ""
        out.append([
            r["label"], _f(a["top1"], ".2f") + sim, _f(a["delta_top1"], "+.2f"), _f(a["agreement"], ".2f"),
            _f(lat["p50_ms"], ".3f") + star, _f(lat["p90_ms"], ".3f") + star, _f(lat["p99_ms"], ".3f") + star,
            _f(thr["throughput_ips"], ".0f") + star, f"{lat['p50_ms'] / ref_p50:.2f}×{star}",
        ])
    return out


NOISY_PCT = 5.0


def max_noise(report: dict) -> tuple[float, str] | None:
    """The largest window-to-window p50 spread at the latency batch, and whose it is; rows whose latency says
    nothing about the device (a TensorRT recipe on a CPU) do not count.
    """
    got = [(r["latency"].get("noise_pct"), r["label"]) for r in report["results"]
           if r.get("latency_representative", True)]
    got = [g for g in got if g[0] is not None]
    return max(got) if got else None


def round_ratios(report: dict) -> list[tuple[str, float, float]]:
    """Each row's p50 over the reference's, round by round at the latency batch (windows of one round ran back to
    back): (label, lowest, highest). Rows timed in a single window, or whose latency says nothing of the device, have
    none.
    """
    ref = report["results"][0]["latency"].get("window_p50_ms") or []
    out = []
    for r in report["results"][1:]:
        mine = r["latency"].get("window_p50_ms") or []
        if len(mine) == len(ref) > 1 and r.get("latency_representative", True):
            ratios = [m / f for m, f in zip(mine, ref)]
            out.append((r["label"], min(ratios), max(ratios)))
    return out


def footnotes(report: dict) -> list[str]:
    notes = []
    res = report["results"]
    b = res[0]["latency"]["batch"]
    tb = res[0]["throughput"]["batch"]
    notes.append(f"latency at batch {b}, throughput at batch {tb} (B); {res[0]['threads'] or '?'} threads; "
                 f"{report['dataset']['images']} images of {report['dataset']['name']}")
    noise = max_noise(report)
    if noise is not None:
        warn = (f"; above {NOISY_PCT:.0f}%, absolute ms are unreliable and only ratios within this run hold "
                f"(try --threads 1 or a quieter machine)" if noise[0] > NOISY_PCT else "")
        notes.append(f"host noise: the p50s of one model's timing windows spread up to {noise[0]:.1f}% "
                     f"({noise[1]}){warn}")
    spans = round_ratios(report)
    if spans:
        level = [label for label, lo, hi in spans if lo <= 1.0 <= hi]
        notes.append(f"vs {res[0]['label']} p50, round by round ({len(res[0]['latency']['window_p50_ms'])} rounds): "
                     + ", ".join(f"{label} {lo:.2f}–{hi:.2f}×" for label, lo, hi in spans)
                     + (f"; {', '.join(level)} faster in some rounds and slower in others: this run cannot tell "
                        f"{'it' if len(level) == 1 else 'them'} from {res[0]['label']}" if level else ""))
    energy = report.get("energy") or {}
    if energy.get("measured"):
        idle = energy.get("idle") or {}
        per = ", ".join(f"{r['label']} {r['energy']['mj_per_image']:.2f} mJ/img ({r['energy']['power']['mean_w']:.2f} W)"
                        for r in res if (r.get("energy") or {}).get("mj_per_image") is not None)
        idle_w = f"; idle {idle['mean_w']:.2f} W" if idle.get("mean_w") is not None else ""
        notes.append(f"energy ({energy['meter']}, {energy['source']}): {per}{idle_w}")
    elif energy:
        notes.append(f"energy not measured: {energy.get('why')}")
    dla = [(k.rpartition(":")[0], e) for k, e in (report.get("engines") or {}).items()
           if k.endswith(":latency") and e.get("dla_core") is not None]
    if dla:
        notes.append("on the DLA: " + "; ".join(
            f"{label} {e.get('dla_layers', '?')} layers on core {e['dla_core']}, {e.get('gpu_fallback_layers', '?')} "
            f"fall back to the GPU" for label, e in dla) + " (their GPU time is in the row's figures)")
    engines, layer_notes = report.get("engines") or {}, []
    for r in res:
        e = _row_engine(engines, r["label"])
        why = str(e.get("why") or "")
        layer_notes.append(f"{r['label']} not inspected ({why[why.find('exited'):] if 'exited' in why else why})"
                           if why else e.get("layers") and
                           engine_note(r["label"], r.get("precision", ""), [LayerInfo(**la) for la in e["layers"]],
                                                      e.get("dla_core")))
    if any(layer_notes):
        notes.append("in the throughput engines, by TensorRT's inspector: " + "; ".join(n for n in layer_notes if n))
    notes += _dla_scales_hint(res, engines)
    said = {k.rpartition(":")[0]: v for k, v in ((report.get("runner") or {}).get("dla_lines") or {}).items()
            if k.endswith(":throughput")}
    if said:
        notes.append("on the DLA: trtexec's builds wrote " + ", ".join(f"{len(v)} lines for {k}" for k, v in said.items())
                     + " about it, kept in report.json (runner.dla_lines): which layers fall back to the GPU")
    gpu = [(r["label"], r["latency"].get("gpu_compute")) for r in res]
    if any(g for _, g in gpu):
        notes.append(f"GPU compute alone (trtexec's computeMs, no copies), p50 at batch {b}: "
                     + ", ".join(f"{label} {g['p50_ms']:.3f} ms" for label, g in gpu if g))
    mem = [(r["label"] + ("" if r["latency_representative"] else "*"), r.get("memory")) for r in res]
    if any(m for _, m in mem):
        notes.append(f"memory at batch {tb}: " + "; ".join(f"{label} {MemoryUse(**m).short()}" for label, m in mem if m))
    thermal = report.get("thermal") or {}
    if thermal.get("measured"):
        notes.append("thermal, after each timing window: " + "; ".join(
            f"{r['label']} {thermal_short(r['thermal'])}" for r in res if r.get("thermal")))
        notes += thermal.get("warnings") or []
    elif thermal:
        notes.append(f"thermal not read: {thermal.get('why')}")
    prof = [(r["label"] + ("" if r["latency_representative"] else "*"), r["profile"]) for r in res if r.get("profile")]
    if prof:
        notes.append(f"layers at batch {prof[0][1]['batch']} ({prof[0][1]['runs']} runs under the runtime's profiler, "
                     f"apart from the timing; report.md lists the slowest): "
                     + "; ".join(f"{label} {profile_short(p)}" for label, p in prof))
    notes += sweep_note(report)
    state = report.get("device_state") or {}
    notes += state.get("warnings") or ([state["warning"]] if state.get("warning") else [])  # older reports: one "warning"
    if any(r["accuracy_mode"].startswith("simulated") for r in res):
        notes.append("† accuracy of Q/DQ run as fake-quant in fp32: the arithmetic TensorRT performs")
    if any(not r["latency_representative"] for r in res):
        notes.append("* CPU latency of a TensorRT recipe: not representative of the device")
    return notes


def _row_engine(engines: dict, label: str) -> dict:
    """A row's engine as report.json keeps it: the throughput engine, or the latency one where that is all it has."""
    return engines.get(f"{label}:throughput") or engines.get(f"{label}:latency") or {}


def _dla_scales_hint(res: list[dict], engines: dict) -> list[str]:
    """A weighted-placement int8 row on a DLA whose engine left compute layers on the GPU: the DLA runs a layer in int8
    only with a scale at its input and output, and Q/DQ at Conv/Gemm inputs alone leave activations, adds and pools
    without one ("cannot run in INT8 mode due to missing scale and zero point. This node will not run on DLA",
    Deci-AI/super-gradients issue 1760, a Q/DQ model on a Jetson's DLA).
    """
    rows = []
    for r in res:
        e = _row_engine(engines, r["label"])
        layers = compute_layers([LayerInfo(**la) for la in e.get("layers") or []])
        if ((r.get("recipe") or {}).get("placement") == "weighted" and e.get("dla_core") is not None
                and any(la.device == "GPU" for la in layers)):
            rows.append(r["label"])
    if not rows:
        return []
    return [f"{', '.join(rows)}: layers left on the GPU may lack an int8 scale. The DLA runs a layer in int8 only with "
            f"scales at its input and output, and this model has Q/DQ at Conv/Gemm inputs only (the weighted "
            f"placement); `edgeres quantize --placement ort` puts Q/DQ at every tensor: bench both on the DLA"]


def table(report: dict) -> str:
    """A plain-text table for the terminal."""
    body = [COLUMNS] + rows(report)
    widths = [max(len(r[i]) for r in body) for i in range(len(COLUMNS))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    where = f" at {report['remote']['host']}, over SSH" if report.get("remote") else ""
    out = [f"target {report['target']['name']} ({report['target']['runtime']}) on {report['machine']['cpu']}{where}",
           line(body[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in body[1:]]
    return "\n".join(out + [f"  {n}" for n in footnotes(report)])


def markdown(report: dict) -> str:
    m = report["machine"]
    out = [f"# edgeres bench: {report['target']['name']}", "",
           f"- runtime: {report['target']['runtime']}; machine: {m['cpu']}, {m['cores']} cores, "
           f"features {', '.join(m['cpu_features']) or 'unknown'}",
           "- versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v),
           f"- reference: {report['reference']}; created {report['created']}"]
    if report.get("remote"):
        out.append(f"- measured on {report['remote']['host']} over SSH ({report['remote']['edgeres']}); "
                   f"the models' sha256 were checked against the files sent")
    out += ["",
           "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(r) + " |" for r in rows(report)]
    out += [""] + [f"- {n}" for n in footnotes(report)]
    out += ["", "| precision | p95 ms | mean ms | std ms | iterations | cosine | max abs Δlogit | top-5 % |",
            "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        a, lat = r["accuracy"], r["latency"]
        out.append(f"| {r['label']} | {lat['p95_ms']:.3f} | {lat['mean_ms']:.3f} | {lat['std_ms']:.3f} | "
                   f"{lat['iterations']} | {_f(a['cosine'], '.5f')} | {_f(a['max_abs_diff'], '.4f')} | {a['top5']:.2f} |")
    out += roofline_lines(report)
    out += markdown_lines(report)
    out += profile_lines(report)
    out += sweep_lines(report)
    return "\n".join(out) + "\n"


def profile_short(p: dict) -> str:
    """``38 layers, QLinearConv 87%, QLinearAdd 5%``; an engine's: its slowest layer's share, and reformatting's."""
    total = p["total_ms"] or 1.0
    parts = [f"{p['layer_count']} layers"]
    if p.get("by_op"):
        parts += [f"{op} {100 * ms / total:.0f}%" for op, ms in list(p["by_op"].items())[:2]]
    elif p["layers"]:
        top = p["layers"][0]
        name = top["name"] if len(top["name"]) <= 40 else top["name"][:39] + "…"
        parts.append(f"slowest {name} {100 * top['ms'] / total:.0f}%")
    if p.get("reformat_ms"):
        parts.append(f"reformatting {100 * p['reformat_ms'] / total:.0f}%")
    if p.get("dla_ms") is not None:
        parts.append(f"DLA with its copies {100 * p['dla_ms'] / total:.0f}%")
    return ", ".join(parts)


def profile_lines(report: dict) -> list[str]:
    """report.md's per-layer tables of ``bench --profile``: each row's slowest layers, and the rest summed."""
    out = []
    for r in report["results"]:
        p = r.get("profile")
        if not p:
            continue
        total = p["total_ms"] or 1.0
        out += ["", f"### {r['label']}: where the time goes at batch {p['batch']} ({p['layer_count']} layers, "
                    f"{p['total_ms']:.3f} ms per run under the profiler)", "", p["how"], "",
                "| layer | op | ms per run | share |", "|---|---|---|---|"]
        out += [f"| `{t['name']}` | {t['op'] or '—'} | {t['ms']:.4f} | {100 * t['ms'] / total:.1f}% |"
                for t in p["layers"]]
        rest = p["layer_count"] - len(p["layers"])
        if rest:
            out.append(f"| {rest} more | | {p['other_ms']:.4f} | {100 * p['other_ms'] / total:.1f}% |")
    return (["", "## Layers (bench --profile)"] + out) if out else []


def roofline_lines(report: dict) -> list[str]:
    cost = report.get("model_cost") or {}
    head = ["", f"Model cost: {cost.get('macs', 0) / 1e6:.1f} M MACs and {cost.get('weight_params', 0) / 1e6:.2f} M "
                f"weights per image (Conv/Gemm)."]
    if not any(r.get("roofline") for r in report["results"]):
        return head + [f"No roofline floor: target {report['target']['name']} has no peak figures."]
    peaks = report.get("measured_peaks")
    if peaks:
        head.append(f"CPU peak, {peaks['how']}: {peaks['peak_fp32_tflops'] * 1e3:.0f} GFLOP/s fp32. int8 has "
                    f"no measured peak here, so it gets no floor.")
    out = head + ["", "| precision | floor ms | bound | measured p50 / floor |", "|---|---|---|---|"]
    for r in report["results"]:
        f = r.get("roofline")
        if f:
            out.append(f"| {r['label']} | {f['floor_ms']:.4f} | {f['bound']} | {f['measured_over_floor']:.1f}× |")
    return out


def plot(report: dict, dest: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = report["results"]
    with_energy = [r for r in res if (r.get("energy") or {}).get("mj_per_image") is not None]
    swept = [r for r in res if r.get("sweep")]
    panels = 2 + bool(with_energy) + bool(swept)
    fig, axes = plt.subplots(1, panels, figsize=(5.4 * panels, 4))
    a, b = axes[0], axes[1]
    # the latency distribution: 5th–95th percentile box, 50th line, min–max whiskers, from the stored quantiles
    stats = [{"label": r["label"], "whislo": r["latency"]["quantiles_ms"][0], "q1": r["latency"]["quantiles_ms"][1],
              "med": r["latency"]["p50_ms"], "q3": r["latency"]["quantiles_ms"][19],
              "whishi": r["latency"]["quantiles_ms"][20]} for r in res]
    try:
        a.bxp(stats, orientation="horizontal", showfliers=False)  # matplotlib ≥ 3.10
    except TypeError:
        a.bxp(stats, vert=False, showfliers=False)
    for i, r in enumerate(res, 1):
        a.plot([r["latency"]["p99_ms"]], [i], "k|", markersize=12)
    a.set_xscale("log")
    a.set_xlabel(f"latency at batch {res[0]['latency']['batch']} (ms, log): box 5–95th pct, | p99")
    a.invert_yaxis()
    for r in res:
        b.scatter(r["latency"]["p50_ms"], r["accuracy"]["top1"], s=40)
        b.annotate(r["label"], (r["latency"]["p50_ms"], r["accuracy"]["top1"]), fontsize=8,
                   xytext=(4, 4), textcoords="offset points")
    b.set_xlabel("p50 latency (ms)")
    b.set_ylabel("top-1 (%)")
    if with_energy:  # the energy view: accuracy against energy per image
        c = axes[2]
        for r in with_energy:
            mj = r["energy"]["mj_per_image"]
            c.scatter(mj, r["accuracy"]["top1"], s=40)
            c.annotate(r["label"], (mj, r["accuracy"]["top1"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
        c.set_xlabel(f"energy per image (mJ, {report['energy']['meter']})")
        c.set_ylabel("top-1 (%)")
    if swept:
        plot_sweep(axes[-1], swept)
    fig.suptitle(f"edgeres bench — {report['target']['name']} — {report['dataset']['name']}")
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def write_reports(report: dict, out_dir: Path, extra: dict[str, str] | None = None) -> dict[str, Path]:
    """report.json, report.md, report.png (and confusion.png, and ``extra`` text files) as one unit: staged, then
    renamed into ``out_dir`` together, so a failure (a full disk) leaves the old report whole.
    """
    names = {"json": "report.json", "md": "report.md", "png": "report.png"}
    with staged_dir(out_dir) as stage:
        write_json_atomic(stage / names["json"], report)
        write_text_atomic(stage / names["md"], markdown(report))
        plot(report, stage / names["png"])
        if plot_confusion(report, stage / "confusion.png"):
            names["confusion"] = "confusion.png"
        for name, text in (extra or {}).items():
            write_text_atomic(stage / name, text)
    return {k: out_dir / v for k, v in names.items()}


def load_report(path: Path) -> dict:
    from edgeres.bench import SCHEMA

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ArtifactError(f"{path} is not a readable report ({e}); re-run `edgeres bench`") from None
    except ValueError as e:  # not JSON, or not text at all (a model, an image)
        raise ArtifactError(f"{path} is not a bench report ({type(e).__name__}); give a report.json that `edgeres "
                            f"bench` wrote") from None
    if not isinstance(doc, dict):
        raise ArtifactError(f"{path} is not a bench report (JSON, but not an object); re-run `edgeres bench`")
    if doc.get("schema") != SCHEMA:
        raise ArtifactError(f"{path} has schema {doc.get('schema')!r}, this edgeres reads {SCHEMA}; "
                            f"re-run `edgeres bench` with this version")
    res = doc.get("results")
    if not isinstance(res, list) or not res or not all(
            isinstance(r, dict) and isinstance(r.get("accuracy"), dict) and isinstance(r.get("latency"), dict)
            for r in res):
        raise ArtifactError(f"{path} has schema {SCHEMA} but its results are malformed; re-run `edgeres bench`")
    return doc
