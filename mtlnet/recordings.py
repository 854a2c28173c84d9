"""Reading and validating one UE measurement recording (a CSV file).

A recording is a CSV with a time column, KPI columns and, for training, a
0/1 label column. :func:`read_recording` returns its rows ordered by time,
with these rules, which ``prepare`` and ``predict`` share:

- Cells equal to one of ``data.missing_values`` (after stripping blanks) are
  missing. A row missing its time, a feature, a target or the label cannot
  be used and is dropped; the drops are counted per column.
- Any other text in a numeric column, a time that does not parse, or a
  label outside {0, 1} is an error naming the file, the column and the line.
- Rows are sorted by time (stably). Rows that share a timestamp are logged
  twice for one instant; the last one logged is kept, and the others are
  counted as duplicates.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mtlnet.config import DataConfig
from mtlnet.errors import MtlnetError, one_line

# A CSV line number is the frame index plus the header line, plus one.
_FIRST_DATA_LINE = 2


@dataclass
class Recording:
    """The usable rows of one recording, in time order."""

    name: str
    frame: pd.DataFrame
    missing_cells: Counter[str] = field(default_factory=Counter)
    dropped_rows: int = 0
    duplicate_rows: int = 0
    path: Path | None = None
    # CSV line number of each dropped row -> the columns it was missing.
    dropped_lines: dict[int, list[str]] = field(default_factory=dict)


def required_columns(data: DataConfig, *, with_label: bool) -> list[str]:
    """The columns a recording must have, time first."""
    columns = [data.time_column, *data.features]
    columns += [c for c in data.targets if c not in columns]
    if with_label:
        columns.append(data.label)
    return columns


def numeric_columns(data: DataConfig) -> list[str]:
    """Feature and target columns, each once, in a stable order."""
    return list(dict.fromkeys([*data.features, *data.targets]))


def read_recording(
    path: Path, data: DataConfig, *, with_label: bool = True
) -> Recording:
    """Read, validate and clean one recording.

    Raises:
        MtlnetError: naming ``path``, the column and the line at fault.
    """
    raw = _read_csv_text(path)
    required = required_columns(data, with_label=with_label)
    missing_columns = [c for c in required if c not in raw.columns]
    if missing_columns:
        raise MtlnetError(
            f"{path}: missing required column {missing_columns[0]!r} "
            f"(found: {', '.join(map(str, raw.columns))})"
        )
    if raw.empty:
        raise MtlnetError(f"{path}: header only, no data rows")

    markers = {m.strip() for m in data.missing_values}
    cells = raw[required].apply(lambda column: column.str.strip())
    missing = cells.isin(markers) | cells.isna()

    frame = pd.DataFrame(index=raw.index)
    frame["time"] = _parse_time(path, data.time_column, cells, missing)
    for column in numeric_columns(data):
        frame[column] = _parse_numbers(path, column, cells, missing)
    if with_label:
        frame["label"] = _parse_label(path, data.label, cells, missing)

    missing_cells = Counter({c: int(n) for c, n in missing.sum().items() if n})
    usable = ~missing.any(axis=1)
    dropped = missing[~usable]
    dropped_lines = {
        int(index) + _FIRST_DATA_LINE: dropped.columns[flags].tolist()
        for index, flags in zip(dropped.index, dropped.to_numpy(), strict=True)
    }
    frame = frame[usable]
    frame = frame.sort_values("time", kind="stable")
    duplicated = frame["time"].duplicated(keep="last")
    frame = frame[~duplicated].reset_index(drop=True)

    return Recording(
        name=path.stem,
        frame=frame,
        missing_cells=missing_cells,
        dropped_rows=int((~usable).sum()),
        duplicate_rows=int(duplicated.sum()),
        path=path,
        dropped_lines=dropped_lines,
    )


def _read_csv_text(path: Path) -> pd.DataFrame:
    try:
        content = path.read_bytes()
    except OSError as error:
        raise MtlnetError(f"{path}: cannot be read ({error.strerror})") from None
    if not content.strip():
        raise MtlnetError(f"{path}: empty file")
    if b"\x00" in content:
        raise MtlnetError(f"{path}: not a CSV file (binary content)")
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        raise MtlnetError(f"{path}: not a CSV file (not UTF-8 text)") from None
    try:
        # Parsed from the bytes read above: the file is read once.
        frame = pd.read_csv(
            io.BytesIO(content), dtype=str, keep_default_na=False, skipinitialspace=True
        )
    except pd.errors.EmptyDataError:
        raise MtlnetError(f"{path}: empty file") from None
    except pd.errors.ParserError as error:
        detail = one_line(error)
        raise MtlnetError(f"{path}: not a CSV file ({detail})") from None
    # Every recording needs a time and at least one KPI column.
    if len(frame.columns) == 1:
        raise MtlnetError(
            f"{path}: not a CSV file (the header {frame.columns[0]!r} has no commas)"
        )
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _first_bad(path: Path, column: str, bad: pd.Series, cells: pd.DataFrame) -> str:
    index = int(np.flatnonzero(bad.to_numpy())[0])
    line = index + _FIRST_DATA_LINE
    return f"{path}: column {column!r}, line {line}: {cells[column].iloc[index]!r}"


def _parse_time(
    path: Path, column: str, cells: pd.DataFrame, missing: pd.DataFrame
) -> pd.Series:
    try:
        times = pd.to_datetime(cells[column], format="ISO8601", errors="coerce")
    except ValueError as error:
        # Stamps with different UTC offsets, or with and without one, make
        # no single time axis: name the first that differs from the first.
        zones = [
            None if pd.isna(t) else str(t.utcoffset())
            for t in (
                pd.to_datetime(c, format="ISO8601", errors="coerce")
                for c in cells[column]
            )
        ]
        first = next((z for z in zones if z is not None), None)
        bad = pd.Series([z not in (None, first) for z in zones], index=cells.index)
        if not bad.any():
            detail = one_line(error)
            raise MtlnetError(f"{path}: column {column!r}: {detail}") from None
        where = _first_bad(path, column, bad, cells)
        raise MtlnetError(
            f"{where} has another time zone than the first time"
        ) from None
    bad = times.isna() & ~missing[column]
    if bad.any():
        where = _first_bad(path, column, bad, cells)
        raise MtlnetError(f"{where} is not a time (expected YYYY-MM-DD HH:MM:SS.fff)")
    return times


def _parse_numbers(
    path: Path, column: str, cells: pd.DataFrame, missing: pd.DataFrame
) -> pd.Series:
    numbers = pd.to_numeric(cells[column].where(~missing[column]), errors="coerce")
    bad = ~np.isfinite(numbers) & ~missing[column]
    if bad.any():
        raise MtlnetError(f"{_first_bad(path, column, bad, cells)} is not a number")
    return numbers.astype("float64")


def _parse_label(
    path: Path, column: str, cells: pd.DataFrame, missing: pd.DataFrame
) -> pd.Series:
    numbers = pd.to_numeric(cells[column].where(~missing[column]), errors="coerce")
    bad = ~numbers.isin([0, 1]) & ~missing[column]
    if bad.any():
        where = _first_bad(path, column, bad, cells)
        raise MtlnetError(f"{where} is not a label (expected 0 or 1)")
    return numbers.fillna(0).astype("int64")
