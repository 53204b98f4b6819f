"""Every stage's configuration, torch-free: the one source of defaults and choices for the library and the CLI.

The click options take their defaults and choices from these dataclasses (``edgeres.cli.app.default``), and
``bench --host`` sends the device its ``BenchConfig`` as JSON. Methods, recipes and precisions are defined once here.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from edgeres.archs import ARCHS, STEMS
from edgeres.errors import ConfigError

Method = Literal["minmax", "entropy", "percentile", "mse", "layer-mse", "layer-cosine"]
RecipeName = Literal["tensorrt", "cpu"]
Precision = Literal["fp32", "fp16", "int8"]
METHODS: tuple[str, ...] = get_args(Method)
RECIPES: tuple[str, ...] = get_args(RecipeName)
PRECISIONS: tuple[str, ...] = get_args(Precision)
PLACEMENTS = ("auto", "weighted", "ort")  # where Q/DQ goes: weighted layers only, or ONNX Runtime's every-op placement
SEARCH_WEIGHTS = ("margin", "uniform")  # how the range search counts each image (edgeres/quantize/ranges.py)
QAT_RANGES = ("learned", "fixed")  # whether QAT learns the activation ranges with the weights
SCHEDULES = ("onecycle", "cosine")
AUGMENTS = ("auto", "none", "flip", "crop", "flip+crop", "rrc", "rrc+flip")
AMP_MODES = ("auto", "bf16", "fp16", "off")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_DATASET = "fashion-mnist"
DEFAULT_OPSET = 18  # what `edgeres export` writes without --target (torch's dynamo exporter's own opset)
MIN_OPSET = 13  # the lowest edgeres writes: per-channel QuantizeLinear needs 13
MAX_OPSET = 25
ENERGY_MODES = ("auto", "on", "off")
DEFAULT_MAX_BATCH = 32  # the engines' largest batch: accuracy is scored in batches of this size
WORKSPACE_MIB = 1024  # TensorRT's builder workspace, for the Python builder and trtexec alike
PROFILE_RUNS = 50  # bench --profile: runs averaged per layer, at the latency batch
PROFILE_TOP = 10  # layers a report lists by name; the rest are summed
MAX_SWEEP = 12  # bench --sweep: batch sizes at most (each is timed like the latency batch, for every row)
MAX_BATCH = 4096  # the exported models' limit on the batch, for engines and bench's batches alike
SWEEP_KNEE = 0.95  # bench --sweep names the smallest batch within this share of a row's best images per second


def _finite(name: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, got {value}")


@dataclass(frozen=True)
class TrainConfig:
    data: str = DEFAULT_DATASET
    arch: str | None = None  # None: the --weights' architecture, else resnet18
    stem: str | None = None  # None: the --weights' stem, else imagenet
    size: int | None = None  # None: 40 for fashion-mnist, 224 for an RGB folder, its own size for a grey one
    epochs: int = 2
    batch_size: int = 128
    lr: float = 0.4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    label_smoothing: float = 0.1
    augment: str = "auto"  # auto: flip for fashion-mnist, rrc+flip for an RGB folder, crop for a grey one
    zero_init_residual: bool = True
    amp: str = "auto"  # autocast: bf16 where the device has it natively (fp16 with a scaler on older GPUs); "off"
    seed: int = 0
    limit_train: int | None = None
    limit_test: int | None = None
    weights: str | None = None  # start from this torchvision or edgeres checkpoint (fine-tuning)
    freeze_backbone: int = 0  # epochs that train only the head before everything trains
    val_split: float | None = None  # held-out share of train for model selection; None: 0.1 for a folder, 0 else
    device: str = "auto"  # auto | cpu | cuda
    workers: int | None = None  # data-loading processes for image folders; None: up to 4 per process
    allow_duplicates: bool = False  # train although test or validation images copy training ones, or sit in two classes

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ConfigError(f"--batch-size must be at least 2 (BatchNorm), got {self.batch_size}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"--schedule must be onecycle or cosine, got {self.schedule!r}")
        if self.arch is not None and self.arch not in ARCHS:
            raise ConfigError(f"--arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.stem is not None and self.stem not in STEMS:
            raise ConfigError(f"--stem must be one of {', '.join(STEMS)}, got {self.stem!r}")
        if self.augment not in AUGMENTS:
            raise ConfigError(f"--augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"--amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        for name in ("lr", "momentum", "weight_decay", "label_smoothing", "val_split"):
            _finite(name, getattr(self, name))
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if not (0 <= self.momentum < 1 and self.weight_decay >= 0 and 0 <= self.label_smoothing < 1):
            raise ConfigError("momentum and label smoothing must lie in [0, 1) and weight decay must be ≥ 0")
        if self.size is not None and not 8 <= self.size <= 4096:
            raise ConfigError(f"--size must lie between 8 and 4096 pixels, got {self.size}")
        if self.val_split is not None and not 0 <= self.val_split <= 0.5:
            raise ConfigError(f"--val-split must lie between 0 and 0.5, got {self.val_split}")
        if self.freeze_backbone < 0:
            raise ConfigError(f"--freeze-backbone counts epochs and must be ≥ 0, got {self.freeze_backbone}")
        if self.freeze_backbone and not self.weights:
            raise ConfigError("--freeze-backbone needs --weights: a backbone trained from scratch must not be frozen")
        if self.seed < 0:
            raise ConfigError(f"--seed must be ≥ 0, got {self.seed}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"--workers must be ≥ 0, got {self.workers}")
        for name in ("limit_train", "limit_test"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {v}")


@dataclass(frozen=True)
class ExportConfig:
    opset: int | None = None  # None: the target's parser limit, else DEFAULT_OPSET
    parity_images: int = 500
    max_abs_diff: float = 1e-3
    min_agreement: float = 99.9
    data: str | None = None  # data set for parity images; default: the one the checkpoint was trained on
    target: str | None = None  # write an ONNX this target's TensorRT parses (opset and op forms)
    # for a checkpoint that records none (a torchvision file): its preprocessing and labels
    size: int | None = None
    resize: int | None = None  # shorter side before the centre crop; None: size
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    classes: tuple[str, ...] | None = None

    @property
    def gives_preprocessing(self) -> bool:
        return any(v is not None for v in (self.size, self.resize, self.mean, self.std))

    def given_preprocessing(self) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
        """(size, mean, std) from the options; all three or none (then ``gives_preprocessing`` is False)."""
        if self.size is None or self.mean is None or self.std is None:
            raise ConfigError("a checkpoint's preprocessing needs --size, --mean and --std together "
                              "(ImageNet: --size 224 --resize 256 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225)")
        return self.size, self.mean, self.std

    def validate(self) -> None:
        if self.gives_preprocessing:
            self.given_preprocessing()
        if self.opset is not None and not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise ConfigError(f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got {self.opset}")
        if self.parity_images < 1:
            raise ConfigError(f"--parity-images must be at least 1, got {self.parity_images}")
        for name in ("max_abs_diff", "min_agreement"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number ≥ 0, got {v}")

@dataclass(frozen=True)
class QuantConfig:
    recipe: str = "tensorrt"
    method: str = "minmax"  # minmax | entropy | percentile | auto
    calibration: str | None = None  # None: the shipped set for fashion-mnist, else a sample of the model's train split
    percentile: float = 99.999
    num_bins: int = 2048
    batch_size: int = 32
    allow_small: bool = False
    eval_data: str | None = None  # the set bench measures on; calibration must not overlap it
    sensitivity: bool = False
    max_drop: float | None = None  # top-1 points against fp32 on the validation slice
    val_fraction: float = 0.2
    max_float_layers: int | None = None  # the budget may keep at most this many layers in float (None: all but one)
    trt_cache_version: str | None = None  # also write a legacy TensorRT calibration cache for this version
    equalize: bool = False  # cross-layer equalization of Conv/BN → Relu → Conv pairs before calibration
    placement: str = "auto"  # auto: weighted for the tensorrt recipe and searched methods, ort for the cpu recipe
    bias_correction: bool = False  # weighted placement: add back each channel's mean shift from int8 weights
    adaround: int = 0  # weighted placement: learn the int8 rounding of this many of the worst layers
    qat: int = 0  # weighted placement: quantization-aware fine-tuning steps, the last resort
    qat_images: int = 5000  # QAT learns from this many images of the model's training split (0: the calibration set)
    qat_restarts: int = 3  # QAT runs this many times (seeds 0, 1, …) and the judging images keep the best
    qat_ranges: str = "learned"  # QAT learns each activation range with the weights (LSQ), or keeps the plan's (fixed)
    offset_inputs: bool = True  # tensorrt recipe: never-negative inputs of unpadded layers over 256 levels (qdq_writer)
    search_weights: str = "margin"  # searched ranges: each image counts by nearness to the decision, or alike (ranges)

    def validate(self) -> None:
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        if self.method not in METHODS + ("auto",):
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}, auto")
        if self.placement not in PLACEMENTS:
            raise ConfigError(f"unknown placement {self.placement!r}; choose one of {', '.join(PLACEMENTS)}")
        if self.adaround < 0:
            raise ConfigError(f"--adaround takes a number of layers (0 or more), got {self.adaround}")
        if not 0 <= self.qat <= 100_000:
            raise ConfigError(f"--qat takes a number of steps from 0 to 100000, got {self.qat}")
        if not 1 <= self.qat_restarts <= 20:
            raise ConfigError(f"--qat-restarts takes a number of runs from 1 to 20, got {self.qat_restarts}")
        if self.search_weights not in SEARCH_WEIGHTS:
            raise ConfigError(f"--search-weights takes {' or '.join(SEARCH_WEIGHTS)}, got {self.search_weights!r}")
        if self.qat_ranges not in QAT_RANGES:
            raise ConfigError(f"--qat-ranges takes {' or '.join(QAT_RANGES)}, got {self.qat_ranges!r}")
        if not 0 <= self.qat_images <= 1_000_000:
            raise ConfigError(f"--qat-images takes a number of images from 0 to 1000000, got {self.qat_images}")
        if self.placement == "ort" and (self.bias_correction or self.adaround or self.qat):
            raise ConfigError("--bias-correction, --adaround and --qat change int8 weights of the weighted placement; "
                              "drop --placement ort")
        for name in ("percentile", "max_drop", "val_fraction"):
            _finite(name, getattr(self, name))
        if not 90.0 < self.percentile < 100.0:
            raise ConfigError(f"--percentile must lie between 90 and 100, got {self.percentile}")
        if self.max_drop is not None and self.max_drop < 0:
            raise ConfigError(f"--max-drop must not be negative, got {self.max_drop}")
        if self.max_float_layers is not None and self.max_float_layers < 1:
            raise ConfigError(f"--max-float-layers must be at least 1, got {self.max_float_layers}")
        if not 0.05 <= self.val_fraction <= 0.5:
            raise ConfigError(f"--val-fraction must lie between 0.05 and 0.5, got {self.val_fraction}")
        if self.trt_cache_version is not None:
            from packaging.version import InvalidVersion, Version

            try:
                Version(self.trt_cache_version)
            except InvalidVersion:
                raise ConfigError(f"--trt-cache takes a TensorRT version such as 8.5.2, got "
                                  f"{self.trt_cache_version!r}") from None

    @property
    def needs_validation(self) -> bool:
        # AdaRound and QAT are kept only if they score no worse on the validation slice
        return self.method == "auto" or self.sensitivity or self.max_drop is not None or self.adaround > 0 \
            or self.qat > 0



@dataclass(frozen=True)
class LatencyConfig:
    """Defaults follow trtexec: 200 ms warm-up, 3 s timed, at least 10 iterations."""

    warmup_s: float = 0.2
    warmup_iters: int = 10
    duration_s: float = 3.0
    min_iters: int = 10
    rounds: int = 5  # models compared in one bench alternate this many windows, so drift falls evenly on all

    def validate(self) -> None:
        for name, flag in (("warmup_s", "warmup"), ("duration_s", "duration")):
            _finite(flag, getattr(self, name))
        if self.duration_s <= 0:
            raise ConfigError(f"--duration must be positive, got {self.duration_s}")
        if self.warmup_s < 0 or self.warmup_iters < 0:
            raise ConfigError("--warmup must not be negative")
        if self.min_iters < 1:
            raise ConfigError(f"--min-iters must be at least 1, got {self.min_iters}")
        if self.rounds < 1:
            raise ConfigError(f"--rounds must be at least 1, got {self.rounds}")


@dataclass(frozen=True)
class BenchConfig:
    target: str = "cpu"
    data: str | None = None  # evaluation set; default: the one named in the model's metadata
    limit: int | None = None  # evaluate on the first N images only (tests)
    batch: int = 1
    throughput_batch: int = 32
    threads: int | None = None
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    max_drop: float | None = None  # top-1 points against fp32
    energy: str = "auto"  # auto: measure where a meter is; on: refuse to bench without one; off: do not measure
    dla_core: int | None = None  # also bench the fp16 and int8 rows on this DLA core (static engines, GPU fallback)
    profile: bool = False  # also each layer's time, in a run of its own (PROFILE_RUNS runs at the latency batch)
    sweep: tuple[int, ...] = ()  # also latency and images/s at each of these batches (bench --sweep 1,2,4,8)

    def validate(self) -> None:
        self.latency.validate()
        if self.dla_core is not None and self.dla_core < 0:
            raise ConfigError(f"--dla-core must be 0 or more, got {self.dla_core}")
        if self.energy not in ENERGY_MODES:
            raise ConfigError(f"--energy must be one of {', '.join(ENERGY_MODES)}, got {self.energy!r}")
        _finite("max_drop", self.max_drop)
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        if self.batch < 1 or self.throughput_batch < 1:
            raise ConfigError("--batch and --throughput-batch must be at least 1")
        if max(self.batch, self.throughput_batch) > MAX_BATCH:
            raise ConfigError(f"--batch and --throughput-batch must be at most {MAX_BATCH} (the exported models' limit)")
        if self.sweep and (list(self.sweep) != sorted(set(self.sweep)) or not 1 <= self.sweep[0] <= self.sweep[-1]
                           <= MAX_BATCH or len(self.sweep) > MAX_SWEEP):
            raise ConfigError(f"--sweep takes 1 to {MAX_SWEEP} batch sizes, rising, from 1 to {MAX_BATCH}, for example "
                              f"1,2,4,8,16,32; got {','.join(map(str, self.sweep))}")
        if self.max_drop is not None and self.max_drop < 0:
            raise ConfigError(f"--max-drop must not be negative, got {self.max_drop}")

@dataclass(frozen=True)
class BuildConfig:
    """What ``edgeres build`` makes: one artifact for one target."""

    target: str
    precision: str | None = None  # default: the ONNX's own (int8 for Q/DQ models)
    dla_core: int | None = None
    batch: int = 1  # the batch the engine is optimized for (the profile's opt)
    max_batch: int = DEFAULT_MAX_BATCH
    allow_tf32: bool = False
    force_device: bool = False  # build a Jetson target's engine on another machine (recorded in the manifest)

    def validate(self) -> None:
        if not 1 <= self.batch <= self.max_batch:
            raise ConfigError(f"--batch must be between 1 and --max-batch ({self.max_batch}), got {self.batch}")
        if self.max_batch > MAX_BATCH:
            raise ConfigError(f"--max-batch {self.max_batch} is over {MAX_BATCH} (the exported models' limit)")

@dataclass(frozen=True)
class PipelineConfig:
    out: str = "runs/demo"
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    recipes: tuple[str, ...] = RECIPES
    bench: BenchConfig = field(default_factory=BenchConfig)
    calib_per_class: int = 50
    bench_torch: bool = True  # add plain PyTorch eager to the report, the baseline to beat


def from_dict(cls: type, d: dict[str, Any]) -> Any:
    """A config dataclass from its ``asdict`` form (nested configs included); unknown keys are an error."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field {unknown[0]!r}; is the other side's edgeres this version?")
    kw = dict(d)
    for name, nested in (("latency", LatencyConfig), ("train", TrainConfig), ("export", ExportConfig),
                         ("quant", QuantConfig), ("bench", BenchConfig)):
        if name in kw and isinstance(kw[name], dict) and name in known:
            kw[name] = from_dict(nested, kw[name])
    for k, v in kw.items():
        if isinstance(v, list):
            kw[k] = tuple(v)
    return cls(**kw)


__all__ = ["AMP_MODES", "AUGMENTS", "DEFAULT_DATASET", "DEFAULT_MAX_BATCH", "DEFAULT_OPSET", "MAX_BATCH", "MAX_OPSET",
           "MAX_SWEEP", "METHODS", "MIN_OPSET", "PLACEMENTS", "PRECISIONS", "RECIPES", "SCHEDULES", "SWEEP_KNEE",
           "BenchConfig", "BuildConfig", "ExportConfig", "LatencyConfig", "Method", "PipelineConfig", "Precision",
           "QuantConfig", "RecipeName", "TrainConfig", "asdict", "from_dict"]
