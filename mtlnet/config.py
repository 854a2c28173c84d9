"""Typed, frozen views of ``params.yaml``.

``params.yaml`` is the one source of truth. It is read here, and only here,
into frozen dataclasses; every other module takes these objects (or plain
arguments) and never reads the file itself. Unknown keys, wrong types and
values out of range end in an :class:`MtlnetError` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from mtlnet.errors import MtlnetError, one_line

ARCHITECTURES = ("stl", "hardsharing", "mmoe", "crossstitch", "ple", "attention")
LABEL_PREFIX = "lab_"
PACKED_LABEL = "Label"


@dataclass(frozen=True)
class DataConfig:
    """Which recordings to read and how to cut them into windows."""

    dir: str = "dataset/fcciq"
    time_column: str = "Time"
    features: tuple[str, ...] = ("RSRP", "RSRQ", "SINR")
    targets: tuple[str, ...] = ("RSRP", "RSRQ", "SINR")
    label: str = "lab_inf"
    window: int = 35
    horizon: int = 1
    max_gap_s: float = 5.0
    train_fraction: float = 0.8
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    scaler: Literal["global", "recording"] = "global"
    missing_values: tuple[str, ...] = ("-", "")
    position_encoding: bool = True

    def __post_init__(self) -> None:
        _require(self.window >= 2, "data.window", "must be at least 2")
        _require(self.horizon >= 1, "data.horizon", "must be at least 1")
        _require(self.max_gap_s > 0, "data.max_gap_s", "must be positive")
        fractions = (self.train_fraction, self.val_fraction, self.test_fraction)
        _require(
            all(0 < f < 1 for f in fractions),
            "data.*_fraction",
            "each of train, val and test fractions must lie in (0, 1)",
        )
        _require(
            math.isclose(sum(fractions), 1.0, abs_tol=1e-9),
            "data.*_fraction",
            f"train, val and test fractions must sum to 1, not {sum(fractions):g}",
        )
        _require(len(self.features) > 0, "data.features", "must name a column")
        _require(len(self.targets) > 0, "data.targets", "must name a column")
        for key, columns in (
            ("data.features", self.features),
            ("data.targets", self.targets),
        ):
            _require(len(set(columns)) == len(columns), key, "names a column twice")
            for column in columns:
                _require(
                    not is_label_column(column) and column != self.label,
                    key,
                    f"{column!r} is a label column and can never be a model input",
                )
            _require(
                self.time_column not in columns,
                key,
                f"the time column {self.time_column!r} is not a KPI column",
            )


@dataclass(frozen=True)
class GraphConfig:
    """The edge set shared by every window graph."""

    offsets: tuple[int, ...] = (1, 2)
    directed: bool = False

    def __post_init__(self) -> None:
        _require(len(self.offsets) > 0, "graph.offsets", "must list an offset")
        _require(all(o >= 1 for o in self.offsets), "graph.offsets", "must be >= 1")
        _require(
            len(set(self.offsets)) == len(self.offsets),
            "graph.offsets",
            "lists an offset twice",
        )


@dataclass(frozen=True)
class TrainConfig:
    """The training loop shared by every architecture."""

    epochs: int = 300
    patience: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    weighting: Literal["equal", "uncertainty", "dwa"] = "equal"
    dwa_temperature: float = 2.0
    class_weight: Literal["balanced", "none"] = "balanced"
    grad_clip: float = 5.0
    # "relative": each KPI's squared error is divided by the persistence
    # forecast's mean squared error on the training split, so every
    # regression loss is in units of persistence (1 = no better than it).
    # "scaled": the plain squared error of the scaled values.
    regression_loss: Literal["relative", "scaled"] = "relative"
    # Torch threads per training process, and processes training seeds at
    # once.
    threads: int = 1
    workers: int = 2

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "train.epochs", "must be at least 1")
        _require(self.patience >= 1, "train.patience", "must be at least 1")
        _require(self.batch_size >= 1, "train.batch_size", "must be at least 1")
        _require(self.lr > 0, "train.lr", "must be positive")
        _require(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _require(self.dwa_temperature > 0, "train.dwa_temperature", "must be > 0")
        _require(self.grad_clip > 0, "train.grad_clip", "must be positive")
        _require(self.threads >= 1, "train.threads", "must be at least 1")
        _require(self.workers >= 1, "train.workers", "must be at least 1")


@dataclass(frozen=True)
class BackboneConfig:
    """Sizes every architecture shares: GCN width and depth, towers."""

    hidden: int = 64
    layers: int = 2
    # Dropout in the towers, after their hidden layer.
    dropout: float = 0.3
    tower_hidden: int = 32
    # Dropout after every GCN layer. Off by default: on the validation split
    # it made no difference beyond the seed spread, and drawing a mask for
    # every node of every layer took a quarter to a half of an epoch.
    gcn_dropout: float = 0.0
    # Forecast the change from the last observed value (needs every target
    # among the features) instead of the value itself.
    residual: bool = True
    # Every tower also reads six summary statistics of each input KPI over
    # the window (see mtlnet.models.backbone.window_summary).
    summary: bool = True

    def __post_init__(self) -> None:
        _require(self.hidden >= 1, "arch.*.hidden", "must be at least 1")
        _require(self.layers >= 1, "arch.*.layers", "must be at least 1")
        _require(0 <= self.dropout < 1, "arch.*.dropout", "must lie in [0, 1)")
        _require(0 <= self.gcn_dropout < 1, "arch.*.gcn_dropout", "must lie in [0, 1)")
        _require(self.tower_hidden >= 1, "arch.*.tower_hidden", "must be >= 1")


@dataclass(frozen=True)
class STLConfig(BackboneConfig):
    """One independent GCN and head per task."""


@dataclass(frozen=True)
class HardSharingConfig(BackboneConfig):
    """One shared GCN, one tower per task."""


@dataclass(frozen=True)
class MMoEConfig(BackboneConfig):
    """Shared GCN experts mixed by one softmax gate per task."""

    experts: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.experts >= 1, "arch.mmoe.experts", "must be at least 1")


@dataclass(frozen=True)
class CrossStitchConfig(BackboneConfig):
    """One GCN column per task, mixed by cross-stitch units."""

    stitch_after: tuple[int, ...] = (0, 1)
    stitch_self: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(
            all(0 <= i < self.layers for i in self.stitch_after),
            "arch.crossstitch.stitch_after",
            f"layer indices must lie in [0, {self.layers})",
        )
        _require(
            0 < self.stitch_self <= 1,
            "arch.crossstitch.stitch_self",
            "must lie in (0, 1]",
        )


@dataclass(frozen=True)
class PLEConfig(BackboneConfig):
    """Progressive layered extraction: task and shared experts per level."""

    levels: int = 2
    shared_experts: int = 3
    task_experts: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.levels >= 1, "arch.ple.levels", "must be at least 1")
        _require(self.shared_experts >= 1, "arch.ple.shared_experts", "must be >= 1")
        _require(self.task_experts >= 1, "arch.ple.task_experts", "must be >= 1")


@dataclass(frozen=True)
class AttentionConfig(BackboneConfig):
    """A shared GCN read out by task-specific attention over its nodes."""

    heads: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.heads >= 1, "arch.attention.heads", "must be at least 1")
        _require(
            self.hidden % self.heads == 0,
            "arch.attention.heads",
            f"must divide hidden ({self.hidden})",
        )


@dataclass(frozen=True)
class ArchConfigs:
    """One block per architecture."""

    stl: STLConfig = field(default_factory=STLConfig)
    hardsharing: HardSharingConfig = field(default_factory=HardSharingConfig)
    mmoe: MMoEConfig = field(default_factory=MMoEConfig)
    crossstitch: CrossStitchConfig = field(default_factory=CrossStitchConfig)
    ple: PLEConfig = field(default_factory=PLEConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)

    def get(self, name: str) -> BackboneConfig:
        require_architecture(name)
        config: BackboneConfig = getattr(self, name)
        return config


@dataclass(frozen=True)
class ProfileConfig:
    """How latency and throughput are timed."""

    warmup: int = 20
    runs: int = 200
    threads: int = 1
    throughput_batch: int = 1024
    throughput_runs: int = 5

    def __post_init__(self) -> None:
        _require(self.warmup >= 0, "profile.warmup", "must be >= 0")
        _require(self.runs >= 2, "profile.runs", "must be at least 2")
        _require(self.threads >= 1, "profile.threads", "must be at least 1")
        _require(self.throughput_batch >= 1, "profile.throughput_batch", "must be >= 1")
        _require(self.throughput_runs >= 1, "profile.throughput_runs", "must be >= 1")


@dataclass(frozen=True)
class Params:
    """Everything in ``params.yaml``."""

    model: str = "ple"
    models: tuple[str, ...] = ARCHITECTURES
    seed: int = 50
    seeds: int = 3
    data: DataConfig = field(default_factory=DataConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    arch: ArchConfigs = field(default_factory=ArchConfigs)
    profile: ProfileConfig = field(default_factory=ProfileConfig)

    def __post_init__(self) -> None:
        _require(len(self.models) > 0, "models", "must list an architecture")
        for name in self.models:
            require_architecture(name, key="models")
        _require(
            len(set(self.models)) == len(self.models), "models", "lists a name twice"
        )
        _require(
            self.model in self.models,
            "model",
            f"{self.model!r} is not in models; allowed: {', '.join(self.models)}",
        )
        _require(self.seeds >= 1, "seeds", "must be at least 1")

    def seed_list(self) -> list[int]:
        """The seeds every architecture is trained with: seed, seed+1, ..."""
        return [self.seed + k for k in range(self.seeds)]


def is_label_column(column: str) -> bool:
    """Whether a column holds ground truth (``lab_*`` or ``Label``)."""
    return column.startswith(LABEL_PREFIX) or column == PACKED_LABEL


def require_architecture(name: str, key: str = "--model") -> None:
    if name not in ARCHITECTURES:
        raise MtlnetError(
            f"{key}: unknown architecture {name!r}; allowed: {', '.join(ARCHITECTURES)}"
        )


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate ``params.yaml``."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise MtlnetError(f"{path}: parameter file not found") from None
    except OSError as error:
        raise MtlnetError(f"{path}: cannot be read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise MtlnetError(f"{path}: not a text file (not UTF-8)") from None
    except yaml.YAMLError as error:
        raise MtlnetError(f"{path}: not valid YAML ({one_line(error)})") from None
    if raw is None:
        raw = {}
    try:
        return from_mapping(Params, raw, prefix="")
    except MtlnetError as error:
        raise MtlnetError(f"{path}: {error}") from None


T = TypeVar("T")


def from_mapping(cls: type[T], raw: object, prefix: str) -> T:
    """Build the dataclass ``cls`` from ``raw``, checking keys and types."""
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, Mapping):
        raise MtlnetError(f"{where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields), key=str)
    if unknown:
        raise MtlnetError(
            f"unknown key {prefix}{unknown[0]}; allowed: {', '.join(sorted(fields))}"
        )
    values = {
        name: _convert(hints[name], value, f"{prefix}{name}")
        for name, value in raw.items()
    }
    return cls(**values)


def to_mapping(config: object) -> dict[str, Any]:
    """The plain-data form of a config, for checkpoints and JSON."""
    return _plain(dataclasses.asdict(config))  # type: ignore[call-overload]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _convert(hint: Any, value: object, key: str) -> Any:
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, prefix=f"{key}.")  # type: ignore[arg-type]
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            choices = ", ".join(str(a) for a in allowed)
            raise MtlnetError(f"{key}: {value!r} is not one of {choices}")
        return value
    if origin is tuple:
        (item,) = (a for a in get_args(hint) if a is not Ellipsis)
        if not isinstance(value, list | tuple):
            raise MtlnetError(f"{key}: expected a list, got {_type_name(value)}")
        return tuple(_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (types.UnionType, typing.Union):
        raise TypeError(f"unions are not supported in configs ({key})")
    if hint is bool:
        if not isinstance(value, bool):
            raise MtlnetError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MtlnetError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MtlnetError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise MtlnetError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise MtlnetError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {key}")


def _type_name(value: object) -> str:
    return type(value).__name__


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise MtlnetError(f"{key}: {message}")
