"""Latency statistics, accuracy metrics, atomic artifacts and manifests."""
from __future__ import annotations

import numpy as np
import pytest

from edgeres.artifacts import atomic_path, is_fresh, write_manifest
from edgeres.backends.latency import (
    LatencyConfig,
    compare_latency,
    measure_latency,
    stats_from_times,
    timed_runs,
)
from edgeres.bench.accuracy import accuracy, topk
from edgeres.errors import ConfigError


class SleepySession:
    """A Session whose infer() costs a known, tiny amount of real work."""

    input_name = "input"
    device = "cpu"
    copies_timed = False

    def __init__(self) -> None:
        self.calls = 0

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.tile(batch.reshape(len(batch), -1)[:, :3].sum(1, keepdims=True), (1, 3))

    def close(self) -> None:
        pass


def test_stats_percentiles():
    t = np.arange(1, 101) / 1000.0  # 1..100 ms
    s = stats_from_times([t], 4, [4, 1, 8, 8], False, "cpu")
    assert s.iterations == 100 and s.noise_pct is None
    assert s.p50_ms == pytest.approx(50.5) and s.p90_ms == pytest.approx(90.1) and s.p99_ms == pytest.approx(99.01)
    assert s.min_ms == pytest.approx(1.0) and s.max_ms == pytest.approx(100.0)
    assert s.throughput_ips == pytest.approx(4 / 0.0505)


def test_timed_runs_respects_warmup_and_minimum():
    sess = SleepySession()
    t = timed_runs(sess, np.zeros((1, 1, 2, 2), np.float32), LatencyConfig(0.0, 7, 1e-6, 25))
    assert len(t) == 25 and sess.calls == 32  # 7 warm-up + 25 timed


def test_measure_latency_fills_the_batch():
    s = measure_latency(SleepySession(), np.zeros((3, 1, 2, 2), np.float32), 8, LatencyConfig(0, 1, 0.01, 3))
    assert s.batch == 8 and s.input_shape == [8, 1, 2, 2]


def test_compare_latency_alternates_and_pools():
    order = []

    class Named(SleepySession):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def infer(self, batch):
            if not order or order[-1] != self.name:
                order.append(self.name)
            return super().infer(batch)

    s = {"a": Named("a"), "b": Named("b")}
    out = compare_latency(s, np.zeros((1, 1, 2, 2), np.float32), 1, LatencyConfig(0.0, 2, 1e-6, 9, rounds=3))
    assert order == ["a", "b", "a", "b"]  # windows A B, B A, A B: consecutive turns merge into a b a b
    assert out["a"].iterations == 9 and out["b"].iterations == 9  # ceil(9 / 3) per window, pooled
    assert len(out["a"].window_p50_ms) == 3 and out["a"].noise_pct is not None


def test_noise_is_the_spread_of_window_medians():
    fast, slow = np.full(50, 0.002), np.full(50, 0.0025)  # a window 25% slower: the host drifted
    s = stats_from_times([fast, slow, fast], 1, [1, 3], False, "cpu")
    assert s.window_p50_ms == pytest.approx([2.0, 2.5, 2.0])
    assert s.noise_pct == pytest.approx(25.0)
    assert s.iterations == 150 and s.p50_ms == pytest.approx(2.0)


@pytest.mark.parametrize("bad", [LatencyConfig(duration_s=0), LatencyConfig(min_iters=0), LatencyConfig(warmup_s=-1)])
def test_bad_latency_config(bad):
    with pytest.raises(ConfigError):
        bad.validate()


def test_accuracy_against_labels_and_reference():
    labels = np.array([0, 1, 2, 0])
    ref = np.eye(3)[[0, 1, 2, 1]] * 5.0
    got = ref.copy()
    got[0] = [0, 6, 0]  # flips one prediction
    a = accuracy(got, labels, ref)
    assert a.top1 == 50.0 and topk(ref, labels, 1) == 75.0
    assert a.agreement == 75.0 and a.delta_top1 == -25.0
    assert a.max_abs_diff == 6.0 and 0 < a.cosine < 1
    assert accuracy(ref, labels).agreement is None
    assert topk(ref, labels, 5) == 100.0


def test_atomic_path_keeps_the_old_file_on_failure(tmp_path):
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert dest.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [dest]


def test_atomic_files_get_ordinary_permissions(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_manifest_freshness(tmp_path):
    src, art = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("x")
    art.write_text("y")
    write_manifest(art, "test", {"src": src}, {"k": 1}, None)
    assert is_fresh(art, {"src": src}, {"k": 1})
    assert not is_fresh(art, {"src": src}, {"k": 2})
    src.write_text("changed")
    assert not is_fresh(art, {"src": src}, {"k": 1})


def _report(path, p50_fp32, p50_int8, noise):
    import json

    from edgeres.bench import SCHEMA

    def row(label, p50):
        return {"label": label, "accuracy": {"top1": 90.0}, "latency": {"p50_ms": p50, "noise_pct": noise}}
    path.write_text(json.dumps({"schema": SCHEMA, "target": {"name": "cpu"},
                                "results": [row("fp32", p50_fp32), row("int8-cpu", p50_int8)]}))
    return path


def test_compare_says_which_changes_are_within_the_measured_noise(tmp_path):
    from edgeres.bench.compare import compare_reports

    a = _report(tmp_path / "a.json", 2.0, 0.5, 3.0)
    b = _report(tmp_path / "b.json", 2.04, 0.6, 4.0)  # fp32 +2% (inside 4% noise), int8 +20% (outside)
    text, doc = compare_reports(a, b)
    verdict = {r["label"]: r["within_noise"] for r in doc["rows"]}
    assert verdict == {"fp32": True, "int8-cpu": False}
    assert doc["noise_pct"] == [3.0, 4.0] and "A 3.0%, B 4.0%" in text


def test_noise_ignores_rows_that_say_nothing_about_the_device():
    from edgeres.bench.report import max_noise

    rows = [{"label": "fp32", "latency": {"noise_pct": 3.0}, "latency_representative": True},
            {"label": "int8-tensorrt", "latency": {"noise_pct": 160.0}, "latency_representative": False}]
    assert max_noise({"results": rows}) == (3.0, "fp32")


def test_each_rounds_ratio_says_whether_a_speed_up_holds_in_every_round():
    """fp16 is faster than fp32 in every round; int8 is faster in two rounds and slower in one (the host drifted
    under fp32's middle window): its range crosses 1.00×, and the note says this run cannot tell it from fp32."""
    from edgeres.bench.report import footnotes, round_ratios

    def row(label, windows, representative=True):
        return {"label": label, "latency": {"window_p50_ms": windows, "batch": 1, "p50_ms": windows[0],
                                            "noise_pct": None},
                "throughput": {"batch": 8}, "latency_representative": representative, "threads": 2,
                "accuracy_mode": "native"}

    report = {"results": [row("fp32", [2.0, 2.0, 2.0]), row("fp16", [1.0, 1.1, 0.9]), row("int8", [1.8, 2.2, 1.9]),
                          row("int8-cpu", [9.0, 9.0, 9.0], representative=False), row("one", [1.0])],
              "dataset": {"images": 8, "name": "x"}}
    assert round_ratios(report) == [("fp16", pytest.approx(0.45), pytest.approx(0.55)),
                                    ("int8", pytest.approx(0.9), pytest.approx(1.1))]
    (note,) = [n for n in footnotes(report) if "round by round" in n]
    assert note == ("vs fp32 p50, round by round (3 rounds): fp16 0.45–0.55×, int8 0.90–1.10×; int8 faster in some "
                    "rounds and slower in others: this run cannot tell it from fp32")


def test_a_weighted_int8_row_on_the_dla_with_gpu_layers_gets_the_scales_hint():
    from edgeres.bench.report import _dla_scales_hint

    conv = {"name": "{ForeignNode[conv1...relu3]}", "kind": "ForeignNode", "precision": "int8", "device": "DLA"}
    relu = {"name": "relu4", "kind": "Activation", "precision": "fp16", "device": "GPU"}
    fmt = {"name": "Reformatting CopyNode for Input Tensor 0 to relu4", "kind": "Reformat", "precision": "fp16",
           "device": "GPU"}
    res = [{"label": "int8-tensorrt-dla0", "recipe": {"placement": "weighted"}},
           {"label": "int8-ort-dla0", "recipe": {"placement": "ort"}},
           {"label": "int8-tensorrt-dla1", "recipe": {"placement": "weighted"}},
           {"label": "int8-tensorrt", "recipe": {"placement": "weighted"}}]
    engines = {"int8-tensorrt-dla0:throughput": {"dla_core": 0, "layers": [conv, relu]},
               "int8-ort-dla0:throughput": {"dla_core": 0, "layers": [conv, relu]},  # another placement: not this
               "int8-tensorrt-dla1:throughput": {"dla_core": 1, "layers": [conv, fmt]},  # a reformat computes nothing
               "int8-tensorrt:throughput": {"dla_core": None, "layers": [relu]}}  # the GPU's own row
    hint = _dla_scales_hint(res, engines)
    assert len(hint) == 1 and hint[0].startswith("int8-tensorrt-dla0: layers left on the GPU may lack an int8 scale")
    assert _dla_scales_hint(res[1:], engines) == []
