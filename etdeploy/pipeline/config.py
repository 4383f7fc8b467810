"""Run configuration: one TOML file, frozen dataclasses shared by the Python API and the CLI.

Unknown keys and wrong types are errors that name the TOML field. ``etdeploy config init`` writes
:data:`DEFAULT_TOML`, the commented default.
"""

from __future__ import annotations

import dataclasses
import keyword
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etdeploy.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    source: str = "bundled"          # "bundled", an MSL-format root or an ImageFolder root
    grouping: str = "paper5"         # paper5 | msl25 (MSL data)
    recipe: str = "paper"            # paper (seeded stratified 80/10/10) | sol (official split)
    cap: int | None = None           # max images per class (paper recipe)
    seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "alexnet-mini"
    load: str | None = None          # a saved model directory instead of training
    input_size: int | None = None
    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    # TOML key ``import``: a model trained elsewhere instead of training (an .onnx file, or a weights file
    # .safetensors/.pt/.pth for the model ``arch`` builds), imported with this normalisation of its input
    import_: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scale: float | None = None


@dataclass(frozen=True)
class RankingConfig:
    layers: tuple[str, ...] = ("flatten", "dense1", "dense2")
    steps: int = 32
    method: str = "gausslegendre"
    split: str = "train"
    batch_size: int = 16
    max_images: int | None = None    # rank on at most this many images (class-stratified prefix)


@dataclass(frozen=True)
class SweepConfig:
    schedules: tuple[str, ...] = ("bottom-first", "top-first", "random")
    layer: str = "dense2"
    points: int = 21                 # grid points from 0 to all neurons masked
    split: str = "test"
    class_ea: bool = True            # per-class EA pruning curves for every class


@dataclass(frozen=True)
class PruneConfig:
    schedule: str = "bottom-first"
    percents: tuple[float, ...] = (50.0, 95.0)
    layers: tuple[str, ...] = ("flatten", "dense1", "dense2")
    finetune_epochs: int = 10
    export_percent: float = 95.0     # which pruned model is sliced, exported and explained


@dataclass(frozen=True)
class ParityConfig:
    tolerance: float = 1e-5
    split: str = "test"


@dataclass(frozen=True)
class OcclusionConfig:
    images_per_class: int = 1
    patch: int = 16
    stride: int = 4
    mode: str = "exact"              # naive | exact | approx
    target_ssim: float = 0.9
    ssim_margin: float = 0.05
    map_kind: str = "prob"           # prob | drop | logit | logprob


# Keys added after runs were first written: at their default they are left out of the configuration
# hash, so a run started before they existed can still be resumed with the same settings.
LATER_KEYS_AT_DEFAULT = {("occlusion", "ssim_margin"): 0.05, ("occlusion", "map_kind"): "prob"}
# Keys of the import route: left out of the configuration's dictionary (and so of its hash and the
# report) while unset, so that every configuration without an import reads as it always did.
UNSET_IMPORT_KEYS = ("import_", "mean", "std", "scale")


def toml_key(field_name: str) -> str:
    """A field named after a Python keyword ends in ``_`` (``import_``); its TOML key is the keyword."""
    return field_name[:-1] if field_name.endswith("_") and keyword.iskeyword(field_name[:-1]) else field_name


@dataclass(frozen=True)
class TargetsConfig:
    ids: tuple[str, ...] = ("all",)


@dataclass(frozen=True)
class PackageConfig:
    enabled: bool = True             # build the flight bundle (C source, golden vectors) of the sliced export
    vectors: int = 2                 # golden vectors checked (each runs under qemu-user on every cross ISA)


@dataclass(frozen=True)
class EvaluateConfig:
    split: str = "test"              # every form of the model (original, pruned, sliced, ONNX, int8, C) on this split
    c_model: bool = False            # the C form: the bundle's C built with the host gcc, run on the whole split


@dataclass(frozen=True)
class RobustnessConfig:
    enabled: bool = True
    perturbations: tuple[str, ...] = ("noise", "brightness", "defocus", "motion_blur", "jpeg", "contrast")
    severities: tuple[int, ...] = (1, 2, 3)  # of 1..5; 0 (the clean image) is always evaluated
    split: str = "test"
    max_images: int | None = None    # at most this many images (class-stratified prefix)
    seed: int = 0


@dataclass(frozen=True)
class StabilityConfig:
    enabled: bool = True             # occlusion maps of the original vs the pruned model (SSIM)


@dataclass(frozen=True)
class AcceptanceConfig:
    max_accuracy_drop: float | None = 0.05   # deployed vs original test accuracy, as a fraction (0.05 = 5 points)
    min_accuracy: float | None = None        # deployed model's test accuracy at least this
    must_fit: tuple[str, ...] = ()           # target ids the deployed model must fit
    deadlines: tuple[str, ...] = ()          # "target=seconds": latency bound per image on that target
    require_parity: bool = True              # every implementation pair agrees within [parity] tolerance


@dataclass(frozen=True)
class CompressConfig:
    target: str | None = None        # a target id: search the pruning/precision space for the best model that fits
    min_accuracy: float | None = None    # least accuracy on `split` (fraction)
    max_latency_s: float | None = None   # latency limit per image (the fit's estimate), seconds
    criteria: tuple[str, ...] = ()       # empty: bottom-first and every criterion the ranking has statistics for
    precisions: tuple[str, ...] = ("fp32", "int8")
    percents: tuple[float, ...] = (0.0, 50.0, 75.0, 90.0, 95.0, 98.0)  # coarse grid per layer
    refine_rounds: int = 2
    finetune_epochs: int = 0             # fine-tuning of the finalists (masks held)
    max_finetune: int = 3                # finalists: fitting candidates on the Pareto front
    split: str = "val"                   # the split candidates are scored on


@dataclass(frozen=True)
class RunConfig:
    name: str = "etdeploy-run"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    parity: ParityConfig = field(default_factory=ParityConfig)
    occlusion: OcclusionConfig = field(default_factory=OcclusionConfig)
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    package: PackageConfig = field(default_factory=PackageConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)
    stability: StabilityConfig = field(default_factory=StabilityConfig)
    acceptance: AcceptanceConfig = field(default_factory=AcceptanceConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as TOML would spell it (``[model] import``; import keys only when set; the
        sections added later only when some key differs from its default)."""
        out = dataclasses.asdict(self)
        model = out["model"]
        for key in UNSET_IMPORT_KEYS:
            if model[key] is None:
                del model[key]
        for section in LATER_SECTIONS:
            if out[section] == dataclasses.asdict(type(getattr(self, section))()):
                del out[section]
        return {section: {toml_key(k): v for k, v in value.items()} if isinstance(value, dict) else value
                for section, value in out.items()}


DEFAULT_TOML = '''# etdeploy run configuration. Every key is optional; these are the defaults.
name = "etdeploy-run"
seed = 0                         # global seed (recorded in the report)

[data]
source = "bundled"               # "bundled" (MSL subset shipped with etdeploy), an MSL root or an ImageFolder root
grouping = "paper5"              # paper5 (the paper's classes) | msl25 (all MSL classes)
recipe = "paper"                 # paper: seeded stratified 80/10/10 | sol: official sol-based split
# cap = 300                      # at most this many images per class (the paper used ~300)
seed = 0

[model]
arch = "alexnet-mini"            # alexnet | alexnet-mini | vgg16 | sequential-cnn | package.module:factory
# load = "path/to/model-dir"     # use a saved model instead of training one
# import = "path/to/model.onnx"  # import a model trained elsewhere instead of training one: an ONNX file, or
#                                # weights (.safetensors/.pt/.pth state dict) of the model `arch` builds
# scale = 255.0                  # import: the model's input is uint8 / scale (a Keras Rescaling model: 255) ...
# mean = [0.485, 0.456, 0.406]   # ... or (uint8 / 255 - mean) / std, per channel
# std = [0.229, 0.224, 0.225]
# input_size = 64                # square input size (default: the architecture's own)
epochs = 30                      # training epochs (best-on-validation checkpoint is kept)
lr = 0.001                       # Adam learning rate (the paper's)
batch_size = 32
seed = 0

[ranking]
layers = ["flatten", "dense1", "dense2"]
steps = 32                       # quadrature points of the integrated-gradients integral
method = "gausslegendre"         # gausslegendre | riemann_left | riemann_right | riemann_middle | riemann_trapezoid
split = "train"
batch_size = 16
# max_images = 200

[sweep]
schedules = ["bottom-first", "top-first", "random"]
layer = "dense2"                 # the layer swept neuron by neuron (the paper's single-layer experiments)
points = 21
split = "test"
class_ea = true                  # per-class EA pruning curves (paper Fig. 11) for every class

[prune]
schedule = "bottom-first"
percents = [50.0, 95.0]          # masking % applied to each layer below
layers = ["flatten", "dense1", "dense2"]
finetune_epochs = 10             # retraining with the masks held
export_percent = 95.0            # the pruned model that is sliced, exported, checked and explained

[parity]
tolerance = 1e-5                 # max |delta logit| between masked torch, sliced torch, ONNX, simplified ONNX
split = "test"

[occlusion]
images_per_class = 1
patch = 16
stride = 4
mode = "exact"                   # naive | exact | approx
target_ssim = 0.9                # approx: SSIM the tuned maps must reach ...
ssim_margin = 0.05               # ... plus this margin on the tuning images (headroom for other images)
map_kind = "prob"                # prob | drop | logit | logprob (logit: a confident model's prob maps are flat)

[targets]
ids = ["all"]                    # profile ids (`etdeploy targets list`), .toml paths, or "all"

[package]
enabled = true                   # the flight bundle (C99 source, golden vectors, cross checks) of the sliced export
vectors = 2                      # golden vectors (each runs under qemu-user on every cross ISA installed)

[evaluate]
split = "test"                   # every form of the model (original, pruned, sliced, ONNX, int8, C) on this split
c_model = false                  # true: also the C form (the flight bundle's C, host gcc) on every image (~10 s)

[robustness]
enabled = true
perturbations = ["noise", "brightness", "defocus", "motion_blur", "jpeg", "contrast"]
severities = [1, 2, 3]           # graded severities 1..5 (0, the clean image, is always evaluated)
split = "test"
# max_images = 100               # at most this many images (class-stratified prefix)
seed = 0

[stability]
enabled = true                   # occlusion maps of the original vs the pruned model, and their SSIM

[acceptance]
max_accuracy_drop = 0.05         # deployed vs original test accuracy (fraction: 0.05 = 5 points)
# min_accuracy = 0.8             # the deployed model's test accuracy at least this
must_fit = []                    # target ids the deployed model must fit
deadlines = []                   # "target=seconds" latency bound per image, e.g. ["rad750=2.0"]
require_parity = true            # the parity check must pass (every pair within [parity] tolerance)

[compress]
# target = "stm32h7"             # search pruning percent, layers and precision for the best model that fits;
#                                # the export, parity, explain... stages then take the chosen model
# min_accuracy = 0.8             # least accuracy on `split` (fraction)
# max_latency_s = 2.0            # latency limit per image (the fit's MACC / sustained MAC/s estimate)
criteria = []                    # empty: bottom-first and every criterion the ranking has statistics for
precisions = ["fp32", "int8"]    # int8: static QDQ, measured for the finalists
percents = [0.0, 50.0, 75.0, 90.0, 95.0, 98.0]   # coarse grid of masking % per layer (every combination)
refine_rounds = 2                # coarse-to-fine rounds around the best fitting point
finetune_epochs = 0              # fine-tune the finalists with the masks held
max_finetune = 3                 # finalists: fitting candidates on the Pareto front
split = "val"                    # the split candidates are scored on (test accuracy is reported)
'''

_SECTIONS = {"data": DataConfig, "model": ModelConfig, "ranking": RankingConfig, "sweep": SweepConfig,
             "prune": PruneConfig, "parity": ParityConfig, "occlusion": OcclusionConfig, "targets": TargetsConfig,
             "package": PackageConfig, "evaluate": EvaluateConfig, "robustness": RobustnessConfig,
             "stability": StabilityConfig, "acceptance": AcceptanceConfig, "compress": CompressConfig}
# Sections added after runs were first written: left out of the configuration's dictionary (and so of its hash)
# while every key is at its default, so a run started before they existed can still be resumed.
LATER_SECTIONS = ("package", "evaluate", "robustness", "stability", "acceptance", "compress")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list")
        return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    keys = {toml_key(fld.name): fld.name for fld in dataclasses.fields(cls)}  # TOML key -> field
    unknown = sorted(set(raw) - set(keys))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(f'{where}{k}' for k in unknown)}; "
                          f"valid: {', '.join(sorted(keys))}")
    kwargs = {}
    for raw_key, value in raw.items():
        key = keys[raw_key]
        if key in _SECTIONS and cls is RunConfig:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table")
            kwargs[key] = _build(_SECTIONS[key], value, f"{key}.")
        else:
            kwargs[key] = _coerce(value, hints[key], f"{where}{raw_key}")
    return cls(**kwargs)


def _deadlines_ok(deadlines: tuple[str, ...]) -> bool:
    from etdeploy.assurance.acceptance import parse_deadlines

    try:
        parse_deadlines(deadlines)
    except ValueError:
        return False
    return True


def validate(config: RunConfig) -> RunConfig:
    from etdeploy.vocab import (
        GROUPINGS,
        MAP_KINDS,
        MAX_SEVERITY,
        OCCLUSION_MODES,
        PERTURBATIONS,
        QUADRATURE_METHODS,
        SPLIT_RECIPES,
        SPLITS,
    )

    checks = [
        (config.data.grouping in GROUPINGS, f"data.grouping must be one of {', '.join(GROUPINGS)}"),
        (config.data.recipe in SPLIT_RECIPES, f"data.recipe must be one of {', '.join(SPLIT_RECIPES)}"),
        (config.data.cap is None or config.data.cap >= 1, "data.cap must be >= 1"),
        (config.model.epochs >= 0, "model.epochs must be >= 0"),
        (config.model.lr > 0, "model.lr must be > 0"),
        (config.model.batch_size >= 1, "model.batch_size must be >= 1"),
        (config.model.import_ is None or config.model.load is None, "model.import and model.load exclude each other"),
        (config.model.import_ is not None or (config.model.mean, config.model.std, config.model.scale) == (None,) * 3,
         "model.mean, model.std and model.scale are the normalisation of an imported model: set model.import"),
        (config.ranking.steps >= 1, "ranking.steps must be >= 1"),
        (len(config.ranking.layers) >= 1, "ranking.layers must name at least one layer"),
        (config.ranking.split in SPLITS, "ranking.split must be train, val or test"),
        (config.ranking.method in QUADRATURE_METHODS,
         f"ranking.method must be one of {', '.join(QUADRATURE_METHODS)}"),
        (config.sweep.points >= 2, "sweep.points must be >= 2"),
        (config.sweep.split in SPLITS, "sweep.split must be train, val or test"),
        (config.parity.split in SPLITS, "parity.split must be train, val or test"),
        (all(0 <= p < 100 for p in config.prune.percents), "prune.percents must be in [0, 100)"),
        (config.prune.export_percent in config.prune.percents, "prune.export_percent must be one of prune.percents"),
        (config.prune.finetune_epochs >= 0, "prune.finetune_epochs must be >= 0"),
        (config.parity.tolerance > 0, "parity.tolerance must be > 0"),
        (config.occlusion.patch >= 1, "occlusion.patch must be >= 1"),
        (config.occlusion.stride >= 1, "occlusion.stride must be >= 1"),
        (config.occlusion.mode in OCCLUSION_MODES, f"occlusion.mode must be one of {', '.join(OCCLUSION_MODES)}"),
        (0 < config.occlusion.target_ssim <= 1, "occlusion.target_ssim must be in (0, 1]"),
        (0 <= config.occlusion.ssim_margin < 1, "occlusion.ssim_margin must be in [0, 1)"),
        (config.occlusion.map_kind in MAP_KINDS, f"occlusion.map_kind must be one of {', '.join(MAP_KINDS)}"),
        (config.occlusion.images_per_class >= 0, "occlusion.images_per_class must be >= 0"),
        (config.package.vectors >= 1, "package.vectors must be >= 1"),
        (config.evaluate.split in SPLITS, "evaluate.split must be train, val or test"),
        (config.robustness.split in SPLITS, "robustness.split must be train, val or test"),
        (all(1 <= s <= MAX_SEVERITY for s in config.robustness.severities),
         f"robustness.severities must be in 1..{MAX_SEVERITY} (0, the clean image, is always included)"),
        (len(config.robustness.perturbations) >= 1 and all(p in PERTURBATIONS for p in config.robustness.perturbations),
         f"robustness.perturbations must name at least one of {', '.join(PERTURBATIONS)}"),
        (config.robustness.seed >= 0, "robustness.seed must be >= 0"),
        (config.robustness.max_images is None or config.robustness.max_images >= 1, "robustness.max_images must be >= 1"),
        (config.acceptance.max_accuracy_drop is None or 0 <= config.acceptance.max_accuracy_drop <= 1,
         "acceptance.max_accuracy_drop must be in [0, 1] (a fraction: 0.05 = 5 points)"),
        (config.acceptance.min_accuracy is None or 0 <= config.acceptance.min_accuracy <= 1,
         "acceptance.min_accuracy must be in [0, 1]"),
        (config.compress.min_accuracy is None or 0 <= config.compress.min_accuracy <= 1,
         "compress.min_accuracy must be in [0, 1] (a fraction)"),
        (config.compress.max_latency_s is None or config.compress.max_latency_s > 0, "compress.max_latency_s must be > 0"),
        (len(config.compress.precisions) >= 1 and set(config.compress.precisions) <= {"fp32", "int8"},
         "compress.precisions must be fp32 and/or int8"),
        (len(config.compress.percents) >= 1 and all(0 <= p < 100 for p in config.compress.percents),
         "compress.percents must be masking percentages in [0, 100)"),
        (config.compress.refine_rounds >= 0 and config.compress.finetune_epochs >= 0,
         "compress.refine_rounds and compress.finetune_epochs must be >= 0"),
        (config.compress.max_finetune >= 1, "compress.max_finetune must be >= 1"),
        (config.compress.split in SPLITS, "compress.split must be train, val or test"),
        (_deadlines_ok(config.acceptance.deadlines),
         "acceptance.deadlines entries must be \"target=seconds\" with seconds > 0, e.g. \"rad750=2.0\""),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return config


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    return validate(_build(RunConfig, raw, ""))


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("configuration file does not exist", path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid TOML: {exc}", path) from exc
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(exc.message, path) from exc


def demo_config() -> RunConfig:
    """The `etdeploy demo` settings: the whole pipeline on the bundled data in about a minute on 2 cores."""
    return RunConfig(
        name="demo",
        model=ModelConfig(arch="alexnet-mini", epochs=30),
        ranking=RankingConfig(steps=16, batch_size=32),
        prune=PruneConfig(percents=(50.0, 95.0), finetune_epochs=8),
        occlusion=OcclusionConfig(images_per_class=1, patch=8, stride=2, mode="exact"),
        robustness=RobustnessConfig(severities=(1, 3), max_images=30),  # 13 evaluations of 30 images per form
    )
