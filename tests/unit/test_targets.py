"""Target profiles: every file loads; bad files and impossible requests fail with their message."""
from __future__ import annotations

import pytest

from edgeres.errors import ConfigError
from edgeres.targets import TARGETS_DIR, all_targets, load_target, load_target_file

EXPECTED = {"cpu", "desktop", "jetson-nano", "jetson-tx2", "jetson-xavier-nx", "jetson-agx-xavier",
            "jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin", "jetson-thor"}


def test_every_target_loads():
    ts = {t.name: t for t in all_targets()}
    assert set(ts) == EXPECTED
    for t in ts.values():
        assert t.runtime in ("onnxruntime", "tensorrt")
        assert (TARGETS_DIR / f"{t.name}.toml").is_file()
    assert ts["cpu"].runtime == "onnxruntime"
    assert ts["jetson-nano"].sm == "5.3" and not ts["jetson-nano"].int8_gpu
    assert ts["jetson-agx-orin"].dla_cores == 2 and ts["jetson-orin-nano"].dla_cores == 0


def test_int8_on_nano_is_refused():
    with pytest.raises(ConfigError, match="jetson-nano does not support int8"):
        load_target("jetson-nano").check_precision("int8")


@pytest.mark.parametrize("name", ["jetson-orin-nano", "jetson-thor"])
def test_dla_where_there_is_none_is_refused(name):
    with pytest.raises(ConfigError, match=f"{name} has no DLA"):
        load_target(name).check_dla(0)


def test_dla_core_out_of_range():
    load_target("jetson-agx-orin").check_dla(1)
    with pytest.raises(ConfigError, match="cores 0–1"):
        load_target("jetson-agx-orin").check_dla(2)


def test_unknown_target_lists_choices():
    with pytest.raises(ConfigError, match="unknown target 'jetson-nanoo'.*jetson-nano"):
        load_target("jetson-nanoo")


def test_unknown_key_lists_valid_keys(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text('name="x"\ndescription="d"\nkind="cpu"\nruntime="onnxruntime"\nprecisions=["fp32"]\nspeed=3\n')
    with pytest.raises(ConfigError, match="unknown key 'speed'; valid keys are name, description"):
        load_target_file(p)


def test_wrong_type_and_missing_field(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text('name="x"\ndescription="d"\nkind="cpu"\nruntime="onnxruntime"\nprecisions=["fp32"]\ndla_cores="2"\n')
    with pytest.raises(ConfigError, match="dla_cores = '2' should be int"):
        load_target_file(p)
    p.write_text('name="x"\nkind="cpu"\nruntime="onnxruntime"\nprecisions=["fp32"]\n')
    with pytest.raises(ConfigError, match="missing field 'description'"):
        load_target_file(p)


@pytest.mark.parametrize("model,name", [
    ("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", "jetson-orin-nano"),
    ("NVIDIA Jetson AGX Orin Developer Kit", "jetson-agx-orin"),
    ("NVIDIA Jetson Xavier NX Developer Kit", "jetson-xavier-nx"),
    ("NVIDIA Jetson Nano Developer Kit", "jetson-nano"),
    ("Jetson-AGX", "jetson-agx-xavier"),
])
def test_jetson_detection_from_device_tree(tmp_path, model, name):
    f = tmp_path / "model"
    f.write_bytes(model.encode() + b"\x00")
    assert load_target("jetson", model_file=f).name == name


def test_jetson_off_a_jetson_fails_clearly(tmp_path):
    with pytest.raises(ConfigError, match="works on a Jetson only.*--host"):
        load_target("jetson", model_file=tmp_path / "absent")


def test_the_export_a_refusal_names_follows_the_manifests(tmp_path):
    """The checkpoint a model came from, through its Q/DQ and float manifests, quoted for the shell; while that
    checkpoint is unchanged (else the generic command); for an imported ONNX, its own exporter's opset.
    """
    from edgeres.artifacts import write_manifest
    from edgeres.onnx_limits import export_fix

    d = tmp_path / "my runs"
    d.mkdir()
    ck, fp32, q, imported = d / "m.pt", d / "m.onnx", d / "m.int8.onnx", d / "foreign.onnx"
    for f in (ck, fp32, q, imported):
        f.write_bytes(f.name.encode())
    write_manifest(fp32, "onnx-fp32", {"checkpoint": ck}, {})
    write_manifest(q, "onnx-int8-qdq", {"onnx": fp32}, {"recipe": "tensorrt", "method": "auto"})
    write_manifest(imported, "onnx-imported", {"onnx": tmp_path / "elsewhere.onnx"}, {})
    nano = load_target("jetson-nano")
    want = f"`edgeres export '{ck}' --target jetson-nano --out '{d / 'm.jetson-nano.onnx'}'`"
    assert export_fix(fp32, nano, 13) == f"re-export it for the target: {want}"
    assert export_fix(q, nano, 13) == (f"re-export it for the target: {want}, then quantize that ONNX: "
                                       f"`edgeres quantize '{d / 'm.jetson-nano.onnx'}' --recipe tensorrt --method auto`")
    assert "opset_version=13" in export_fix(imported, nano, 13) and "edgeres import" in export_fix(imported, nano, 13)
    ck.write_bytes(b"another checkpoint")  # not the one the model came from: no command that would make another model
    assert export_fix(q, nano, 13) == ("re-export it for the target with `edgeres export CHECKPOINT --target "
                                       "jetson-nano` (then quantize that ONNX again)")
    assert "CHECKPOINT" in export_fix(tmp_path / "no-manifest.onnx", nano, 13)
