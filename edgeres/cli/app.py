"""The ``edgeres`` command: a thin click layer over the library, one command per arrow."""
from __future__ import annotations

import contextlib
import importlib
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import MISSING, fields
from functools import wraps
from typing import Any, NoReturn

import click

from edgeres import __version__
from edgeres.interrupts import raise_on_stop_signals, signal_of

COMMANDS = {
    "train": ("edgeres.cli.commands", "train_cmd", "dataset → checkpoint."),
    "export": ("edgeres.cli.commands", "export_cmd", "checkpoint → float ONNX, parity-checked."),
    "import": ("edgeres.cli.user", "import_cmd", "foreign ONNX → edgeres ONNX (preprocessing and labels added)."),
    "quantize": ("edgeres.cli.commands", "quantize_cmd", "float ONNX → INT8 Q/DQ ONNX."),
    "build": ("edgeres.cli.commands", "build_cmd", "ONNX → engine for a target."),
    "bench": ("edgeres.cli.bench", "bench_cmd", "accuracy, latency, memory, energy of every precision → report."),
    "run": ("edgeres.cli.bench", "run_cmd", "the whole path: train → export → quantize → bench (the demo by default)."),
    "bundle": ("edgeres.cli.user", "bundle_cmd", "model → DeepStream config, Triton repository, infer.py."),
    "predict": ("edgeres.cli.user", "predict_cmd", "classify images with a checkpoint, ONNX or engine."),
    "targets": ("edgeres.cli.bench", "targets_cmd", "list target profiles."),
    "calib": ("edgeres.cli.data", "calib_grp", "make and inspect calibration sets."),
    "data": ("edgeres.cli.data", "data_grp", "fetch and inspect data sets."),
    "device": ("edgeres.cli.device", "device_grp", "check a device before a bench; set a JetPack 6/7 one up."),
}


class LazyGroup(click.Group):
    """Imports a command's module only when it runs; an import error is loud, never a missing command."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        mod, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(mod), attr)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """As click's, but a usage error is one line (``Error: … (see `edgeres CMD --help`)``), exit 2; SIGTERM and
        SIGHUP stop a command as Ctrl-C does.
        """
        raise_on_stop_signals()
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx else "edgeres"
            click.echo(f"Error: {e.format_message()} (see `{where} --help`)", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort as e:
            if isinstance(e.__cause__, KeyboardInterrupt):  # Ctrl-C before a command ran (its imports)
                die_interrupted(signal_of(e.__cause__))
            click.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(n, h) for n, (_, _, h) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeres")
def main() -> None:
    """edgeres: from an image classifier to a measured deployment on NVIDIA edge devices.

    \b
    dataset ─ train ─▶ checkpoint ─ export ─▶ ONNX ─ quantize ─▶ Q/DQ ONNX ─ build ─▶ engine ─ bench ─▶ report

    \b
    Example (the whole path on Fashion-MNIST, on this CPU):
      edgeres run
    """


# What the optional extras bring, and how to get each (a device needs none of them to build and bench with TensorRT).
OPTIONAL_PACKAGES = {
    "torch": "pip install 'edgeres[workstation]' (training, export and quantization run on a workstation)",
    "onnxscript": "pip install 'edgeres[workstation]'",
    "onnxruntime": "pip install 'edgeres[cpu]' (the cpu target and quantization run on ONNX Runtime)",
}


INTERRUPTED = "interrupted; finished artifacts are kept, re-run to resume"


def die_interrupted(signum: int = signal.SIGINT) -> NoReturn:
    """Ctrl-C (or SIGTERM, SIGHUP): one line, then die of that signal, as a shell expects of a program it stopped: the
    status is 128 + the signal, and a script or loop that ran edgeres stops too (bash carries on after a child that
    merely exits 130). Python's own finalization is skipped (what a command wrote is already in place or removed);
    stdout and stderr are flushed.
    """
    from edgeres.interrupts import die_of

    name = "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"
    click.echo(INTERRUPTED.replace("interrupted", f"interrupted{name}", 1), err=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    die_of(signum)
    sys.exit(128 + signum)  # where the signal did not end the process


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """EdgeresError → one-line ``Error: …`` and exit 1; Ctrl-C, SIGTERM, SIGHUP → one line and death by that signal. No
    tracebacks for users.
    """
    from edgeres.errors import EdgeresError

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgeresError as e:
            raise click.ClickException(str(e)) from None
        except ModuleNotFoundError as e:
            if e.name not in OPTIONAL_PACKAGES:
                raise
            raise click.ClickException(f"this command needs {e.name}, which is not installed: "
                                       f"{OPTIONAL_PACKAGES[e.name]}") from None
        except KeyboardInterrupt as e:  # left first, so the traceback's frames (a DataLoader, its workers) are released
            signum = signal_of(e)
        except OSError as e:  # the file system said no: disk full, read-only, permissions
            raise click.ClickException(filesystem_message(e)) from None
        die_interrupted(signum)
    return wrapper


def filesystem_message(e: OSError) -> str:
    import errno

    where = f" writing {e.filename}" if e.filename else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full{where}; free space or choose another --out (nothing half-written was kept)"
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{e.strerror}{where}; choose a writable --out"
    return f"{e.strerror or type(e).__name__}{where or ''}; check the path and the disk"


def emit(as_json: bool, payload: dict, text: str) -> None:
    """Print ``payload`` as JSON with --json, else the human text."""
    if as_json:
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        click.echo(text)


def default(cls: type, name: str) -> Any:
    """The default of a config dataclass's field: click options take it from there, never a copy."""
    f = {f.name: f for f in fields(cls)}[name]
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[operator]


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")


def preprocessing_options(whose: str, required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--size, --resize, --mean, --std: the preprocessing of a model whose file records none (``whose`` says which)."""
    opts = [
        click.option("--size", type=int, required=required, help=f"{whose} input side (the crop), px."),
        click.option("--resize", type=int, default=None, help="The shorter side before the centre crop (default: "
                     "--size)."),
        click.option("--mean", required=required, help="Per-channel mean of pixels in [0, 1], e.g. "
                     "0.485,0.456,0.406."),
        click.option("--std", required=required, help="Per-channel std, e.g. 0.229,0.224,0.225."),
    ]

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        for o in reversed(opts):
            f = o(f)
        return f

    return wrap
