"""bench --sweep: parsing the batches, the engines a TensorRT row gets for them, the knee, and the report's lines."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from edgeres.bench.rows import Entry, engine_configs
from edgeres.bench.run import fit_static_batch
from edgeres.bench.sweep import SweepPoint, knee, parse_sweep, sweep_lines, sweep_note
from edgeres.config import MAX_BATCH, MAX_SWEEP, BenchConfig, BuildConfig
from edgeres.errors import ConfigError
from edgeres.targets import load_target


def test_batches_are_read_sorted_and_once():
    assert parse_sweep("8, 1,2,4,2") == (1, 2, 4, 8)
    assert parse_sweep("32") == (32,)
    for bad in ("1,two,4", "1.5", ""):
        with pytest.raises(ConfigError, match="--sweep takes batch sizes separated by commas, for example 1,2,4"):
            parse_sweep(bad)


@pytest.mark.parametrize("sweep", [(0, 4), (1, MAX_BATCH + 1), tuple(range(1, MAX_SWEEP + 2)), (4, 2), (2, 2)])
def test_a_sweep_out_of_range_is_refused_with_an_example(sweep):
    with pytest.raises(ConfigError, match=f"--sweep takes 1 to {MAX_SWEEP} batch sizes, rising, from 1 to {MAX_BATCH}"):
        BenchConfig(sweep=sweep).validate()
    BenchConfig(sweep=tuple(range(1, MAX_SWEEP + 1))).validate()


def test_a_tensorrt_row_gets_one_engine_for_the_sweep_and_a_dla_row_one_per_batch():
    """A GPU row: every batch of the sweep on the same engine (profile 1 to the largest, optimized for it), which is
    the throughput engine when that is the largest batch. A DLA row: static engines, one per batch."""
    target = load_target("jetson-agx-orin")
    info = SimpleNamespace(input_shape=["batch", 1, 32, 32], precision="fp32")  # what engine_configs reads of OnnxInfo
    entry = Entry("fp16", Path("m.onnx"), info, None, "fp16")  # type: ignore[arg-type]
    cfg = BenchConfig(target=target.name, batch=1, throughput_batch=32, sweep=(1, 8, 32))
    confs = engine_configs(entry, target, cfg)
    sweep = {confs[f"sweep:{b}"] for b in cfg.sweep}
    assert sweep == {BuildConfig(target.name, "fp16", None, 32, 32)} == {confs["throughput"]}
    dla = engine_configs(Entry("fp16-dla0", Path("m.onnx"), info, None, "fp16", 0), target, cfg)  # type: ignore[arg-type]
    assert [(dla[f"sweep:{b}"].batch, dla[f"sweep:{b}"].max_batch, dla[f"sweep:{b}"].dla_core) for b in cfg.sweep] == [
        (1, 1, 0), (8, 8, 0), (32, 32, 0)]
    assert "sweep:1" not in engine_configs(entry, target, BenchConfig(target=target.name))
    fixed = Entry("fp16", Path("m.onnx"), SimpleNamespace(input_shape=[4, 1, 32, 32], precision="fp32"), None,  # type: ignore[arg-type]
                  "fp16")
    assert engine_configs(fixed, target, cfg) == {"latency": BuildConfig(target.name, "fp16", None, 4, 4)}


def test_a_model_of_fixed_batch_is_timed_at_that_batch_alone():
    """A graph that fixes its batch at 16 takes no other: a smaller batch would be padded to 16 and timed as 16."""
    cfg = fit_static_batch(BenchConfig(batch=1, throughput_batch=32, sweep=(1, 4, 16, 64)), 16)
    assert (cfg.batch, cfg.throughput_batch, cfg.sweep) == (16, 16, ())
    same = BenchConfig(batch=4, throughput_batch=4)
    assert fit_static_batch(same, 4) is same


def point(batch: int, ips: float, ms: float = 1.0, noise: float | None = 2.0, gpu: float | None = None) -> dict:
    return SweepPoint(batch, ms, 2 * ms, ips, noise, gpu).to_dict()


def test_the_knee_is_the_smallest_batch_within_five_percent_of_the_best():
    assert knee([]) is None
    pts = [point(1, 500), point(2, 900), point(4, 960), point(8, 1000), point(16, 990)]
    best, first = knee(pts)  # type: ignore[misc]
    assert (best["batch"], first["batch"]) == (8, 4)  # 960 ≥ 0.95 × 1000; 900 is not
    best, first = knee([point(1, 100), point(2, 200)])  # type: ignore[misc]
    assert best is first and best["batch"] == 2


def test_a_point_takes_trtexecs_gpu_compute_where_it_has_one():
    stats = {"batch": 4, "p50_ms": 2.0, "p99_ms": 3.0, "throughput_ips": 1900.0, "noise_pct": None}
    assert SweepPoint.of(stats).gpu_compute_p50_ms is None
    assert SweepPoint.of({**stats, "gpu_compute": {"p50_ms": 1.5}}).gpu_compute_p50_ms == 1.5


def report_of(rows: list[tuple[str, list[dict]]]) -> dict:
    return {"reference": rows[0][0], "sweep": {"batches": [p["batch"] for p in rows[0][1]], "how": "how it ran"},
            "results": [{"label": label, "latency_representative": label != "int8-tensorrt", "sweep": pts}
                        for label, pts in rows]}


def test_the_note_names_each_rows_best_and_its_knee():
    report = report_of([("fp32", [point(1, 500, 2.0), point(4, 960, 4.17), point(8, 1000, 8.0, noise=7.5)]),
                        ("int8-tensorrt", [point(1, 1000, 1.0), point(4, 3000, 1.33), point(8, 4000, 2.0)])])
    (note,) = sweep_note(report)
    assert note.startswith("batch sweep 1…8 (3 batches; report.md has each)")
    assert "fp32 1,000/s at 8, 96% of it at 4 (4.17 ms)" in note
    assert "int8-tensorrt* 4,000/s at 8 (2.00 ms)" in note  # its own best, no smaller batch within 5%
    assert note.endswith("windows spread up to 7.5%")
    assert sweep_note({"results": [{"label": "fp32", "latency_representative": True}]}) == []


def test_report_md_has_a_column_per_batch_and_the_ratio_to_the_reference():
    report = report_of([("fp32", [point(1, 500, 2.0), point(8, 1000, 8.0, gpu=7.0)]),
                        ("int8", [point(1, 1000, 1.0), point(8, 4000, 2.0, gpu=1.5)])])
    md = "\n".join(sweep_lines(report))
    assert "## Batch sweep (bench --sweep)" in md and "how it ran" in md
    assert "| model | batch 1 | batch 8 |" in md
    assert "| fp32 | 500/s · 2.000 | **1,000/s** · 8.000 |" in md
    assert "| int8 | 2.00× | 4.00× |" in md
    assert "| fp32 | — | 7.000 |" in md and "| int8 | — | 1.500 |" in md  # trtexec's compute where it has it
    assert sweep_lines({"results": [{"label": "fp32"}]}) == []


def test_compare_sets_two_sweeps_side_by_side_at_the_batches_both_have(tmp_path):
    """Before and after (jetson_clocks, a new JetPack): images/s B over A per row, at each batch both swept."""
    import json

    from edgeres.bench import SCHEMA
    from edgeres.bench.compare import compare_reports

    def write(name: str, sweep: list[dict]) -> Path:
        row = {"label": "fp32", "accuracy": {"top1": 90.0}, "latency": {"p50_ms": 1.0, "noise_pct": 2.0},
               "sweep": sweep}
        path = tmp_path / name
        path.write_text(json.dumps({"schema": SCHEMA, "target": {"name": "cpu"}, "results": [row]}))
        return path

    a = write("a.json", [point(1, 500), point(8, 1000), point(32, 1100)])
    b = write("b.json", [point(1, 600), point(8, 1500)])
    text, doc = compare_reports(a, b)
    assert [(x["batch"], x["ratio"]) for x in doc["sweep"]] == [(1, 1.2), (8, 1.5)]
    assert "bench --sweep, images/s B/A at each batch both swept: fp32 1 1.20×, 8 1.50×" in text
    assert compare_reports(a, write("c.json", []))[1]["sweep"] == []
