"""Cutting recordings into splits, segments and windows.

A window is ``window`` consecutive rows of one recording. Its classification
target is the label of its last row; its regression target is the row
``horizon`` steps after the last. A window and its target never cross a
split, a recording boundary, or a time gap longer than ``max_gap_s``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mtlnet.config import DataConfig

SPLITS = ("train", "val", "test")


def split_ends(num_rows: int, data: DataConfig) -> tuple[int, int]:
    """End rows (exclusive) of the train and validation parts, in time order.

    The first ``train_fraction`` of the rows train, the next
    ``val_fraction`` validate, the rest test (floors, as earlier work did).
    """
    # The small epsilon keeps 0.8 * n from flooring below an exact integer.
    train_end = math.floor(num_rows * data.train_fraction + 1e-9)
    val_end = math.floor(num_rows * (data.train_fraction + data.val_fraction) + 1e-9)
    return train_end, val_end


def split_of_rows(num_rows: int, data: DataConfig) -> np.ndarray:
    """The split name of every row, ``[num_rows]`` of str."""
    train_end, val_end = split_ends(num_rows, data)
    split = np.full(num_rows, SPLITS[2], dtype=object)
    split[:train_end] = SPLITS[0]
    split[train_end:val_end] = SPLITS[1]
    return split


def segment_ids(
    times: pd.Series, max_gap_s: float, split: np.ndarray | None = None
) -> np.ndarray:
    """Number the runs of rows with no gap over ``max_gap_s`` (and one split)."""
    gaps = times.diff().dt.total_seconds().to_numpy()
    breaks = gaps > max_gap_s
    if split is not None:
        breaks |= np.concatenate([[False], split[1:] != split[:-1]])
    breaks[:1] = False
    return np.cumsum(breaks)


def window_starts(segments: np.ndarray, window: int, horizon: int) -> np.ndarray:
    """Rows where a window starts whose rows and target share one segment.

    Segments are contiguous runs, so the first row and the target row being
    in the same segment means every row between them is too.
    """
    span = window - 1 + horizon
    if len(segments) <= span:
        return np.zeros(0, dtype=np.int64)
    first = segments[:-span]
    target = segments[span:]
    return np.flatnonzero(first == target).astype(np.int64)
