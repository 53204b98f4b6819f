"""The hostile-input table (issue 12): every row is one command a user might type with a bad value or a malformed
file. Each must exit non-zero with one line that starts ``Error:`` and names the fix, with no traceback, and must
leave nothing behind in the folder it was given.

The rows run in-process through click's runner (the same ``main`` and error handling as the installed command),
so a hundred cases cost seconds; tests/integration/test_hostile.py holds the faults that need real processes.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeres.cli import main

NUMBERS = [
    # (arguments, what the one line must contain) — defects 5 and 13: every number finite and in range
    (["train", "--lr", "nan"], "finite"),
    (["train", "--lr", "inf"], "finite"),
    (["train", "--lr", "-0.1"], "positive"),
    (["train", "--momentum", "1.5"], "momentum"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--limit-train", "-5"], "--limit-train"),
    (["train", "--limit-test", "0"], "--limit-test"),
    (["train", "--size", "100000"], "--size"),
    (["train", "--size", "4"], "--size"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--batch-size", "1"], "--batch-size"),
    (["train", "--val-split", "0.9"], "--val-split"),
    (["train", "--val-split", "nan"], "finite"),
    (["train", "--freeze-backbone", "1"], "needs --weights"),
    (["train", "--freeze-backbone", "-1"], "--freeze-backbone"),
    (["train", "--workers", "-2"], "--workers"),
    (["train", "--schedule", "linear"], "--schedule"),
    (["train", "--device", "tpu"], "--device"),
    (["train", "--amp", "fp8"], "--amp"),
    (["train", "--arch", "vgg16"], "--arch"),
    (["train", "--data", "/nonexistent/folder"], "does not exist"),
    (["run", "--size", "4", "--out", "{tmp}/r"], "--size must lie between"),  # run takes every option of train
    (["run", "--freeze-backbone", "1", "--out", "{tmp}/r"], "needs --weights"),
    (["run", "--lr", "-1", "--out", "{tmp}/r"], "--lr must be positive"),
    (["export", "{ckpt}", "--opset", "99", "--out", "{tmp}/x.onnx"], "--opset"),
    (["export", "{ckpt}", "--opset", "5", "--out", "{tmp}/x.onnx"], "--opset"),
    (["export", "{ckpt}", "--parity-images", "0", "--out", "{tmp}/x.onnx"], "--parity-images"),
    (["export", "{ckpt}", "--max-abs-diff", "nan", "--out", "{tmp}/x.onnx"], "finite"),
    (["export", "{ckpt}", "--max-abs-diff", "-1", "--out", "{tmp}/x.onnx"], "--max-abs-diff"),
    (["export", "{ckpt}", "--size", "224", "--out", "{tmp}/x.onnx"], "together"),
    (["export", "{ckpt}", "--size", "32", "--mean", "1,2", "--std", "1", "--out", "{tmp}/x.onnx"], "--mean"),
    (["export", "{ckpt}", "--size", "32", "--mean", "0.5", "--std", "nan", "--out", "{tmp}/x.onnx"], "--std"),
    (["export", "{ckpt}", "--size", "32", "--mean", "0.5", "--std", "0.5", "--out", "{tmp}/x.onnx"], "records its"),
    (["export", "{ckpt}", "--target", "no-such-board", "--out", "{tmp}/x.onnx"], "no-such-board"),
    (["quantize", "{onnx}", "--percentile", "nan", "--out", "{tmp}/q.onnx"], "finite"),
    (["quantize", "{onnx}", "--percentile", "100", "--out", "{tmp}/q.onnx"], "--percentile"),
    (["quantize", "{onnx}", "--percentile", "50", "--out", "{tmp}/q.onnx"], "--percentile"),
    (["quantize", "{onnx}", "--max-drop", "nan", "--out", "{tmp}/q.onnx"], "finite"),
    (["quantize", "{onnx}", "--max-drop", "-1", "--out", "{tmp}/q.onnx"], "--max-drop"),
    (["quantize", "{onnx}", "--val-fraction", "0.9", "--out", "{tmp}/q.onnx"], "--val-fraction"),
    (["quantize", "{onnx}", "--adaround", "-1", "--out", "{tmp}/q.onnx"], "--adaround"),
    (["quantize", "{onnx}", "--qat", "-5", "--out", "{tmp}/q.onnx"], "--qat"),
    (["quantize", "{onnx}", "--qat", "10", "--qat-restarts", "0", "--out", "{tmp}/q.onnx"], "--qat-restarts"),
    (["quantize", "{onnx}", "--placement", "ort", "--method", "layer-cosine", "--out", "{tmp}/q.onnx"],
     "drop --placement ort"),
    (["quantize", "{onnx}", "--placement", "ort", "--qat", "10", "--out", "{tmp}/q.onnx"], "drop --placement ort"),
    (["quantize", "{onnx}", "--max-float-layers", "0", "--out", "{tmp}/q.onnx"], "--max-float-layers"),
    (["quantize", "{onnx}", "--method", "magic", "--out", "{tmp}/q.onnx"], "--method"),
    (["quantize", "{onnx}", "--recipe", "gpu", "--out", "{tmp}/q.onnx"], "--recipe"),
    (["quantize", "{onnx}", "--calibration", "{tmp}/none", "--out", "{tmp}/q.onnx"], "does not exist"),
    (["quantize", "{onnx}", "--trt-cache", "banana", "--out", "{tmp}/q.onnx"], "--trt-cache"),
    (["bench", "{onnx}", "--duration", "nan", "--out", "{tmp}/r"], "finite"),
    (["bench", "{onnx}", "--duration", "-1", "--out", "{tmp}/r"], "--duration"),
    (["bench", "{onnx}", "--warmup", "inf", "--out", "{tmp}/r"], "finite"),
    (["bench", "{onnx}", "--limit", "0", "--out", "{tmp}/r"], "--limit"),
    (["bench", "{onnx}", "--limit", "-1", "--out", "{tmp}/r"], "--limit"),
    (["bench", "{onnx}", "--threads", "-1", "--out", "{tmp}/r"], "--threads"),
    (["bench", "{onnx}", "--batch", "0", "--out", "{tmp}/r"], "--batch"),
    (["bench", "{onnx}", "--max-drop", "nan", "--out", "{tmp}/r"], "finite"),
    (["bench", "{onnx}", "--rounds", "0", "--out", "{tmp}/r"], "--rounds"),
    (["bench", "{onnx}", "--min-iters", "0", "--out", "{tmp}/r"], "--min-iters"),
    (["bench", "{onnx}", "--target", "no-such-board", "--out", "{tmp}/r"], "no-such-board"),
    (["bench", "{onnx}", "--host", "", "--out", "{tmp}/r"], "--host"),
    (["bench", "{onnx}", "--host", "-oProxyCommand=touch x", "--out", "{tmp}/r"], "--host"),
    (["bench", "{onnx}", "--host", "user@host;reboot", "--out", "{tmp}/r"], "--host"),
    (["bench", "{onnx}", "--energy", "maybe", "--out", "{tmp}/r"], "--energy"),
    (["bench", "{onnx}", "--dla-core", "0", "--out", "{tmp}/r"], "target cpu has no DLA; drop --dla-core"),
    (["bench", "{onnx}", "--dla-core", "-1", "--out", "{tmp}/r"], "--dla-core must be 0 or more"),
    (["bench", "{onnx}", "--runner", "magic", "--out", "{tmp}/r"], "--runner"),
    (["calib", "make", "--split", "test/", "--out", "{tmp}/c"], "test split"),
    (["calib", "make", "--split", " test", "--out", "{tmp}/c"], "test split"),
    (["calib", "make", "--split", "bogus", "--out", "{tmp}/c"], "--split"),
    (["calib", "make", "--per-class", "0", "--out", "{tmp}/c"], "--per-class"),
    (["calib", "make", "--per-class", "-3", "--out", "{tmp}/c"], "--per-class"),
    (["predict", "{onnx}", "{img}", "--top-k", "0"], "--top-k"),
    (["predict", "{onnx}", "{tmp}/missing.png"], "does not exist"),
    (["predict", "{onnx}", "{tmp}/notes.txt"], "PNG or JPEG"),
    (["predict", "{tmp}/missing.onnx", "{img}"], "not found"),
    (["import", "{onnx}", "--labels", "a,b", "--size", "32", "--mean", "0.5", "--std", "0.5"], "already an edgeres"),
    (["import", "{onnx}", "--labels", "a,a", "--size", "32", "--mean", "0.5", "--std", "0.5"], "twice"),
    (["import", "{onnx}", "--labels", "a,b", "--size", "4", "--mean", "0.5", "--std", "0.5"], "size"),
    (["import", "{onnx}", "--labels", "a,b", "--size", "32", "--mean", "nan", "--std", "0.5"], "--mean"),
    (["import", "{onnx}", "--labels", "a,b", "--size", "32", "--mean", "0.5", "--std", "0"], "std"),
    (["bundle", "{onnx}", "--target", "no-such-board", "--out", "{tmp}/b"], "no-such-board"),
    (["bundle", "{ckpt}", "--target", "cpu", "--out", "{tmp}/b"], "is a PyTorch checkpoint, not an ONNX model"),
    (["bundle", "{onnx}", "--target", "jetson-nano", "--out", "{tmp}/b"],
     "/model.pt --target jetson-nano --out "),  # the checkpoint the manifest names, and the --out to write
    (["bundle", "{run}/model.int8-tensorrt.onnx", "--target", "jetson-nano", "--out", "{tmp}/b"],
     "jetson-nano does not support int8"),
    (["build", "{onnx}", "--target", "no-such-board"], "no-such-board"),
    (["build", "{onnx}", "--target", "cpu", "--precision", "fp16"], "fp16"),
    (["build", "{onnx}", "--target", "cpu", "--batch", "0"], "--batch"),
    (["build", "{onnx}", "--target", "cpu", "--dla-core", "0"], "DLA"),
    (["run", "--epochs", "0", "--out", "{tmp}/run"], "--epochs"),
    (["run", "--limit-train", "-1", "--out", "{tmp}/run"], "--limit-train"),
    (["run", "--duration", "nan", "--out", "{tmp}/run"], "finite"),
    (["run", "--target", "no-such-board", "--out", "{tmp}/run"], "no-such-board"),
    (["device", "setup", "--host", ""], "--host"),
    (["device", "setup", "--host", "jetson@orin", "--ssh-option", "ProxyCommand=touch x"], "ProxyCommand"),
    (["device", "setup", "--host", "jetson@orin", "--ssh-option", "ServerAliveInterval=15s"], "whole seconds"),
    (["bench", "{onnx}", "--host", "jetson@orin", "--ssh-option", "ServerAliveCountMax=four"], "whole seconds"),
    (["device", "check", "--host", "-oProxyCommand=touch x"], "--host"),
    (["device", "check", "--host", "jetson@orin", "--ssh-option", "LocalCommand=touch x"], "LocalCommand"),
    (["device", "check", "--host", "jetson@orin", "--ssh-option", "ProxyJump=me@bastion:22:33"], "jump host"),
    (["bench", "{onnx}", "--host", "jetson@orin", "--ssh-option", "ProxyJump=%r@bastion"], "jump host"),
    (["calib", "show", "/nonexistent"], "does not exist"),
    (["data", "show", "/nonexistent"], "does not exist"),
    (["data", "show", "{onnx}"], "is a file, not a folder"),
    (["data", "show", "fashion-mnist", "--val-split", "0.9"], "--val-split must lie between"),
    (["data", "show", "fashion-mnist", "--val-split", "nan"], "finite"),
    (["nosuchcommand"], "No such command"),
]


def _malformed_files(tmp: Path, run: Path) -> dict[str, tuple[list[str], str]]:
    """Defect 14: malformed files of every kind edgeres reads; each row's file is written here."""
    import onnx
    import torch

    from edgeres.onnx_model import METADATA_KEY, set_metadata

    rows: dict[str, tuple[list[str], str]] = {}
    (tmp / "random.pt").write_bytes(b"\x00garbage" * 100)
    rows["ckpt-random"] = (["export", str(tmp / "random.pt"), "--out", str(tmp / "a.onnx")], "not a PyTorch checkpoint")
    sd = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    bad = dict(sd)
    bad["fc.weight"] = torch.zeros(3, 7)
    torch.save(bad, tmp / "shape.pt")
    rows["ckpt-shape"] = (["export", str(tmp / "shape.pt"), "--out", str(tmp / "b.onnx")], "shape.pt")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp / "keys.pt")
    rows["ckpt-keys"] = (["export", str(tmp / "keys.pt"), "--out", str(tmp / "c.onnx")], "keys.pt")
    torch.save([1, 2, 3], tmp / "list.pt")
    rows["ckpt-list"] = (["export", str(tmp / "list.pt"), "--out", str(tmp / "d.onnx")], "state dict")
    m = onnx.load(str(run / "model.onnx"))
    set_metadata(m, {METADATA_KEY: "{not json"})
    onnx.save(m, str(tmp / "meta.onnx"))
    rows["meta-bench"] = (["bench", str(tmp / "meta.onnx"), "--out", str(tmp / "r1")], "not JSON")
    rows["meta-predict"] = (["predict", str(tmp / "meta.onnx"), str(tmp / "img.png")], "not JSON")
    set_metadata(m, {METADATA_KEY: json.dumps({"size": "big"})})
    onnx.save(m, str(tmp / "meta2.onnx"))
    rows["meta-fields"] = (["bench", str(tmp / "meta2.onnx"), "--out", str(tmp / "r2")], "malformed")
    (tmp / "trunc.onnx").write_bytes((run / "model.onnx").read_bytes()[:5000])
    rows["trunc-quantize"] = (["quantize", str(tmp / "trunc.onnx"), "--out", str(tmp / "q.onnx")], "not a valid ONNX")
    rows["trunc-bench"] = (["bench", str(tmp / "trunc.onnx"), "--out", str(tmp / "r3")], "not a valid ONNX")
    for name, doc in (("notjson", "{"), ("wrongschema", json.dumps({"schema": "x"})),
                      ("wrongtypes", json.dumps({"schema": "edgeres.bench/1", "results": "many"}))):
        (tmp / f"{name}.json").write_text(doc)
        rows[f"compare-{name}"] = (["bench", "--compare", str(run / "report" / "report.json"),
                                    str(tmp / f"{name}.json")], f"{name}.json")
    rows["compare-binary"] = (["bench", "--compare", str(run / "report" / "report.json"), str(run / "model.onnx")],
                              "model.onnx is not a bench report")  # a model where a report goes: was a traceback
    for name, entries in (("badlabel", [{"file": "a.png", "label": "cat"}]), ("outside", [{"file": "../../x.png"}]),
                          ("absolute", [{"file": "/etc/hostname"}]), ("notalist", {"file": "a.png"})):
        c = tmp / f"calib-{name}"
        c.mkdir()
        (c / "manifest.json").write_text(json.dumps({"format": "edgeres.calibration/1", "images": entries}))
        rows[f"calib-{name}-quantize"] = (["quantize", str(run / "model.onnx"), "--calibration", str(c), "--out",
                                           str(tmp / "q2.onnx")], "manifest.json")
        rows[f"calib-{name}-show"] = (["calib", "show", str(c)], "manifest.json")
    for name, text in (("types", 'name = 3\nruntime = ["x"]\n'), ("syntax", "name = \n"),
                       ("missing", 'name = "t"\n')):
        (tmp / f"t-{name}.toml").write_text(text)
        rows[f"toml-{name}"] = (["bench", str(run / "model.onnx"), "--target", str(tmp / f"t-{name}.toml"), "--out",
                                 str(tmp / "r4")], f"t-{name}.toml")
    (tmp / "t-binary.toml").write_bytes(b"name = \"\xff\xfe\"\n")
    rows["toml-binary"] = (["bench", str(run / "model.onnx"), "--target", str(tmp / "t-binary.toml"), "--out", str(tmp / "r5")],
                 "t-binary.toml")
    (run.parent / "badrun").mkdir(exist_ok=True)
    (run.parent / "badrun" / "model.pt.json").write_text("[1, 2]")
    (run.parent / "badrun" / "model.pt").write_bytes(b"trunc")
    rows["run-manifest"] = (["run", "--out", str(run.parent / "badrun"), "--limit-train", "64", "--epochs", "1"], "model.pt")
    return rows


MALFORMED = ["ckpt-random", "ckpt-shape", "ckpt-keys", "ckpt-list", "meta-bench", "meta-predict", "meta-fields",
             "trunc-quantize", "trunc-bench", "compare-notjson", "compare-wrongschema", "compare-wrongtypes", "compare-binary",
             *(f"calib-{n}-{c}" for n in ("badlabel", "outside", "absolute", "notalist") for c in ("quantize", "show")),
             "toml-types", "toml-syntax", "toml-missing", "toml-binary", "run-manifest"]


@pytest.fixture(scope="module")
def places(small_run, tmp_path_factory):
    from edgeres.data.datasets import load_dataset

    cfg, _ = small_run
    tmp = tmp_path_factory.mktemp("hostile")
    load_dataset("fashion-mnist", "test").image(0).save(tmp / "img.png")
    (tmp / "notes.txt").write_text("not an image")
    return {"ckpt": f"{cfg.out}/model.pt", "onnx": f"{cfg.out}/model.onnx", "tmp": str(tmp),
            "img": str(tmp / "img.png"), "run": Path(cfg.out), "dir": tmp}


def check(args: list[str], needle: str, before: set[str], folder: Path) -> None:
    r = CliRunner().invoke(main, args, catch_exceptions=True)
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit), (
        f"{args}: {type(r.exception).__name__}: {r.exception}")
    assert r.exit_code not in (0, None), args
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), (args, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    assert needle in lines[0], (args, lines[0])
    left = {p.name for p in folder.iterdir()} - before
    assert not left, (args, left)  # nothing made by a refused command


@pytest.mark.parametrize("args,needle", NUMBERS, ids=[" ".join(a)[:60] for a, _ in NUMBERS])
def test_bad_numbers_and_names(args, needle, places):
    folder = places["dir"]
    before = {p.name for p in folder.iterdir()}
    check([a.format(**places) for a in args], needle, before, folder)


@pytest.fixture(scope="module")
def malformed(places):
    from edgeres.data.datasets import load_dataset

    folder = places["dir"] / "files"
    folder.mkdir(exist_ok=True)
    load_dataset("fashion-mnist", "test").image(0).save(folder / "img.png")
    rows = _malformed_files(folder, places["run"])
    assert sorted(rows) == sorted(MALFORMED)
    return folder, rows


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_files(case, malformed):
    folder, rows = malformed
    args, needle = rows[case]
    check(args, needle, {p.name for p in folder.iterdir()}, folder)
