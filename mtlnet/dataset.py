"""Loading the ``prepare`` outputs as tensors, one split at a time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mtlnet.config import DataConfig
from mtlnet.errors import MtlnetError
from mtlnet.io import read_table
from mtlnet.prepare import EDGES_FILE, NODES_FILE, SCALER_FILE, WINDOWS_FILE
from mtlnet.scaling import SCALER_COLUMNS, Scaler
from mtlnet.windows import SPLITS


@dataclass(frozen=True)
class WindowTensors:
    """The windows of one split.

    Shapes:
        x: ``[windows, window, channels]`` scaled features, plus the position
        of each step in ``[0, 1]`` as the last channel when
        ``data.position_encoding`` is on.
        edge_index: ``[2, num_edges]``, shared by every window.
        label: ``[windows]`` 0/1 as float.
        target: ``[windows, targets]`` scaled regression targets.
        last: ``[windows, targets]`` scaled last observed values.
    """

    x: torch.Tensor
    edge_index: torch.Tensor
    label: torch.Tensor
    target: torch.Tensor
    last: torch.Tensor
    windows: pd.DataFrame

    def __len__(self) -> int:
        return int(self.x.shape[0])


def input_channels(data: DataConfig) -> int:
    """Node feature count: the features, plus one for the position."""
    return len(data.features) + int(data.position_encoding)


def position_channel(window: int) -> torch.Tensor:
    """Each step's position in its window, from 0 to 1: ``[window]``."""
    return torch.arange(window).float() / (window - 1)


@dataclass(frozen=True)
class PreparedData:
    """The tables of ``stages/prepare/``, checked against ``data``."""

    nodes: pd.DataFrame
    windows: pd.DataFrame
    edge_index: torch.Tensor
    scaler: Scaler
    data: DataConfig

    @classmethod
    def load(cls, directory: Path, data: DataConfig) -> PreparedData:
        targets = [f"target_{k}" for k in data.targets]
        scaled = [f"{c}_scaled" for c in targets]
        lasts = [f"last_{k}" for k in data.targets]
        last_scaled = [f"{c}_scaled" for c in lasts]
        nodes = _read_table(
            directory / NODES_FILE,
            ["recording", "row", "time", "split", *data.features],
        )
        windows = _read_table(
            directory / WINDOWS_FILE,
            [
                "recording",
                "split",
                "first",
                "time",
                "label",
                *targets,
                *scaled,
                *lasts,
                *last_scaled,
            ],
        )
        edges = _read_table(directory / EDGES_FILE, ["source", "target"])
        scaler = Scaler(_read_table(directory / SCALER_FILE, list(SCALER_COLUMNS)))

        first = windows["first"].to_numpy()
        if len(first) and (first.min() < 0 or first.max() + data.window > len(nodes)):
            raise MtlnetError(
                f"{directory / WINDOWS_FILE}: column 'first' points past the "
                f"{len(nodes)} node rows for window {data.window}; run prepare again"
            )
        edge_index = torch.from_numpy(edges[["source", "target"]].to_numpy().T.copy())
        if edge_index.numel() and (
            edge_index.min() < 0 or edge_index.max() >= data.window
        ):
            raise MtlnetError(
                f"{directory / EDGES_FILE}: node ids outside [0, {data.window}); "
                "run prepare again"
            )
        return cls(nodes, windows, edge_index.long(), scaler, data)

    def split(self, name: str) -> WindowTensors:
        """The windows of split ``name``, gathered without a Python loop."""
        if name not in SPLITS:
            raise MtlnetError(f"unknown split {name!r}; allowed: {', '.join(SPLITS)}")
        windows = self.windows[self.windows["split"] == name].reset_index(drop=True)
        return self.tensors(windows)

    def tensors(self, windows: pd.DataFrame) -> WindowTensors:
        """Tensors for any subset of the window table."""
        data = self.data
        # copy=True: pandas hands out read-only arrays, which torch must not wrap.
        features = torch.from_numpy(
            self.nodes[list(data.features)].to_numpy(dtype=np.float32, copy=True)
        )
        first = windows["first"].to_numpy(dtype=np.int64, copy=True)
        index = torch.from_numpy(first)[:, None] + torch.arange(data.window)
        x = features[index]
        if data.position_encoding:
            position = position_channel(data.window).expand(len(windows), -1)
            x = torch.cat([x, position[..., None]], dim=-1)

        def column_block(names: list[str]) -> torch.Tensor:
            return torch.from_numpy(windows[names].to_numpy(np.float32, copy=True))

        return WindowTensors(
            x=x,
            edge_index=self.edge_index,
            label=torch.from_numpy(windows["label"].to_numpy(np.float32, copy=True)),
            target=column_block([f"target_{k}_scaled" for k in data.targets]),
            last=column_block([f"last_{k}_scaled" for k in data.targets]),
            windows=windows,
        )


def _read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    return read_table(
        path,
        columns,
        not_found="run `python -m mtlnet prepare`",
        missing="the table was written with other data params: run prepare again",
    )
