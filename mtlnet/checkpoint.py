"""Checkpoints: weights as a plain state dict, plus what rebuilds the model.

A checkpoint file holds ``{"state_dict": ..., "meta": ...}`` where ``meta``
is plain data (strings, numbers, lists, dicts): the architecture, its
config, the data and graph configs it was trained with, the decision
threshold and the seed. It is read with ``torch.load(weights_only=True)``,
so reading one never runs pickled code.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mtlnet.config import (
    ArchConfigs,
    DataConfig,
    GraphConfig,
    from_mapping,
    to_mapping,
)
from mtlnet.errors import MtlnetError, one_line
from mtlnet.graph import window_edges
from mtlnet.io import atomic_file
from mtlnet.models import MultiTaskModel, build_model

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    """A trained model and the settings it needs at inference."""

    model: MultiTaskModel
    architecture: str
    data: DataConfig
    graph: GraphConfig
    threshold: float
    seed: int
    meta: dict[str, Any]


def save_checkpoint(
    path: Path,
    *,
    model: MultiTaskModel,
    architecture: str,
    arch_config: object,
    data: DataConfig,
    graph: GraphConfig,
    threshold: float,
    seed: int,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``path`` atomically."""
    meta = {
        "format": FORMAT_VERSION,
        "architecture": architecture,
        "arch": to_mapping(arch_config),
        "data": to_mapping(data),
        "graph": to_mapping(graph),
        "threshold": float(threshold),
        "seed": int(seed),
        **(extra or {}),
    }
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"state_dict": state, "meta": meta}, buffer)
    with atomic_file(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_checkpoint(path: Path, *, architecture: str | None = None) -> Checkpoint:
    """Read ``path`` and rebuild its model in eval mode.

    Raises:
        MtlnetError: when the file is missing, truncated, not a checkpoint,
            or of another architecture than ``architecture``.
    """
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MtlnetError(
            f"{path}: checkpoint not found; run the train stage"
        ) from None
    except Exception as error:  # torch raises many types for a broken file
        detail = one_line(error, 160)
        raise MtlnetError(f"{path}: not a readable checkpoint ({detail})") from None
    if (
        not isinstance(content, dict)
        or not {"state_dict", "meta"} <= set(content)
        or not isinstance(content["meta"], dict)
    ):
        raise MtlnetError(f"{path}: not an mtlnet checkpoint (no state_dict and meta)")
    meta = content["meta"]
    if meta.get("format") != FORMAT_VERSION:
        raise MtlnetError(
            f"{path}: checkpoint format {meta.get('format')!r}, "
            f"expected {FORMAT_VERSION}"
        )
    found = meta["architecture"]
    if architecture is not None and found != architecture:
        raise MtlnetError(
            f"{path}: checkpoint of architecture {found!r}, expected {architecture!r}"
        )
    try:
        arch_type = type(ArchConfigs().get(found))
        arch_config = from_mapping(arch_type, meta["arch"], prefix="arch.")
        data = from_mapping(DataConfig, meta["data"], prefix="data.")
        graph = from_mapping(GraphConfig, meta["graph"], prefix="graph.")
    except MtlnetError as error:
        raise MtlnetError(
            f"{path}: checkpoint settings are invalid ({error})"
        ) from None
    model = model_for(found, arch_config, data, graph)
    try:
        model.load_state_dict(content["state_dict"], strict=True)
    except RuntimeError as error:
        detail = one_line(error, 160)
        raise MtlnetError(f"{path}: weights do not fit {found!r} ({detail})") from None
    model.eval()
    return Checkpoint(
        model=model,
        architecture=found,
        data=data,
        graph=graph,
        threshold=float(meta["threshold"]),
        seed=int(meta["seed"]),
        meta=meta,
    )


def model_for(
    architecture: str, arch_config: Any, data: DataConfig, graph: GraphConfig
) -> MultiTaskModel:
    """Build an untrained model for these data and graph settings."""
    from mtlnet.dataset import input_channels

    edge_index = torch.from_numpy(window_edges(data.window, graph))
    channels: list[int] = []
    if arch_config.residual:
        missing = [k for k in data.targets if k not in data.features]
        if missing:
            raise MtlnetError(
                f"arch.{architecture}.residual: target {missing[0]!r} is not among "
                "data.features, so its last value is not an input"
            )
        channels = [data.features.index(k) for k in data.targets]
    return build_model(
        architecture,
        arch_config,
        in_channels=input_channels(data),
        window=data.window,
        edge_index=edge_index,
        num_targets=len(data.targets),
        last_value_channels=channels,
        summary_channels=range(len(data.features)) if arch_config.summary else (),
    )


def checkpoint_path(train_dir: Path, architecture: str, seed: int) -> Path:
    """Where the train stage keeps one seed's checkpoint."""
    return train_dir / architecture / f"seed_{seed}.pt"
