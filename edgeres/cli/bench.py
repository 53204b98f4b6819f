"""bench, run, targets."""
from __future__ import annotations

from pathlib import Path

import click

from edgeres.cli import default, emit, handle_errors, json_option
from edgeres.cli.commands import train_options
from edgeres.cli.device import ssh_options
from edgeres.config import ENERGY_MODES, METHODS, PROFILE_RUNS, BenchConfig, LatencyConfig, PipelineConfig, QuantConfig


def latency_options(fn):
    for opt in reversed([
        click.option("--warmup", "warmup_s", type=float, default=default(LatencyConfig, "warmup_s"), show_default=True,
                     help="Warm-up seconds."),
        click.option("--warmup-iters", type=int, default=default(LatencyConfig, "warmup_iters"), show_default=True),
        click.option("--duration", "duration_s", type=float, default=default(LatencyConfig, "duration_s"),
                     show_default=True, help="Timed seconds."),
        click.option("--min-iters", type=int, default=default(LatencyConfig, "min_iters"), show_default=True),
        click.option("--rounds", type=int, default=default(LatencyConfig, "rounds"), show_default=True,
                     help="Models alternate this many timing windows (the duration is split), so drift hits all alike."),
        click.option("--batch", type=int, default=default(BenchConfig, "batch"), show_default=True,
                     help="Batch for latency (TensorRT: the latency engine is optimized for it)."),
        click.option("--throughput-batch", type=int, default=default(BenchConfig, "throughput_batch"),
                     show_default=True),
        click.option("--threads", type=int, default=None, help="CPU threads (default: all cores)."),
        click.option("--max-drop", type=float, default=None, help="Fail if any precision loses more top-1 points."),
        click.option("--energy", type=click.Choice(ENERGY_MODES), default=default(BenchConfig, "energy"),
                     show_default=True, help="Board power and mJ/image: auto where a meter is (tegrastats, NVML, RAPL); "
                                             "on: refuse to bench without one."),
    ]):
        fn = opt(fn)
    return fn


def bench_config(target, data, limit, warmup_s, warmup_iters, duration_s, min_iters, rounds, batch,
                 throughput_batch, threads, max_drop, energy="auto", dla_core=None, profile=False, sweep=()):
    return BenchConfig(target, data, limit, batch, throughput_batch, threads,
                       LatencyConfig(warmup_s, warmup_iters, duration_s, min_iters, rounds), max_drop, energy, dla_core,
                       profile, sweep)


@click.command("bench")
@click.argument("models", nargs=-1, type=click.Path(path_type=Path))
@click.option("--target", default=default(BenchConfig, "target"), show_default=True,
              help="Target name, jetson (detect), or a .toml file.")
@click.option("--data", default=None, help="Evaluation set (default: the one in the model's metadata).")
@click.option("--limit", type=int, default=None, help="Evaluate on the first N test images only.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Also measure this checkpoint in plain PyTorch eager (the baseline).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/bench"), show_default=True)
@click.option("--compare", nargs=2, type=click.Path(path_type=Path), default=None,
              help="Put two report.json files side by side instead of measuring.")
@click.option("--host", default=None, metavar="USER@DEVICE",
              help="Run on this machine over SSH (edgeres installed there); the report comes back here.")
@ssh_options
@click.option("--remote-edgeres", default="edgeres", show_default=True, help="The edgeres command on --host.")
@click.option("--clean-remote", is_flag=True,
              help="Remove the models and engines from --host afterwards (default: kept in ~/.cache/edgeres/bench "
                   "there, so the next bench reuses the engines).")
@click.option("--runner", type=click.Choice(["auto", "python", "trtexec"]), default="auto", show_default=True,
              help="python: edgeres's own sessions (here, or the device's edgeres with --host); trtexec: only "
                   "trtexec on the device, nothing installed there; auto: trtexec where edgeres/TensorRT Python is absent.")
@click.option("--trtexec", "trtexec_path", default=None, metavar="PATH",
              help="trtexec on the device (default: on PATH, else /usr/src/tensorrt/bin/trtexec).")
@click.option("--config-json", default=None, metavar="JSON",
              help="The whole BenchConfig as JSON (what bench --host sends the device), instead of the options.")
@click.option("--dla-core", type=int, default=None, metavar="N",
              help="Also bench every fp16 and int8 row on this DLA core (Xavier, Orin NX, AGX Orin): static engines, "
                   "layers the DLA cannot take fall back to the GPU, and the report says how many.")
@click.option("--profile", is_flag=True,
              help=f"Also time each layer at the latency batch ({PROFILE_RUNS} runs under the runtime's own profiler, "
                   f"apart from the timing: ONNX Runtime's, TensorRT's IProfiler, trtexec --dumpProfile); report.md "
                   f"lists the slowest layers of each model.")
@click.option("--sweep", default=None, metavar="B1,B2,…",
              help="Also time every row at each of these batches (each like the latency batch: warm-up, duration, "
                   "rounds), and name the smallest batch within 5% of the most images per second. TensorRT: one "
                   "engine per row, profile 1 to the largest batch; a DLA row: an engine per batch.")
@latency_options
@json_option
@handle_errors
def bench_cmd(models, target, data, limit, checkpoint, out, compare, host, ssh_options, identity, accept_new_host_key,
              remote_edgeres, clean_remote, runner, trtexec_path, config_json, dla_core, profile, sweep, warmup_s,
              warmup_iters, duration_s, min_iters, rounds, batch, throughput_batch, threads, max_drop, energy, as_json):
    """Measure accuracy, latency, memory and (where a meter is) energy of every precision against fp32.

    \b
    Examples:
      edgeres bench runs/demo/model.onnx runs/demo/model.int8-cpu.onnx --target cpu --out runs/demo/report
      edgeres bench runs/demo/model*.onnx --target jetson --host nvidia@orin.local --out runs/orin
      edgeres bench runs/demo/model*.onnx --target jetson-agx-orin --dla-core 0 --host nvidia@orin.local
      edgeres bench runs/demo/model.onnx runs/demo/model.int8-cpu.onnx --profile   # which layers take the time
      edgeres bench runs/demo/model*.onnx --target jetson --host nvidia@orin.local --sweep 1,2,4,8,16,32,64
    """
    from edgeres.errors import ConfigError

    if compare:
        from edgeres.bench.compare import compare_reports
        text, payload = compare_reports(*compare)
        emit(as_json, payload, text)
        return
    if not models:
        raise ConfigError("no models given; pass the float ONNX and any int8 ONNX files, e.g. runs/demo/model*.onnx")
    from edgeres.bench.report import table
    from edgeres.bench.sweep import parse_sweep

    cfg = bench_config(target, data, limit, warmup_s, warmup_iters, duration_s, min_iters, rounds, batch,
                       throughput_batch, threads, max_drop, energy, dla_core, profile,
                       () if sweep is None else parse_sweep(sweep))
    if config_json is not None:
        import json

        from edgeres.config import from_dict
        try:
            cfg = from_dict(BenchConfig, json.loads(config_json))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"--config-json is not a BenchConfig ({e}); give the JSON that bench --host sends") from None
    from edgeres.bench.runners import bench_with

    ssh = None
    if host is not None:
        from edgeres.remote import SshHost
        ssh = SshHost(host, tuple(ssh_options), identity, accept_new_host_key)
    report = bench_with(list(models), out, cfg, runner, ssh, checkpoint, remote_edgeres, clean_remote, trtexec_path)
    emit(as_json, report, table(report) + f"\nreport: {out}/report.json, report.md, report.png")


@click.command("run")
@click.option("--out", default=default(PipelineConfig, "out"), show_default=True, help="Folder for every artifact.")
@train_options
@click.option("--target", default="cpu", show_default=True,
              help="Export for, quantize for and bench on this target (a TensorRT target needs TensorRT here).")
@click.option("--calibration", default=None,
              help="Calibration set (default: the shipped one for fashion-mnist, else drawn from --data's train split).")
@click.option("--allow-small", is_flag=True, help="Accept a calibration set under the minimum size.")
@click.option("--method", type=click.Choice([*METHODS, "auto"]), default=default(QuantConfig, "method"),
              show_default=True, help="Activation ranges (see `edgeres quantize --help`).")
@click.option("--force", is_flag=True, help="Redo every stage even when its output is up to date.")
@latency_options
@json_option
@handle_errors
def run_cmd(out, target, calibration, allow_small, method, force, warmup_s, warmup_iters, duration_s, min_iters, rounds,
            batch, throughput_batch, threads, max_drop, energy, as_json, **train):
    """The whole path: train → export → quantize → bench. Without options, the demo: Fashion-MNIST, both
    recipes (tensorrt and cpu), cpu target. Every option of `edgeres train` is taken.

    Resumable: a stage whose inputs and settings are unchanged is skipped.

    \b
    Examples:
      edgeres run --out runs/demo
      edgeres run --data my_photos --weights resnet18-f37072fd.pth --freeze-backbone 1 --epochs 5 --out runs/photos
    """
    from dataclasses import replace

    from edgeres.bench.report import table
    from edgeres.pipeline import run_pipeline
    from edgeres.targets import load_target

    base = PipelineConfig()
    runtime = load_target(target).runtime
    cfg = replace(base, out=out, train=replace(base.train, **train),
                  export=replace(base.export, target=None if target == "cpu" else target),
                  quant=replace(base.quant, method=method, calibration=calibration, allow_small=allow_small),
                  recipes=base.recipes if runtime == "onnxruntime" else ("tensorrt",),
                  bench=bench_config(target, None, train["limit_test"], warmup_s, warmup_iters, duration_s, min_iters,
                                     rounds, batch, throughput_batch, threads, max_drop, energy))
    report = run_pipeline(cfg, force=force)
    emit(as_json, report, table(report) + f"\nreport: {out}/report/report.json, report.md, report.png")


@click.command("targets")
@json_option
@handle_errors
def targets_cmd(as_json):
    """List the target profiles in targets/, and say which one this machine is.

    \b
    Example:
      edgeres targets
    """
    from dataclasses import asdict

    from edgeres import __version__
    from edgeres.backends.tensorrt import tensorrt_status
    from edgeres.errors import ConfigError
    from edgeres.targets import all_targets, detect_jetson

    ts = all_targets()
    try:
        here = detect_jetson().name
    except ConfigError:
        here = "cpu"
    trt, why = tensorrt_status()  # what bench's python runner has here (device check asks a device's edgeres this)
    lines = [f"{'*' if t.name == here else ' '} {t.name:18} {t.runtime:11} {','.join(t.precisions):15} "
             f"{('SM ' + t.sm) if t.sm else '':8} DLA {t.dla_cores}  {t.description}" for t in ts]
    emit(as_json, {"this_machine": here, "edgeres": __version__,
                   "tensorrt": {"version": None if trt is None else str(trt), "why": why},
                   "targets": [asdict(t) for t in ts]},
         "\n".join(lines) + f"\n(* this machine: {here}; TensorRT for edgeres's Python: {trt or why})")
