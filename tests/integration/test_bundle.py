"""Issue 10, item 6: the deployment bundle. infer.py runs in a venv that cannot import edgeres and agrees with
`edgeres predict` on every image; Triton's own protobuf reads config.pbtxt; DeepStream's arithmetic reproduces the
preprocessing exactly, per-channel std included.
"""
from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeres.bundle import deepstream_scaling, with_input_scale
from edgeres.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from edgeres.quantize.trt_cache import read_calibration_cache
from tests.helpers.cli import assert_one_line_error, edgeres
from tests.helpers.fixtures import python_of


@pytest.fixture(scope="module")
def images(small_run, tmp_path_factory):
    from edgeres.data.datasets import load_dataset

    folder = tmp_path_factory.mktemp("imgs")
    test = load_dataset("fashion-mnist", "test")
    for i in range(200):
        test.image(i).save(folder / f"{i:05d}.png")
    # what copying photos from a Mac or a notebook leaves beside them: not images of the set, for predict or infer.py
    (folder / "._00000.png").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X        " + bytes(64))
    (folder / ".ipynb_checkpoints").mkdir()
    test.image(0).save(folder / ".ipynb_checkpoints" / "00000-checkpoint.png")
    return folder


@pytest.fixture(scope="module")
def no_edgeres_python(tmp_path_factory):
    """A venv that sees numpy, Pillow and onnxruntime from this environment's site-packages but not edgeres (its
    editable install is a .pth the new venv never reads)."""
    import numpy as _np

    root = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False).create(root)
    py = root / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                          text=True, check=True).stdout.strip()
    Path(site, "host.pth").write_text(str(Path(_np.__file__).parents[1]) + "\n")
    probe = subprocess.run([str(py), "-c", "import edgeres"], capture_output=True, text=True, cwd=root)
    assert probe.returncode != 0 and "No module named 'edgeres'" in probe.stderr
    return py


@pytest.mark.parametrize("model,softmax", [("model.onnx", False), ("model.int8-cpu.onnx", True),
                                           ("model.int8-tensorrt.onnx", False)])
def test_infer_py_agrees_with_predict_without_edgeres(model, softmax, small_run, images, no_edgeres_python, tmp_path):
    cfg, _ = small_run
    out = tmp_path / "bundle"
    r = edgeres("bundle", f"{cfg.out}/{model}", "--target", "cpu", "--out", str(out), *(["--softmax"] * softmax))
    assert r.returncode == 0, r.stderr
    from edgeres.artifacts import sha256_file

    man = json.loads((out / "model.onnx.json").read_text())  # the bundled model has its manifest, chained to its source
    assert man["artifact"]["sha256"] == sha256_file(out / "model.onnx")
    assert man["inputs"]["model"]["sha256"] == sha256_file(Path(cfg.out) / model)
    want = json.loads(edgeres("predict", f"{cfg.out}/{model}", str(images), "--top-k", "1", "--json").stdout)
    got = subprocess.run([str(no_edgeres_python), str(out / "infer.py"), str(images), "--top-k", "1", "--json"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    a = [p["label"] for p in json.loads(got.stdout)["predictions"]]
    b = [p["label"] for p in want["predictions"]]
    assert len(a) == 200 and a == b
    pa = np.array([p["top"][0]["probability"] for p in json.loads(got.stdout)["predictions"]])
    pb = np.array([p["probability"] for p in want["predictions"]])
    assert np.abs(pa - pb).max() < 1e-4
    if model == "model.onnx":  # an image of another format is named, never skipped in silence
        from PIL import Image

        (tmp_path / "webp").mkdir()
        Image.new("L", (28, 28)).save(tmp_path / "webp" / "a.webp")
        got = subprocess.run([str(no_edgeres_python), str(out / "infer.py"), str(tmp_path / "webp")],
                             capture_output=True, text=True, cwd=tmp_path)
        assert got.returncode != 0 and "a.webp is a .webp image, and this model reads PNG and JPEG" in got.stderr


def test_a_model_of_fixed_batch_is_bundled_for_that_batch(small_run, images, no_edgeres_python, tmp_path):
    """A graph that fixes its batch at 7 takes 7 images a call and no other number: infer.py pads the last call
    (200 images: 28 × 7 and 4), predict does the same, and Triton gets the full shape with max_batch_size 0 instead of
    a batch it would fill with fewer images."""
    from tests.helpers.fixtures import fixed_batch_copy

    cfg, _ = small_run
    fixed = fixed_batch_copy(Path(cfg.out) / "model.onnx", 7, tmp_path / "b7.onnx")
    out = tmp_path / "bundle"
    assert edgeres("bundle", str(fixed), "--target", "cpu", "--out", str(out)).returncode == 0
    want = json.loads(edgeres("predict", f"{cfg.out}/model.onnx", str(images), "--top-k", "1", "--json").stdout)
    same = json.loads(edgeres("predict", str(fixed), str(images), "--top-k", "1", "--json").stdout)
    got = subprocess.run([str(no_edgeres_python), str(out / "infer.py"), str(images), "--top-k", "1", "--json"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    labels = [p["label"] for p in want["predictions"]]
    assert len(labels) == 200 and [p["label"] for p in json.loads(got.stdout)["predictions"]] == labels
    assert [p["label"] for p in same["predictions"]] == labels
    triton = (out / "triton/classifier/config.pbtxt").read_text()
    assert "max_batch_size: 0" in triton and "dims: [ 7, 1, 32, 32 ]" in triton and "dims: [ 7, 10 ]" in triton
    assert "dynamic_batching" not in triton


def test_triton_config_parses_as_model_config(small_run, exports, tmp_path):
    pb = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is in the [test] extra")
    from google.protobuf import text_format

    cfg, _ = small_run
    # the ONNX the Orin Nano's TensorRT parses (a bundle refuses one above its parser), and its Q/DQ model
    orin, orin_int8 = str(exports(17)["fp32"]), str(exports(17)["int8"])
    for target, model, mode in (("cpu", f"{cfg.out}/model.onnx", None), ("jetson-orin-nano", orin, "FP32"),
                                ("jetson-orin-nano", orin_int8, "INT8")):
        out = tmp_path / f"{target}-{mode}"
        assert edgeres("bundle", model, "--target", target, "--out", str(out)).returncode == 0
        mc = text_format.Parse((out / "triton/classifier/config.pbtxt").read_text(), pb.ModelConfig())
        assert mc.platform == "onnxruntime_onnx" and mc.max_batch_size == 32
        assert list(mc.input[0].dims) == [1, 32, 32] and mc.input[0].name == "input"
        assert list(mc.output[0].dims) == [10] and mc.output[0].label_filename == "labels.txt"
        assert (out / "triton/classifier/1/model.onnx").is_file()
        gpu = target != "cpu"
        assert (mc.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU) == gpu
        assert (out / "deepstream/config_infer_primary.txt").is_file() == gpu
        trt = list(mc.optimization.execution_accelerators.gpu_execution_accelerator)
        assert [(a.name, dict(a.parameters)) for a in trt] == ([("tensorrt", {"precision_mode": mode})] if gpu else [])
        if gpu:  # nvinfer turns TensorRT's INT8 on only with an int8-calib-file; without, it builds FP16, and fails
            ds = (out / "deepstream/config_infer_primary.txt").read_text()
            assert ("network-mode=1" in ds) == ("int8-calib-file=calib.table" in ds) == (mode == "INT8")
            assert (out / "deepstream/calib.table").is_file() == (mode == "INT8")
            # nvinfer's classifier parser reads probabilities (best score starts at 0: on logits all below 0, no
            # label): DeepStream's copy ends in a softmax and computes the softmax of the bundle's model
            assert "onnx-file=model.onnx" in ds and "output-blob-names=probabilities" in ds
            from edgeres.backends.onnxruntime import OrtSession

            x = np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32)
            got = OrtSession(out / "deepstream/model.onnx", simulate=True).infer(x)
            z = OrtSession(Path(model), simulate=True).infer(x).astype(np.float64)
            want = np.exp(z - z.max(1, keepdims=True))
            assert np.abs(got - want / want.sum(1, keepdims=True)).max() < 1e-5
    header, scales = read_calibration_cache(tmp_path / "jetson-orin-nano-INT8" / "deepstream/calib.table")
    assert header == "TRT-8500-MinMaxCalibration"  # the target's oldest TensorRT (JetPack 5.1's 8.5)
    q = onnx.load(orin_int8)
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    want = {n.input[0]: float(inits[n.input[1]]) for n in q.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits and inits[n.input[1]].size == 1}
    assert len(want) > 10 and scales.keys() == want.keys()  # every activation the Q/DQ model quantizes, and no weight
    assert all(abs(scales[k] - want[k]) <= 1e-6 * want[k] for k in want)  # its own scales


def test_deepstream_arithmetic_reproduces_the_preprocessing():
    """net-scale-factor × (x − offsets), then the folded per-channel factor, equals (x/255 − mean)/std."""
    x = np.arange(256, dtype=np.float64)
    for pre in (Preprocessing(32, 1, (0.286,), (0.353,)), Preprocessing(224, 3, IMAGENET_MEAN, IMAGENET_STD)):
        scale, offsets, fold = deepstream_scaling(pre)
        for c in range(pre.channels):
            got = scale * (x - offsets[c]) * (1.0 if fold is None else fold[c])
            assert np.abs(got - (x / 255 - pre.mean[c]) / pre.std[c]).max() < 1e-5
        assert (fold is None) == (pre.channels == 1)


def test_folded_graph_computes_the_same_logits(tmp_path):
    """The DeepStream ONNX (1/std folded in front) fed DeepStream's input gives the original model's logits."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["y"], pads=[1, 1, 1, 1]),
                           helper.make_node("ReduceMean", ["y"], ["logits"], axes=[2, 3], keepdims=0)], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    pre = Preprocessing(8, 3, IMAGENET_MEAN, IMAGENET_STD)
    scale, offsets, fold = deepstream_scaling(pre)
    pixels = rng.integers(0, 256, (2, 3, 8, 8)).astype(np.float32)
    ours = (pixels / 255 - np.asarray(pre.mean, np.float32)[:, None, None]) / np.asarray(pre.std, np.float32)[:, None, None]
    ds_in = (scale * (pixels - np.asarray(offsets, np.float32)[:, None, None])).astype(np.float32)
    run = lambda m, x: ort.InferenceSession(m.SerializeToString()).run(None, {"input": x})[0]  # noqa: E731
    assert np.abs(run(with_input_scale(model, fold), ds_in) - run(model, ours.astype(np.float32))).max() < 1e-4
    onnx.checker.check_model(with_input_scale(model, fold))


def test_bundle_refuses_a_folder_it_did_not_make(small_run, tmp_path):
    cfg, _ = small_run
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert_one_line_error(edgeres("bundle", f"{cfg.out}/model.onnx", "--target", "cpu", "--out",
                                  str(tmp_path / "mine")), "did not make")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    ok = tmp_path / "b"
    for _ in range(2):  # a bundle edgeres made is replaced
        assert edgeres("bundle", f"{cfg.out}/model.onnx", "--target", "cpu", "--out", str(ok)).returncode == 0
    assert json.loads((ok / "bundle.json").read_text())["format"] == "edgeres.bundle/1"


def test_an_engine_bundle_ships_the_tensorrt_runner(small_run, tmp_path):
    """The layout of an engine's bundle. The "engine" is a placeholder file with an edgeres manifest: nothing here
    builds or runs an engine; this checks what the bundle writes around one."""
    cfg, _ = small_run
    from edgeres.artifacts import write_manifest
    from edgeres.onnx_model import onnx_info

    info = onnx_info(Path(cfg.out) / "model.onnx")
    plan = tmp_path / "model.fp16.plan"
    plan.write_bytes(b"placeholder, not an engine")
    write_manifest(plan, "engine-tensorrt", {"onnx": Path(cfg.out) / "model.onnx"},
                   {"target": "jetson-orin-nano", "spec": {"precision": "fp16", "max_batch": 8}},
                   info.preprocessing.to_dict(), {"classes": info.classes})
    out = tmp_path / "b"
    r = edgeres("bundle", str(plan), "--target", "jetson-orin-nano", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    runner = out / "tensorrt_runner.py"
    assert runner.read_text().startswith('"""A serialized engine') and "import edgeres" not in runner.read_text()
    settings = json.loads((out / "bundle.json").read_text())
    assert settings["runtime"] == "tensorrt" and settings["runner"] == "tensorrt_runner"
    assert "tensorrt" not in (out / "infer.py").read_text().split('"""', 2)[2]  # infer.py loads what bundle.json names
    import importlib.util  # the runner imports tensorrt only when it opens an engine, so its module loads here
    spec = importlib.util.spec_from_file_location("tensorrt_runner", runner)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.Runner)
    assert "model-engine-file=../model.plan" in (out / "deepstream/config_infer_primary.txt").read_text()
    assert "network-mode=2" in (out / "deepstream/config_infer_primary.txt").read_text()
    doc = json.loads(r.stdout)  # its engine outputs logits, which nvinfer's classifier parser misreads: said so
    assert any("nvinfer's default classifier parser reads probabilities" in n for n in doc["notes"])
    assert "bundle --softmax" in (out / "README.md").read_text()
    triton = (out / "triton/classifier/config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in triton and "max_batch_size: 8" in triton
    assert (out / "triton/classifier/1/model.plan").read_bytes() == plan.read_bytes()
    assert_one_line_error(edgeres("bundle", str(plan), "--target", "jetson-orin-nano", "--out", str(tmp_path / "c"),
                                  "--softmax"), "--softmax")
    # an engine runs only where it was built: one for an Orin Nano is not bundled for another board
    assert_one_line_error(edgeres("bundle", str(plan), "--target", "jetson-agx-xavier", "--out", str(tmp_path / "d")),
                          "built for jetson-orin-nano", "--target jetson-orin-nano")
    assert not (tmp_path / "d").exists()


def test_a_sweep_report_sets_tritons_preferred_batch(small_run, tmp_path):
    """bench --sweep, then bundle --report: Triton's dynamic batcher prefers the batch the sweep found for this very
    model (the row of its sha256 and precision) on this target; a report of another target, of other models, or
    without a sweep is one line each."""
    from edgeres.bench.sweep import knee
    from tests.helpers.cli import QUICK_TIMING

    cfg, _ = small_run
    fp32, int8 = f"{cfg.out}/model.onnx", f"{cfg.out}/model.int8-cpu.onnx"
    r = edgeres("bench", fp32, int8, "--limit", "16", "--threads", "1", "--sweep", "1,2,4,8", *QUICK_TIMING,
                "--out", str(tmp_path / "sweep"))
    assert r.returncode == 0, r.stderr
    report = tmp_path / "sweep" / "report.json"
    row = next(x for x in json.loads(report.read_text())["results"] if x["label"] == "int8-cpu")
    want = knee(row["sweep"])[1]["batch"]  # type: ignore[index]
    out = tmp_path / "b"
    r = edgeres("bundle", int8, "--target", "cpu", "--report", str(report), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    triton = (out / "triton/classifier/config.pbtxt").read_text()
    assert f"dynamic_batching {{ preferred_batch_size: [ {want} ] }}" in triton
    assert json.loads(r.stdout)["notes"][0].startswith(f"Triton's preferred batch {want}: the smallest within 5%")
    doc = json.loads(report.read_text())
    doc["target"]["name"] = "jetson-orin-nano"
    (tmp_path / "orin.json").write_text(json.dumps(doc))
    plain = tmp_path / "plain"
    assert edgeres("bench", fp32, "--limit", "8", *QUICK_TIMING, "--out", str(plain)).returncode == 0
    for rep, says in ((tmp_path / "orin.json", "measured target jetson-orin-nano, and this bundle is for cpu"),
                      (plain / "report.json", "has no int8 row of this model"),
                      (fp32 + ".json", "has schema None, this edgeres reads edgeres.bench/1")):
        assert_one_line_error(edgeres("bundle", int8, "--target", "cpu", "--report", str(rep), "--out",
                                      str(tmp_path / "no")), says)
    assert_one_line_error(edgeres("bundle", fp32, "--target", "cpu", "--report", str(plain / "report.json"), "--out",
                                  str(tmp_path / "no")), "row fp32 has no sweep")
    assert not (tmp_path / "no").exists()


def test_a_dla_engine_bundle_names_its_core_and_its_batch(small_run, tmp_path):
    """An engine built for DLA core 1 at batch 4 (static, as every DLA engine): the runner loads it onto core 1
    (bundle.json), nvinfer gets enable-dla, use-dla-core and batch-size 4, and Triton a KIND_NVDLA secondary device
    and the full shape. A placeholder file with an edgeres manifest: nothing is built or run here."""
    cfg, _ = small_run
    from edgeres.artifacts import write_manifest
    from edgeres.onnx_model import onnx_info

    info = onnx_info(Path(cfg.out) / "model.onnx")
    plan = tmp_path / "model.fp16-dla1.plan"
    plan.write_bytes(b"placeholder, not an engine")
    write_manifest(plan, "engine-tensorrt", {"onnx": Path(cfg.out) / "model.onnx"},
                   {"target": "jetson-agx-orin", "dla_core": 1,
                    "spec": {"precision": "fp16", "min_batch": 4, "opt_batch": 4, "max_batch": 4, "dla_core": 1}},
                   info.preprocessing.to_dict(), {"classes": info.classes})
    out = tmp_path / "b"
    r = edgeres("bundle", str(plan), "--target", "jetson-agx-orin", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "bundle.json").read_text())["dla_core"] == 1
    ds = (out / "deepstream/config_infer_primary.txt").read_text()
    assert {"enable-dla=1", "use-dla-core=1", "batch-size=4", "model-engine-file=../model.plan"} <= set(ds.split("\n"))
    triton = (out / "triton/classifier/config.pbtxt").read_text()
    assert "secondary_devices [ { kind: KIND_NVDLA device_id: 1 } ]" in triton and "max_batch_size: 0" in triton
    assert "dims: [ 4, 1, 32, 32 ]" in triton
    pb = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is in the [test] extra")
    from google.protobuf import text_format

    mc = text_format.Parse(triton, pb.ModelConfig())
    assert_one_line_error(edgeres("bundle", str(plan), "--target", "jetson-agx-orin", "--dla-core", "0", "--out",
                                  str(tmp_path / "c")), "an engine built for DLA core 1", "--dla-core 0")
    assert [(d.kind, d.device_id) for d in mc.instance_group[0].secondary_devices] == [
        (pb.ModelInstanceGroup.SecondaryDevice.KIND_NVDLA, 1)]


def test_an_onnx_bundled_for_a_dla_core_has_nvinfer_build_it_there(exports, tmp_path):
    """--dla-core with an ONNX: nvinfer builds the engine for that core (enable-dla, use-dla-core). The DLA runs fp16
    or int8 only, and a fp32 request would send every layer back to the GPU without a word: fp32 is built as fp16."""
    fp32, int8 = str(exports(17)["fp32"]), str(exports(17)["int8"])
    for model, mode in ((fp32, "network-mode=2"), (int8, "network-mode=1")):
        out = tmp_path / Path(model).stem
        r = edgeres("bundle", model, "--target", "jetson-agx-orin", "--dla-core", "1", "--out", str(out), "--json")
        assert r.returncode == 0, r.stderr
        ds = (out / "deepstream/config_infer_primary.txt").read_text().split("\n")
        assert {"enable-dla=1", "use-dla-core=1", mode} <= set(ds)
        said = [n for n in json.loads(r.stdout)["notes"] if "the DLA runs fp16 or int8" in n]
        assert len(said) == (model == fp32)
    for target, says in (("jetson-orin-nano", "target jetson-orin-nano has no DLA"),
                         ("cpu", "cpu runs ONNX Runtime; drop --dla-core")):
        assert_one_line_error(edgeres("bundle", fp32, "--target", target, "--dla-core", "0", "--out",
                                      str(tmp_path / "no")), says)


# A Jetson runs the bundle with its own Python and its Ubuntu's numpy and Pillow: JetPack 4.6 (Nano, TX2) has Python
# 3.6 on Ubuntu 18.04, JetPack 5 Python 3.8 on Ubuntu 20.04 (../shared/jetpack.md; python3-numpy and python3-pil).
JETPACK_STACKS = {"jetpack-4.6": ("3.6", "numpy==1.13.3", "Pillow==5.1.0"),
                  "jetpack-5": ("3.8", "numpy==1.17.4", "Pillow==7.0.0")}
PREPROCESS = '''
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import infer
out, refused = {}, []
for pre in json.loads(sys.argv[3]):
    for p in sys.argv[4:]:
        try:
            out["%s %s" % (pre["channels"], p)] = infer.preprocess(p, pre)
        except (OSError, ValueError):
            refused.append(p)
np.savez(sys.argv[2], **out)
print(json.dumps(refused))
'''


PIXEL_RUNNER = '''
import numpy as np


class Runner:
    """A STAND-IN runtime for infer.py's own code: each image's logits are ten of its pixels. Never a model."""

    def __init__(self, path, settings):
        self.max_batch = 2

    def __call__(self, x):
        return x.reshape(len(x), -1)[:, 100:110].astype(np.float32)
'''


@pytest.fixture(scope="module", params=list(JETPACK_STACKS))
def jetpack_python(request, tmp_path_factory):
    version, *packages = JETPACK_STACKS[request.param]
    base = python_of(version)
    if base is None:
        pytest.skip(f"no Python {version} on this machine (the image's pyenv has one)")
    root = tmp_path_factory.mktemp(request.param)
    subprocess.run([str(base), "-m", "venv", str(root)], check=True, capture_output=True)
    r = subprocess.run([str(root / "bin/python"), "-m", "pip", "install", "-q", "--no-compile", "--only-binary", ":all:",
                        *packages], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip(f"{' and '.join(packages)} for Python {version} did not install (is PyPI reachable?): "
                    f"{(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return request.param, root / "bin/python"


def test_a_bundle_runs_on_a_jetsons_own_python_and_packages(jetpack_python, small_run, tmp_path):
    """infer.py and pixels.py on JetPack 4.6's Python 3.6 with numpy 1.13 and Pillow 5.1 (and JetPack 5's 3.8, numpy
    1.17, Pillow 7.0) preprocess every kind of image as they do here; an EPS named .png is refused there too, without
    Pillow 8's ``formats=``; the engine runner a TensorRT bundle ships imports there. It caught pixels.py's
    ``from __future__ import annotations`` (3.7+) and ``Image.Resampling`` (Pillow 9.1+).
    """
    from PIL import Image

    name, old = jetpack_python
    cfg, _ = small_run
    out = tmp_path / "bundle"
    assert edgeres("bundle", f"{cfg.out}/model.onnx", "--target", "cpu", "--out", str(out)).returncode == 0
    rng = np.random.default_rng(0)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), "L").save(imgs / "grey.png")
    Image.fromarray(rng.integers(0, 256, (57, 90, 3), dtype=np.uint8), "RGB").save(imgs / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (64, 48, 4), dtype=np.uint8), "RGBA").save(imgs / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8), "RGB").convert("P").save(imgs / "palette.png")
    Image.fromarray(rng.integers(0, 65535, (40, 33), dtype=np.uint16)).save(imgs / "sixteen.png")
    # JPEGs as cameras make them, smooth: on pixel noise, libjpeg's versions upsample chroma tens of steps apart
    smooth = Image.fromarray(rng.integers(0, 256, (8, 6, 3), dtype=np.uint8), "RGB").resize((61, 77), Image.BICUBIC)
    smooth.convert("L").save(imgs / "grey.jpg", quality=90)
    smooth.save(imgs / "photo.jpg", quality=90)
    (imgs / "eps.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n")
    grey = json.loads((out / "bundle.json").read_text())["preprocessing"]
    rgb = {**grey, "channels": 3, "size": 32, "resize": 36, "resample": "bicubic", "mean": list(IMAGENET_MEAN),
           "std": list(IMAGENET_STD)}
    files = [str(p) for p in sorted(imgs.iterdir())]
    script = tmp_path / "preprocess.py"
    script.write_text(PREPROCESS)
    runs = {}
    for who, py in (("here", sys.executable), (name, str(old))):
        r = subprocess.run([py, str(script), str(out), str(tmp_path / f"{who}.npz"), json.dumps([grey, rgb]), *files],
                           capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == [str(imgs / "eps.png")] * 2
        runs[who] = np.load(tmp_path / f"{who}.npz")
    assert sorted(runs["here"].files) == sorted(runs[name].files) and len(runs["here"].files) == 14
    for key in runs["here"].files:
        a, b = runs["here"][key], runs[name][key]
        steps = np.abs(a - b) * 255 * np.asarray(rgb["std"] if key.startswith("3") else grey["std"])[:, None, None]
        # in 8-bit steps. PNG: Pillow 5.1 rounds RGB → grey one step apart on about half the pixels, else exact.
        # JPEG: the decoder is libjpeg's, whose versions upsample colour up to 9 steps apart on this image.
        worst, mean = (1.01, 0.55) if key.endswith(".png") else (10, 1.5)
        assert a.shape == b.shape and steps.max() <= worst and steps.mean() <= mean, (key, steps.max(), steps.mean())
    # infer.py end to end there, with a STAND-IN runtime (logits from pixels: protocol only, no model runs) on the
    # images both stacks decode alike; it caught argsort(kind="stable"), which numpy 1.13 does not know
    (out / "pixel_runner.py").write_text(PIXEL_RUNNER)
    settings = json.loads((out / "bundle.json").read_text())
    (out / "bundle.json").write_text(json.dumps({**settings, "runner": "pixel_runner"}))
    same = [str(imgs / n) for n in ("grey.png", "sixteen.png", "grey.jpg")]
    outs = [subprocess.run([py, str(out / "infer.py"), *same, "--top-k", "3", "--json"], capture_output=True,
                           text=True, cwd=tmp_path) for py in (sys.executable, str(old))]
    assert all(r.returncode == 0 for r in outs), outs[1].stderr
    here, there = (json.loads(r.stdout)["predictions"] for r in outs)
    assert [p["top"] for p in here] == [p["top"] for p in there] and len(here) == 3 and len(here[0]["top"]) == 3
    runner = Path(__file__).resolve().parents[2] / "edgeres/backends/tensorrt/standalone.py"
    r = subprocess.run([str(old), "-c", "import importlib.util as u, sys; s = u.spec_from_file_location('r', sys.argv[1]); "
                        "m = u.module_from_spec(s); s.loader.exec_module(m); print(callable(m.Runner))", str(runner)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr
