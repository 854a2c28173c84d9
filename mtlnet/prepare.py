"""The ``prepare`` stage: recordings to parquet graph tensors.

Writes, into one directory (swapped in whole):

- ``nodes.parquet``: one row per usable recording row: ``recording``,
  ``row`` (its index in the cleaned recording), ``time``, ``split`` and the
  scaled feature columns;
- ``windows.parquet``: one row per window: ``recording``, ``split``,
  ``first`` (its first row in ``nodes.parquet``), ``time`` (of its last
  step), ``label`` (at its last step), and for each target ``k`` the target
  ``target_k`` in physical units and ``target_k_scaled``, and the last
  observed value ``last_k`` / ``last_k_scaled`` (the persistence forecast);
- ``edges.parquet``: the edge set all windows share (``source``, ``target``);
- ``scaler.parquet``: the fitted scaler (``scope``, ``column``, ``mean``,
  ``scale``).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtlnet.config import DataConfig, GraphConfig
from mtlnet.errors import MtlnetError
from mtlnet.graph import window_edges
from mtlnet.io import atomic_dir, write_json, write_parquet
from mtlnet.recordings import Recording, numeric_columns, read_recording
from mtlnet.scaling import Scaler
from mtlnet.windows import SPLITS, segment_ids, split_of_rows, window_starts

logger = logging.getLogger(__name__)

NODES_FILE = "nodes.parquet"
WINDOWS_FILE = "windows.parquet"
EDGES_FILE = "edges.parquet"
SCALER_FILE = "scaler.parquet"


@dataclass(frozen=True)
class PreparedTables:
    """The four tables ``prepare`` writes, plus the figures of ``data.json``."""

    nodes: pd.DataFrame
    windows: pd.DataFrame
    edges: pd.DataFrame
    scaler: Scaler
    summary: dict[str, Any]


def find_recordings(directory: Path) -> list[Path]:
    """Every ``*.csv`` under ``directory``, sorted by path."""
    if not directory.is_dir():
        raise MtlnetError(f"{directory}: data directory not found (data.dir)")
    paths = sorted(p for p in directory.rglob("*") if p.suffix.lower() == ".csv")
    if not paths:
        raise MtlnetError(f"{directory}: no CSV file found (data.dir)")
    return paths


def build_tables(
    recordings: list[Recording], data: DataConfig, graph: GraphConfig
) -> PreparedTables:
    """Split, scale and window already-validated recordings."""
    names = [r.name for r in recordings]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise MtlnetError(f"two recordings are named {duplicate!r}; rename one file")
    span = data.window + data.horizon
    for recording in recordings:
        if len(recording.frame) < span:
            where = recording.path or f"recording {recording.name!r}"
            raise MtlnetError(
                f"{where}: {len(recording.frame)} usable rows, "
                f"shorter than one window and its target ({span} rows: "
                f"data.window + data.horizon)"
            )

    splits = {r.name: split_of_rows(len(r.frame), data) for r in recordings}
    columns = numeric_columns(data)
    scaler = Scaler.fit(
        {r.name: r.frame[splits[r.name] == SPLITS[0]] for r in recordings},
        columns,
        per_recording=data.scaler == "recording",
    )

    node_parts: list[pd.DataFrame] = []
    window_parts: list[pd.DataFrame] = []
    offset = 0
    for recording in recordings:
        frame, split = recording.frame, splits[recording.name]
        scaled = scaler.transform(recording.name, frame, columns)
        nodes = pd.DataFrame(
            {
                "recording": recording.name,
                "row": np.arange(len(frame), dtype=np.int64),
                "time": frame["time"].to_numpy(),
                "split": split.astype(str),
            }
        )
        for i, column in enumerate(columns):
            if column in data.features:
                nodes[column] = scaled[:, i]
        node_parts.append(nodes)

        segments = segment_ids(frame["time"], data.max_gap_s, split)
        starts = window_starts(segments, data.window, data.horizon)
        last = starts + data.window - 1
        target = last + data.horizon
        windows = pd.DataFrame(
            {
                "recording": recording.name,
                "split": split[starts].astype(str),
                "first": starts + offset,
                "time": frame["time"].to_numpy()[last],
                "label": frame["label"].to_numpy()[last].astype(np.int64),
            }
        )
        for i, column in enumerate(columns):
            if column not in data.targets:
                continue
            windows[f"target_{column}"] = frame[column].to_numpy()[target]
            windows[f"target_{column}_scaled"] = scaled[target, i]
            windows[f"last_{column}"] = frame[column].to_numpy()[last]
            windows[f"last_{column}_scaled"] = scaled[last, i]
        window_parts.append(windows)
        offset += len(frame)

    nodes_table = pd.concat(node_parts, ignore_index=True)
    windows_table = pd.concat(window_parts, ignore_index=True)
    edges = window_edges(data.window, graph)
    edges_table = pd.DataFrame({"source": edges[0], "target": edges[1]})
    summary = summarise(recordings, nodes_table, windows_table, edges.shape[1])
    return PreparedTables(nodes_table, windows_table, edges_table, scaler, summary)


def summarise(
    recordings: list[Recording],
    nodes: pd.DataFrame,
    windows: pd.DataFrame,
    num_edges: int,
) -> dict[str, Any]:
    """Counts for ``metrics/data.json``: numbers only, keyed by name."""

    def counts(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
        return {
            split: {
                "windows": int((frame["split"] == split).sum()),
                "positives": int(frame.loc[frame["split"] == split, "label"].sum()),
            }
            for split in SPLITS
        }

    missing: Counter[str] = Counter()
    per_recording: dict[str, Any] = {}
    for recording in recordings:
        missing.update(recording.missing_cells)
        of_recording = windows[windows["recording"] == recording.name]
        per_recording[recording.name] = {
            "rows": len(recording.frame),
            "dropped_rows": recording.dropped_rows,
            "duplicate_rows": recording.duplicate_rows,
            "missing_cells": dict(sorted(recording.missing_cells.items())),
            **counts(of_recording),
        }
    return {
        **counts(windows),
        "rows": len(nodes),
        "edges": num_edges,
        "dropped_rows": sum(r.dropped_rows for r in recordings),
        "duplicate_rows": sum(r.duplicate_rows for r in recordings),
        "missing_cells": dict(sorted(missing.items())),
        "recordings": per_recording,
    }


def prepare(
    *, data: DataConfig, graph: GraphConfig, output_dir: Path, metrics_path: Path
) -> dict[str, Any]:
    """Read every recording under ``data.dir`` and write the stage outputs.

    Everything is read and checked before anything is written, so a bad
    file leaves the previous outputs as they were.
    """
    paths = find_recordings(Path(data.dir))
    recordings = [read_recording(path, data) for path in paths]
    tables = build_tables(recordings, data, graph)
    for split in SPLITS:
        if tables.summary[split]["windows"] == 0:
            logger.warning("the %s split holds no window", split)

    with atomic_dir(output_dir) as tmp:
        write_parquet(tmp / NODES_FILE, tables.nodes)
        write_parquet(tmp / WINDOWS_FILE, tables.windows)
        write_parquet(tmp / EDGES_FILE, tables.edges)
        write_parquet(tmp / SCALER_FILE, tables.scaler.table)
    write_json(metrics_path, tables.summary)
    logger.info(
        "prepared %d recordings: %d rows, windows train %d / val %d / test %d",
        len(recordings),
        tables.summary["rows"],
        tables.summary["train"]["windows"],
        tables.summary["val"]["windows"],
        tables.summary["test"]["windows"],
    )
    return tables.summary
