"""Issue 10: your data, your model. Real training on a real ImageFolder (rendered digits), real ONNX Runtime, real
files; fine-tuning, foreign checkpoints and ONNX, predict, and refusals of bad input.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from edgeres.data.digits import make_digits
from edgeres.models import load_checkpoint
from tests.helpers.cli import QUICK_TIMING, assert_one_line_error, edgeres

TRAIN = ("--epochs", "2", "--batch-size", "50", "--lr", "0.1", "--workers", "1")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return make_digits(tmp_path_factory.mktemp("data") / "digits", train_per_class=30, test_per_class=10)


@pytest.fixture(scope="module")
def tuned(digits, small_run, tmp_path_factory):
    """The session's Fashion-MNIST checkpoint fine-tuned on the digits: head replaced, one epoch frozen."""
    cfg, _ = small_run
    out = tmp_path_factory.mktemp("ft") / "ft.pt"
    r = edgeres("train", "--data", str(digits), "--weights", f"{cfg.out}/model.pt", "--freeze-backbone", "1",
                "--out", str(out), "--json", *TRAIN)
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout)


def test_fine_tuning_keeps_the_best_epoch_by_validation(tuned, digits):
    out, res = tuned
    ck = load_checkpoint(out)
    man = json.loads(out.with_name(out.name + ".json").read_text())
    assert ck.classes == [str(d) for d in range(10)] and ck.model_cfg.num_classes == 10
    assert res["best_epoch"] in (1, 2) and res["val_top1"] is not None
    assert "validation top-1" in man["results"]["selected_by"]
    assert man["results"]["val_images"] > 0 and "new 10-class head" in man["results"]["start"]
    assert out.with_name("ft.last.pt").is_file()  # the resume point of a run with validation
    assert man["inputs"]["weights"]["sha256"]  # the starting weights are an input of the checkpoint


def test_frozen_backbone_trains_only_the_head(digits, small_run, tmp_path):
    cfg, _ = small_run
    out = tmp_path / "frozen.pt"
    r = edgeres("train", "--data", str(digits), "--weights", f"{cfg.out}/model.pt", "--freeze-backbone", "1",
                "--epochs", "1", "--batch-size", "50", "--workers", "0", "--out", str(out))
    assert r.returncode == 0, r.stderr
    before, after = load_checkpoint(Path(cfg.out) / "model.pt"), load_checkpoint(out)
    same = [k for k in before.state_dict if not k.startswith("fc.")
            and torch.equal(before.state_dict[k], after.state_dict[k])]
    backbone = [k for k in before.state_dict if not k.startswith("fc.")]
    assert same == backbone  # weights and BatchNorm statistics untouched
    assert not torch.equal(before.state_dict["fc.weight"], after.state_dict["fc.weight"])


def test_held_out_splits_are_disjoint_and_stable(digits):
    from edgeres.data.datasets import load_dataset

    train = load_dataset(str(digits), "train", val_split=0.2)
    val = load_dataset(str(digits), "val", val_split=0.2)
    assert set(train.paths).isdisjoint(val.paths) and len(train) + len(val) == 300
    assert load_dataset(str(digits), "val", val_split=0.2).paths == val.paths


@pytest.mark.parametrize("case", ["not_a_state_dict", "other_arch", "one_class", "empty_class", "other_classes"])
def test_training_refuses_bad_input(case, digits, small_run, tmp_path):
    cfg, _ = small_run
    args = ["train", "--out", str(tmp_path / "m.pt"), "--epochs", "1", "--batch-size", "10"]
    if case == "not_a_state_dict":
        (tmp_path / "w.pt").write_text("not weights")
        r, needle = edgeres(*args, "--data", str(digits), "--weights", str(tmp_path / "w.pt")), "checkpoint"
    elif case == "other_arch":
        r, needle = edgeres(*args, "--data", str(digits), "--weights", f"{cfg.out}/model.pt", "--arch",
                            "densenet121"), "--arch resnet18"
    else:
        root = tmp_path / "set"
        for split in ("train", "test"):
            for c in ("a",) if case == "one_class" else ("a", "b"):
                d = root / split / (c if not (case == "other_classes" and split == "test" and c == "b") else "z")
                d.mkdir(parents=True)
                for i in range(0 if (case == "empty_class" and c == "b") else 12):
                    Image.new("L", (16, 16), 20 * i).save(d / f"{i}.png")
        needle = {"one_class": "at least two", "empty_class": "holds no JPEG or PNG", "other_classes": "same class"}
        r, needle = edgeres(*args, "--data", str(root)), needle[case]
    assert_one_line_error(r, needle)
    assert not (tmp_path / "m.pt").exists()


def test_a_bare_state_dict_exports_with_its_labels(small_run, tmp_path):
    cfg, _ = small_run
    ck = load_checkpoint(Path(cfg.out) / "model.pt")
    torch.save(ck.state_dict, tmp_path / "bare.pth")  # what torchvision users hold: weights only
    pre = ["--size", "32", "--mean", "0.286", "--std", "0.353", "--data", "fashion-mnist", "--parity-images", "32"]
    assert_one_line_error(edgeres("export", str(tmp_path / "bare.pth"), *pre), "--classes")
    assert_one_line_error(edgeres("export", str(tmp_path / "bare.pth"), *pre, "--classes", "a,b,c"), "10 outputs")
    assert_one_line_error(edgeres("export", str(tmp_path / "bare.pth"), "--classes", ",".join("abcdefghij")), "--size")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(ck.classes) + "\n")
    r = edgeres("export", str(tmp_path / "bare.pth"), *pre, "--classes", str(labels), "--out", str(tmp_path / "b.onnx"))
    assert r.returncode == 0, r.stderr
    p = edgeres("predict", str(tmp_path / "b.onnx"), str(_fm_image(tmp_path)), "--json")
    assert json.loads(p.stdout)["predictions"][0]["label"] in ck.classes


def _fm_image(tmp_path):
    from edgeres.data.datasets import load_dataset

    img = load_dataset("fashion-mnist", "test").image(0)
    img.save(tmp_path / "shoe.png")
    return tmp_path / "shoe.png"


def test_predict_agrees_with_bench_to_the_image(small_run, tmp_path):
    """Bench's predictions.csv and `edgeres predict` name the same class for every image, per model."""
    from edgeres.data.datasets import load_dataset

    cfg, _ = small_run
    test = load_dataset("fashion-mnist", "test")
    rows = list(csv.DictReader(open(f"{cfg.out}/report/predictions.csv")))
    assert len(rows) == 200
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(len(rows)):
        test.image(i).save(folder / f"{i:05d}.png")
    for label, model in (("fp32", "model.onnx"), ("int8-cpu", "model.int8-cpu.onnx"),
                         ("int8-tensorrt", "model.int8-tensorrt.onnx")):
        r = edgeres("predict", f"{cfg.out}/{model}", str(folder), "--top-k", "1", "--json")
        assert r.returncode == 0, r.stderr
        got = [p["label"] for p in json.loads(r.stdout)["predictions"]]
        assert got == [row[label] for row in rows], label


def test_predict_from_python(small_run):
    import edgeres as api
    from edgeres.data.datasets import load_dataset

    cfg, _ = small_run
    img = load_dataset("fashion-mnist", "test").image(3)
    with api.load(f"{cfg.out}/model.onnx") as m, api.load(f"{cfg.out}/model.pt") as t:
        a, b = m.predict(img), t.predict([img, img])
    assert a.label == b[0].label and abs(a.probability - b[0].probability) < 1e-3


def test_predict_refuses_what_is_not_an_image(small_run, tmp_path):
    cfg, _ = small_run
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "fake.png").write_text("%!PS-Adobe-3.0 EPSF-3.0")  # an EPS named .png never reaches the EPS decoder
    assert_one_line_error(edgeres("predict", f"{cfg.out}/model.onnx", str(tmp_path / "notes.txt")), "PNG or JPEG")
    assert_one_line_error(edgeres("predict", f"{cfg.out}/model.onnx", str(tmp_path / "fake.png")), "fake.png")


def _foreign(src: str, dest):
    """A jetson-inference-style ONNX: input_0/output_0, static batch 1, no edgeres metadata."""
    ck = load_checkpoint(src)
    m = ck.model()
    x = torch.zeros(1, *ck.preprocessing.input_shape)
    prog = torch.onnx.export(m, (x,), input_names=["input_0"], output_names=["output_0"], dynamo=True,
                             verbose=False)
    prog.save(str(dest))
    model = onnx.load(str(dest))
    del model.metadata_props[:]
    onnx.save(model, str(dest))
    return dest


def _unlike_an_image_model(foreign, dest, inputs: int = 1, image: bool = True):
    """The foreign ONNX with a second input, or with integer input: what import must refuse."""
    model = onnx.load(str(foreign))
    if inputs == 2:
        model.graph.input.append(onnx.helper.make_tensor_value_info("extra", onnx.TensorProto.FLOAT, [1, 4]))
    if not image:
        model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.INT64
    onnx.save(model, str(dest))
    return dest


def test_import_a_foreign_onnx_then_every_stage_takes_it(tuned, digits, tmp_path):
    out, trained = tuned
    src = _foreign(str(out), tmp_path / "resnet18.onnx")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(str(d) for d in range(10)) + "\n")
    pre = ["--labels", str(labels), "--size", "32", "--mean", "0.5", "--std", "0.5", "--data", str(digits)]
    ck = load_checkpoint(out)
    pre[3], pre[5], pre[7] = str(ck.preprocessing.size), str(ck.preprocessing.mean[0]), str(ck.preprocessing.std[0])
    r = edgeres("import", str(src), *pre, "--out", str(tmp_path / "m.onnx"), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["input"] == "input_0" and info["classes"] == 10
    q = edgeres("quantize", str(tmp_path / "m.onnx"), "--recipe", "cpu", "--allow-small", "--out",
                str(tmp_path / "m.int8.onnx"))
    assert q.returncode == 0, q.stderr
    b = edgeres("bench", str(tmp_path / "m.onnx"), str(tmp_path / "m.int8.onnx"), "--out", str(tmp_path / "rep"),
                *QUICK_TIMING, "--json")
    assert b.returncode == 0, b.stderr
    top1 = json.loads(b.stdout)["results"][0]["accuracy"]["top1"]
    assert abs(top1 - trained["top1"]) <= 1.0  # the same model on the same test split as training scored it
    assert_one_line_error(edgeres("build", str(tmp_path / "m.onnx"), "--target", "jetson-nano"), "opset",
                          "it was imported", "opset_version=13")  # no checkpoint to re-export: its own exporter
    two = _unlike_an_image_model(src, tmp_path / "two.onnx", inputs=2)
    assert_one_line_error(edgeres("import", str(two), *pre), "2 inputs")
    ints = _unlike_an_image_model(src, tmp_path / "ints.onnx", image=False)
    assert_one_line_error(edgeres("import", str(ints), *pre), "not an image batch")
    assert not (tmp_path / "two.edgeres.onnx").exists() and not (tmp_path / "ints.edgeres.onnx").exists()


def test_calibration_must_match_the_model(tuned, digits, tmp_path):
    out, _ = tuned
    r = edgeres("export", str(out), "--out", str(tmp_path / "d.onnx"), "--parity-images", "32")
    assert r.returncode == 0, r.stderr
    assert_one_line_error(edgeres("quantize", str(tmp_path / "d.onnx"), "--calibration", "fashion-mnist-train-500",
                                  "--out", str(tmp_path / "q.onnx")), "comes from fashion-mnist", "calib make")
    assert not (tmp_path / "q.onnx").exists()
    ok = edgeres("quantize", str(tmp_path / "d.onnx"), "--allow-small", "--out", str(tmp_path / "q.onnx"))
    assert ok.returncode == 0, ok.stderr  # drawn from the model's own training split
    man = json.loads((tmp_path / "q.onnx.json").read_text())
    assert man["results"]["calibration_source"]["data"] == str(digits)


def test_bench_refuses_other_classes_and_a_foreign_checkpoint(small_run, tuned, digits, tmp_path):
    cfg, _ = small_run
    out, _ = tuned
    assert_one_line_error(edgeres("bench", f"{cfg.out}/model.onnx", "--data", str(digits), "--out",
                                  str(tmp_path / "r")), "--data the model was trained on")
    assert_one_line_error(edgeres("bench", f"{cfg.out}/model.onnx", "--checkpoint", str(out), "--limit", "50",
                                  "--out", str(tmp_path / "r2")), str(out))


def test_bench_reports_accuracy_per_class(small_run):
    cfg, report = small_run
    names = report["dataset"]["classes"]
    assert len(names) == 10 and len(report["confusion"]) == 10
    assert sum(map(sum, report["confusion"])) == report["dataset"]["images"]
    for r in report["results"]:
        pc = r["accuracy"]["per_class"]
        assert len(pc) == 10
        counts = np.asarray([sum(row) for row in report["confusion"]])
        # the per-class figures, weighted by each class's images, give the overall top-1
        assert abs(np.nansum(np.asarray(pc, float) * counts) / counts.sum() - r["accuracy"]["top1"]) < 1e-6
    md = (Path(cfg.out) / "report" / "report.md").read_text()
    assert "Top-1 (%) per class" in md and (Path(cfg.out) / "report" / "confusion.png").is_file()


def test_a_test_image_copied_from_training_is_refused_listed_then_allowed(digits, tmp_path):
    import shutil

    from edgeres.data.datasets import load_dataset

    data = tmp_path / "digits"
    shutil.copytree(digits, data)
    src = load_dataset(str(data), "train", val_split=0.1).paths[35]  # a training image (not the validation share)
    shutil.copy(src, data / "test" / src.parent.name / "copy.png")
    copy, trained = f"test/{src.parent.name}/copy.png", src.relative_to(data).as_posix()
    args = ["train", "--data", str(data), "--out", str(tmp_path / "m.pt"), "--epochs", "1", "--size", "32",
            "--batch-size", "50", "--workers", "0"]
    r = edgeres(*args)
    assert_one_line_error(r, f"1 test image is identical to training images ({copy} = {trained})", "--allow-duplicates",
                          f"edgeres data show {data}")
    assert not (tmp_path / "m.pt").exists()
    shown = edgeres("data", "show", str(data), "--json")
    assert shown.returncode == 0, shown.stderr
    s = json.loads(shown.stdout)
    assert s["duplicates"]["copies"]["test"] == [[copy, trained]] and s["preprocessing"]["channels"] == 1
    assert [(sp["split"], sp["images"]) for sp in s["splits"]][2] == ("test", 101)
    assert f"{copy} (test) = {trained} (train)" in edgeres("data", "show", str(data)).stdout
    ok = edgeres(*args, "--allow-duplicates")
    assert ok.returncode == 0, ok.stderr
    man = json.loads((tmp_path / "m.pt.json").read_text())
    assert man["results"]["duplicates"] == {"test": 1, "validation": 0, "two_classes": 0}
    assert man["config"]["allow_duplicates"] is True
