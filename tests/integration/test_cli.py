"""The command line: --help with examples, --json, and bad input as one line, no traceback, no debris."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from PIL import Image

from tests.helpers.cli import QUICK_TIMING, assert_one_line_error, edgeres
from tests.helpers.fixtures import blank_calibration


def _commands() -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command the ``edgeres`` group lists, and the subcommands of its groups (``calib make`` …)."""
    from edgeres.cli.app import main

    ctx = click.Context(main)

    def walk(group: click.Group, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], click.Command]]:
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            assert cmd is not None, name
            yield (*path, name), cmd
            if isinstance(cmd, click.Group):
                yield from walk(cmd, (*path, name))

    return list(walk(main, ()))


COMMANDS = _commands()
IDS = [" ".join(path) for path, _ in COMMANDS]


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=IDS)
def test_help_has_an_example_and_json(path, cmd):
    """Every command has --help with an example, and every command that does something prints JSON with --json."""
    r = edgeres(*path, "--help")
    assert r.returncode == 0
    if isinstance(cmd, click.Group):
        assert "Commands" in r.stdout
    else:
        assert "Example" in r.stdout and "--json" in r.stdout


def _stand_in(p: click.Parameter) -> list[str]:
    """A value that parses for ``p`` (what it means does not matter: nothing is invoked)."""
    value = p.type.choices[0] if isinstance(p.type, click.Choice) else "1"
    if isinstance(p, click.Argument):
        return [str(value)] * max(p.nargs, 1)
    return [p.opts[0], str(value)]


def _required_options(cmd: click.Command) -> list[click.Parameter]:
    return [p for p in cmd.params if p.required and isinstance(p, click.Option)]


@pytest.mark.parametrize("path,cmd", [c for c in COMMANDS if _required_options(c[1])],
                         ids=[i for i, c in zip(IDS, COMMANDS) if _required_options(c[1])])
def test_every_required_option_is_enforced(path, cmd):
    """Leaving out any one required option is click's usage error naming it, not a crash further on (an explicit
    ``default=None`` satisfies ``required=True`` since click 8.3: ``edgeres import`` without ``--size`` ran on and
    failed with a traceback).
    """
    arguments = [a for p in cmd.params if isinstance(p, click.Argument) and p.required for a in _stand_in(p)]
    for missing in _required_options(cmd):
        args = arguments + [a for p in _required_options(cmd) if p is not missing for a in _stand_in(p)]
        with pytest.raises(click.MissingParameter) as e:
            cmd.make_context(" ".join(path), args)
        assert e.value.param is missing


def test_import_without_its_preprocessing_is_a_usage_error(small_run):
    cfg, _ = small_run
    r = edgeres("import", str(Path(cfg.out) / "model.onnx"), "--labels", "a,b", "--mean", "0.5", "--std", "0.5")
    assert r.returncode == 2
    assert_one_line_error(r, "Missing option '--size'", "import --help")


def test_targets_json():
    r = edgeres("targets", "--json")
    doc = json.loads(r.stdout)
    assert doc["this_machine"] == "cpu" and len(doc["targets"]) == 10


def test_missing_data_set(tmp_path):
    r = edgeres("train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "m.pt"))
    assert_one_line_error(r, "does not exist", "--data fashion-mnist")
    assert not (tmp_path / "m.pt").exists()


def test_truncated_checkpoint(small_run, tmp_path):
    cfg, _ = small_run
    data = (Path(cfg.out) / "model.pt").read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data[: len(data) // 3])
    r = edgeres("export", str(bad), "--out", str(tmp_path / "m.onnx"))
    assert_one_line_error(r, "truncated")
    assert not list(tmp_path.glob("*.onnx*"))


def test_truncated_onnx(small_run, tmp_path):
    cfg, _ = small_run
    data = (Path(cfg.out) / "model.onnx").read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(data[: len(data) // 2])
    r = edgeres("quantize", str(bad), "--int8", "--out", str(tmp_path / "q.onnx"))
    assert_one_line_error(r, "not a valid ONNX model")
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("stage", [["quantize", "--int8"], ["build", "--target", "cpu"], ["bench", "--target", "cpu"],
                                   ["bundle", "--target", "cpu"]], ids=lambda s: s[0])
def test_a_checkpoint_or_a_folder_where_an_onnx_belongs(stage, small_run, tmp_path):
    """The file a user most often passes by mistake is the checkpoint next to the ONNX: the error says which it is and
    how to make the ONNX, not that the ONNX may be truncated.
    """
    cfg, _ = small_run
    ckpt = Path(cfg.out) / "model.pt"
    r = edgeres(stage[0], str(ckpt), *stage[1:], "--out", str(tmp_path / "out"))
    assert_one_line_error(r, "is a PyTorch checkpoint, not an ONNX model", f"edgeres export {ckpt}")
    r = edgeres(stage[0], str(tmp_path), *stage[1:], "--out", str(tmp_path / "out"))
    assert_one_line_error(r, "is a folder; pass an ONNX file")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_empty_and_junk_calibration_folders(small_run, tmp_path):
    cfg, _ = small_run
    (tmp_path / "empty").mkdir()
    r = edgeres("quantize", str(Path(cfg.out) / "model.onnx"), "--int8", "--calibration", str(tmp_path / "empty"),
                "--out", str(tmp_path / "q.onnx"))
    assert_one_line_error(r, "holds no images")
    junk = tmp_path / "junk"
    junk.mkdir()
    Image.new("L", (28, 28)).save(junk / "a.png")
    (junk / "readme.md").write_text("x")
    r = edgeres("quantize", str(Path(cfg.out) / "model.onnx"), "--int8", "--calibration", str(junk),
                "--out", str(tmp_path / "q.onnx"))
    assert_one_line_error(r, "readme.md", "remove it")
    assert not (tmp_path / "q.onnx").exists()


def test_overlapping_calibration_set(small_run, tmp_path):
    cfg, _ = small_run
    from edgeres.data.datasets import load_dataset
    test = load_dataset("fashion-mnist", "test")
    for i in range(100):
        test.image(i).save(tmp_path / f"{i}.png")
    r = edgeres("quantize", str(Path(cfg.out) / "model.onnx"), "--int8", "--calibration", str(tmp_path),
                "--out", str(tmp_path.parent / "q-overlap.onnx"))
    assert_one_line_error(r, "also appear in the evaluation set", "--split train")


@pytest.mark.parametrize("args,needles", [
    (["bench", "model.onnx", "--target", "jetson-nanoo"], ["unknown target 'jetson-nanoo'", "jetson-nano"]),
    (["bench", "model.onnx", "--duration", "0"], ["--duration must be positive"]),
    (["build", "model.int8-tensorrt.onnx", "--target", "jetson-agx-orin"], ["opset 18", "--target jetson-agx-orin"]),
    (["build", "model.int8-tensorrt.onnx", "--target", "jetson-nano"], ["jetson-nano does not support int8"]),
    (["build", "model.onnx", "--target", "jetson-orin-nano", "--dla-core", "0"], ["jetson-orin-nano has no DLA"]),
], ids=["unknown-target", "zero-duration", "opset-above-parser", "int8-on-nano", "dla-on-orin-nano"])
def test_refused_requests(small_run, args, needles):
    """Each refusal is one line that names the fix, before any work is done."""
    cfg, _ = small_run
    r = edgeres(args[0], str(Path(cfg.out) / args[1]), *args[2:])
    assert_one_line_error(r, *needles)


def test_build_cpu_writes_optimized_onnx(small_run, tmp_path):
    cfg, _ = small_run
    out = tmp_path / "m.ort.onnx"
    r = edgeres("build", str(Path(cfg.out) / "model.int8-cpu.onnx"), "--target", "cpu", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["runtime"] == "onnxruntime"
    import onnx
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "QLinearConv" in ops or any(o.startswith("QLinear") or "Quant" in o for o in ops)
    r = edgeres("build", str(Path(cfg.out) / "model.int8-cpu.onnx"), "--target", "cpu", "--out", str(tmp_path / "b.onnx"))
    assert r.stdout.splitlines()[0] == (f"{tmp_path / 'b.onnx'}: onnxruntime int8 for cpu, "
                                        f"{(tmp_path / 'b.onnx').stat().st_size / 2**20:.1f} MiB")


def test_bench_json_and_compare(small_run, tmp_path):
    cfg, _ = small_run
    args = [str(Path(cfg.out) / "model.onnx"), str(Path(cfg.out) / "model.int8-cpu.onnx"), "--limit", "100",
            "--duration", "0.05", "--warmup", "0", "--warmup-iters", "1"]
    r = edgeres("bench", *args, "--out", str(tmp_path / "a"), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "edgeres.bench/1" and len(doc["results"]) == 2
    r = edgeres("bench", "--compare", str(tmp_path / "a" / "report.json"), str(Path(cfg.out) / "report" / "report.json"))
    assert r.returncode == 0 and "int8-cpu" in r.stdout
    other = json.loads((tmp_path / "a" / "report.json").read_text())
    other["schema"] = "edgeres.bench/0"
    (tmp_path / "old.json").write_text(json.dumps(other))
    r = edgeres("bench", "--compare", str(tmp_path / "old.json"), str(tmp_path / "a" / "report.json"))
    assert_one_line_error(r, "schema 'edgeres.bench/0'")


def test_max_drop_budget_fails_bench(small_run, tmp_path):
    """A real hard case: calibrated on blank images, activations saturate and top-1 collapses."""
    cfg, _ = small_run
    blank = blank_calibration(tmp_path / "blank")
    bad = tmp_path / "bad.int8.onnx"
    r = edgeres("quantize", str(Path(cfg.out) / "model.onnx"), "--int8", "--recipe", "cpu",
                "--calibration", str(blank), "--out", str(bad))
    assert r.returncode == 0, r.stderr
    r = edgeres("bench", str(Path(cfg.out) / "model.onnx"), str(bad), "--limit", "200", *QUICK_TIMING,
                "--max-drop", "0.3", "--out", str(tmp_path / "b"))
    assert_one_line_error(r, "over --max-drop 0.3")
    assert (tmp_path / "b" / "report.json").is_file()  # the report is still written


@pytest.mark.parametrize("stage", ["quantize", "bench"])
def test_onnx_stages_do_not_import_torch(stage, small_run, calib_dir, tmp_path):
    """Importing torch costs 2-3 s of every call (and a deploy venv has none): quantize and bench of an ONNX model
    need ONNX Runtime only.
    """
    cfg, _ = small_run
    args = {"quantize": ["quantize", f"{cfg.out}/model.onnx", "--calibration", str(calib_dir), "--allow-small",
                         "--out", str(tmp_path / "q.onnx")],
            "bench": ["bench", f"{cfg.out}/model.onnx", "--limit", "20", "--out", str(tmp_path / "r"), *QUICK_TIMING]}
    code = ("import runpy, sys\nsys.argv = ['edgeres', *sys.argv[1:]]\ntry:\n    runpy.run_module('edgeres', "
            "run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, *args[stage]], capture_output=True, text=True,
                       env={**os.environ, "EDGERES_QUIET": "1"}, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"
