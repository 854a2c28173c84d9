"""``mtlnet predict``: the exported model on new rows, from a file or live.

The export directory holds the checkpoint (``model.pt``) and the scaler it
was trained with (``scaler.parquet``, the table ``prepare`` writes). A
prediction is made for every row that ends a full window: ``data.window``
usable rows in time order, with no gap over ``data.max_gap_s`` between
them. Unlike ``prepare``, no row needs to follow the window: the forecast
is of the KPIs ``data.horizon`` steps after it, which are not yet known.
Each prediction holds the row's ``time``, the interference ``probability``,
the ``decision`` (probability at or above the threshold chosen on
validation at training) and ``forecast_<KPI>`` in the KPI's own unit.

Both modes push rows through one core, :class:`WindowStream`, which holds
the last ``data.window`` scaled rows (a ring buffer):

- a row missing its time or a KPI cell (one of ``data.missing_values``, or
  empty) is reported with its line and skipped, never filled in; the window
  runs on over it, as the windows of ``prepare`` do;
- a gap over ``data.max_gap_s`` empties the buffer, so no window spans it;
- a row with the time of the previous row replaces it (the last row logged
  for an instant is kept, as ``read_recording`` keeps it);
- a row earlier than the previous row is reported and skipped.

Batch mode (:func:`predict_recording`) reads the file with
:func:`~mtlnet.recordings.read_recording`: text in a numeric column or a
time that does not parse is an error, rows are sorted by time, and of rows
that share a time the last is kept, so the rules above on time order never
fire. Follow mode (:class:`Follower`, :func:`follow`) parses one line at a
time with the same cell rules, but a live feed should not die on one bad
line, so a line it cannot use is reported and skipped; a row out of time
order cannot be sorted in, so it is skipped; and a row repeating the
previous time prints the prediction for that time again, replacing the
one printed (the last line for a time holds the batch numbers). On a file
whose rows are in time order and parse, the last line follow mode prints
for each time is the line batch mode writes for it.

The model always runs on blocks of :data:`BLOCK` windows, padded with zero
windows, and the ``k``-th window of a stream always sits in row
``k % BLOCK`` of its block. On CPU, torch's matrix products take other
code paths for a few rows than for many (with two threads, for some other
sizes too), and for some layer widths they round a row by where it lies in
the block (a product with 34 inputs and 4 outputs does); the paths round
differently, by about 1e-7. With one block shape for every call and each
window in the same row in both modes, a window's prediction is the same
number whether it arrives alone (follow) or among thousands (batch).
Windows are separate graphs, so the padding changes nothing in the
others. For the same reason
the probability is computed one logit at a time (:func:`sigmoid`). The
evaluate stage runs the whole test split as one batch, through
``torch.sigmoid``, so its numbers and these agree to that rounding, not
bit for bit.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd
import torch

from mtlnet.checkpoint import Checkpoint, load_checkpoint
from mtlnet.config import DataConfig
from mtlnet.dataset import input_channels, position_channel
from mtlnet.errors import MtlnetError
from mtlnet.export import MODEL_FILE
from mtlnet.io import read_table, write_parquet, write_text
from mtlnet.prepare import SCALER_FILE
from mtlnet.recordings import numeric_columns, read_recording, required_columns
from mtlnet.scaling import GLOBAL, SCALER_COLUMNS, Scaler

logger = logging.getLogger(__name__)

BLOCK = 8
STDIN = "standard input"


def prediction_columns(data: DataConfig) -> list[str]:
    """The columns of a prediction table, in order."""
    return ["time", "probability", "decision", *(f"forecast_{k}" for k in data.targets)]


@dataclass(frozen=True)
class Predictor:
    """The exported model and the scaler it was trained with.

    The model runs on ``threads`` CPU threads (torch's setting is restored
    after each call). A block of windows is small work: on two cores shared
    with other processes, a second thread costs more in waking and waiting
    than it saves (``benchmarks/predict.py``), so the default is one.
    """

    checkpoint: Checkpoint
    scaler: Scaler
    export_dir: Path
    threads: int = 1

    @property
    def data(self) -> DataConfig:
        return self.checkpoint.data

    @property
    def threshold(self) -> float:
        return self.checkpoint.threshold

    def scope(self, recording: str | None) -> str:
        """The scaler scope for the recording named ``recording``.

        ``None`` is a feed with no name (standard input), which only a
        global scaler can scale.
        """
        if recording is not None and self.scaler.has_scope(recording):
            return recording
        if self.scaler.has_scope(GLOBAL):
            return GLOBAL
        scopes = ", ".join(sorted(map(str, set(self.scaler.table["scope"]))))
        what = STDIN if recording is None else f"a recording named {recording!r}"
        raise MtlnetError(
            f"{self.export_dir / SCALER_FILE}: the model was trained with "
            f"data.scaler: recording (scalers of {scopes}), which cannot scale "
            f"{what}; predicting on other recordings needs a model trained "
            "with data.scaler: global"
        )

    @torch.inference_mode()
    def infer(self, x: torch.Tensor, first: int) -> tuple[np.ndarray, np.ndarray]:
        """Scaled forecasts and probabilities, in blocks of :data:`BLOCK` windows.

        ``x`` holds windows ``first``, ``first + 1``, ... of a stream;
        window ``k`` runs in row ``k % BLOCK`` of its block. The forecasts
        are float32, as the model gives them; the probabilities are
        float64, from :func:`sigmoid`.

        Shapes:
            x: [windows, window, channels]
            -> (forecast: [windows, targets], probability: [windows])
        """
        # load_checkpoint hands the model over in eval mode.
        model = self.checkpoint.model
        count = len(x)
        lead = first % BLOCK
        trail = -(lead + count) % BLOCK
        if lead or trail:
            x = torch.cat(
                [
                    x.new_zeros((lead, *x.shape[1:])),
                    x,
                    x.new_zeros((trail, *x.shape[1:])),
                ]
            )
        regression, logits = [], []
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            for start in range(0, len(x), BLOCK):
                r, c = model(x[start : start + BLOCK])
                regression.append(r)
                logits.append(c)
        finally:
            torch.set_num_threads(previous)
        if not regression:
            return np.zeros((0, model.num_targets), np.float32), np.zeros(0)
        forecast = torch.cat(regression)[lead : lead + count].numpy()
        return forecast, sigmoid(torch.cat(logits)[lead : lead + count].numpy())


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-logit))`` in float64, one logit at a time.

    Not ``torch.sigmoid``: its CPU kernel runs the bulk of a tensor through
    vector instructions and the last few elements through scalar code, and
    the two round differently, so a logit's probability would depend on
    where it sits in the tensor. One at a time, it depends on the logit only.
    """
    values = np.asarray(logits, dtype=np.float64).ravel().tolist()
    return np.array(
        [
            1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
            for z in values
        ],
        dtype=np.float64,
    ).reshape(np.shape(logits))


def load_predictor(export_dir: Path, *, threads: int = 1) -> Predictor:
    """Read ``export_dir/model.pt`` and ``export_dir/scaler.parquet``.

    Raises:
        MtlnetError: when either is missing or unreadable, or the scaler
            does not cover the model's features and targets.
    """
    if threads < 1:
        raise MtlnetError(f"threads: {threads}, must be at least 1")
    if not export_dir.is_dir():
        raise MtlnetError(
            f"{export_dir}: export directory not found; run the export stage "
            "(`dvc repro export`) or name another model directory"
        )
    model_path = export_dir / MODEL_FILE
    if not model_path.is_file():
        raise MtlnetError(f"{model_path}: not found; run the export stage")
    checkpoint = load_checkpoint(model_path)
    scaler = Scaler(_read_scaler(export_dir / SCALER_FILE))
    _check_scaler(scaler, checkpoint.data, export_dir / SCALER_FILE)
    return Predictor(checkpoint, scaler, export_dir, threads)


def _read_scaler(path: Path) -> pd.DataFrame:
    return read_table(
        path,
        list(SCALER_COLUMNS),
        not_found="the export stage stores the scaler beside the model: run it again",
        missing="not a scaler table",
    )


def _check_scaler(scaler: Scaler, data: DataConfig, path: Path) -> None:
    if data.scaler == "global" and not scaler.has_scope(GLOBAL):
        raise MtlnetError(
            f"{path}: no global scaler, but the model was trained with "
            "data.scaler: global; export the scaler it was trained with"
        )
    columns = numeric_columns(data)
    for scope in dict.fromkeys(scaler.table["scope"]):
        try:
            mean, scale = scaler.vectors(str(scope), columns)
        except MtlnetError as error:
            raise MtlnetError(f"{path}: {error}") from None
        if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
            raise MtlnetError(f"{path}: scope {scope!r} holds a non-finite value")
        if (scale <= 0).any():
            raise MtlnetError(f"{path}: scope {scope!r} holds a scale <= 0")


@dataclass(frozen=True)
class Window:
    """One full window, ready for the model.

    Shapes:
        x: [window, channels] scaled features, plus the position channel
        when ``data.position_encoding`` is on (as :mod:`mtlnet.dataset`).
    """

    time: pd.Timestamp
    x: np.ndarray
    # The window's place among its stream's windows, from 0; a row that
    # replaces the previous one gives its window the replaced one's place.
    index: int


@dataclass
class StreamCounts:
    """What a stream did with its rows, for the summary line."""

    rows: int = 0
    predictions: int = 0
    gaps: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


class WindowStream:
    """The per-row rules both modes share: rows in, full windows out.

    Keeps only the last ``data.window`` rows, scaled as at training, and
    the time of the last row taken. ``source`` names the input in reports.
    """

    def __init__(self, predictor: Predictor, *, scope: str, source: str) -> None:
        data = predictor.data
        self.predictor = predictor
        self.source = source
        self.counts = StreamCounts()
        self._data = data
        self._mean, self._scale = predictor.scaler.vectors(scope, data.features)
        self._target_mean, self._target_scale = predictor.scaler.vectors(
            scope, data.targets
        )
        self._rows: deque[np.ndarray] = deque(maxlen=data.window)
        self._last_time: pd.Timestamp | None = None
        # Windows ended so far, and the place of the one the last row ended.
        self._windows = 0
        self._last_index: int | None = None
        self._position = position_channel(data.window).numpy()[:, None]

    def skip(self, line: int | None, reason: str, kind: str) -> None:
        """Report a row that cannot be used, and count it under ``kind``."""
        self.counts.rows += 1
        self.counts.skipped[kind] += 1
        logger.warning("%s: %s; row skipped", self._where(line), reason)

    def _where(self, line: int | None) -> str:
        return self.source if line is None else f"{self.source}, line {line}"

    def push(
        self, time: pd.Timestamp, values: np.ndarray, line: int | None = None
    ) -> Window | None:
        """Take one complete row; the window it ends, once the buffer is full.

        ``values`` are the row's features in physical units, ``[features]``.
        A row with the time of the previous row replaces it, and the window
        it ends is returned again.
        """
        if self._last_time is not None and time == self._last_time:
            # Of rows logged for one instant the last is kept, as read_recording
            # keeps it: it takes the place of the previous row.
            self.counts.skipped["duplicate_time"] += 1
            logger.warning(
                "%s: time %s repeats the previous row's; this row replaces it",
                self._where(line),
                time,
            )
            self._rows.pop()
            if self._last_index is not None:
                self._windows = self._last_index
        elif self._last_time is not None:
            if time < self._last_time:
                self.skip(
                    line,
                    f"time {time} is before the previous row's {self._last_time}",
                    "out_of_order",
                )
                return None
            gap = (time - self._last_time).total_seconds()
            if gap > self._data.max_gap_s:
                self._rows.clear()
                self._last_index = None
                self.counts.gaps += 1
                logger.info(
                    "%s: a gap of %.1f s restarts the window", self._where(line), gap
                )
        self.counts.rows += 1
        self._last_time = time
        self._rows.append(((values - self._mean) / self._scale).astype(np.float32))
        if len(self._rows) < self._data.window:
            self._last_index = None
            return None
        x = np.stack(self._rows)
        if self._data.position_encoding:
            x = np.concatenate([x, self._position], axis=1)
        self._last_index = self._windows
        self._windows += 1
        return Window(time, x, self._last_index)

    def infer(
        self, windows: Sequence[Window]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Probabilities, decisions and physical forecasts of ``windows``.

        ``windows`` are consecutive windows of this stream, in order.

        Shapes:
            -> ([windows], [windows], [windows, targets])
        """
        data = self._data
        if windows:
            x = torch.from_numpy(np.stack([w.x for w in windows]))
        else:
            x = torch.zeros(0, data.window, input_channels(data))
        first = windows[0].index if windows else 0
        scaled, probability = self.predictor.infer(x, first)
        forecast = scaled.astype(np.float64) * self._target_scale + self._target_mean
        self.counts.predictions += len(windows)
        decision = (probability >= self.predictor.threshold).astype(np.int64)
        return probability, decision, forecast

    def predict(self, windows: Sequence[Window]) -> pd.DataFrame:
        """One prediction row per window (see :func:`prediction_columns`)."""
        probability, decision, forecast = self.infer(windows)
        frame = pd.DataFrame(
            {
                "time": pd.Series(
                    [w.time for w in windows], dtype=_time_dtype(windows)
                ),
                "probability": probability,
                "decision": decision,
            }
        )
        for i, kpi in enumerate(self._data.targets):
            frame[f"forecast_{kpi}"] = forecast[:, i]
        return frame

    def predict_line(self, window: Window) -> str:
        """One window's prediction as the CSV line :func:`csv_lines` writes.

        The streaming path: no table is built for one row, which would cost
        more than the model itself.
        """
        probability, decision, forecast = self.infer([window])
        return csv_line(
            format_time(window.time),
            [probability[0].item(), decision[0].item(), *forecast[0].tolist()],
        )

    def log_summary(self) -> None:
        """One line: rows read, predictions made, rows skipped, gaps."""
        counts = self.counts
        skipped = sum(counts.skipped.values())
        reasons = ", ".join(f"{k} {n}" for k, n in sorted(counts.skipped.items()))
        logger.info(
            "%s: %d rows, %d predictions, %d rows skipped%s, "
            "window restarted after %d gap(s) over %g s",
            self.source,
            counts.rows,
            counts.predictions,
            skipped,
            f" ({reasons})" if reasons else "",
            counts.gaps,
            self._data.max_gap_s,
        )


def _time_dtype(windows: Sequence[Window]) -> str | pd.DatetimeTZDtype:
    zone = windows[0].time.tz if windows else None
    return "datetime64[ns]" if zone is None else pd.DatetimeTZDtype("ns", zone)


def predict_recording(path: Path, *, predictor: Predictor) -> pd.DataFrame:
    """Predictions for every row of the CSV ``path`` that ends a full window.

    Label columns may be present or not; they are never read.

    Raises:
        MtlnetError: on what :func:`~mtlnet.recordings.read_recording`
            rejects, or a recording the scaler cannot scale.
    """
    data = predictor.data
    recording = read_recording(path, data, with_label=False)
    stream = WindowStream(
        predictor, scope=predictor.scope(recording.name), source=str(path)
    )
    for line, columns in recording.dropped_lines.items():
        stream.skip(line, f"missing {', '.join(columns)}", "missing")
    if recording.duplicate_rows:
        stream.counts.rows += recording.duplicate_rows
        stream.counts.skipped["duplicate_time"] += recording.duplicate_rows
        logger.warning(
            "%s: %d row(s) share a time with a row logged after them; the last "
            "logged for each time is kept",
            path,
            recording.duplicate_rows,
        )

    frame = recording.frame
    values = frame[list(data.features)].to_numpy(dtype=np.float64)
    windows = [
        window
        for time, row in zip(frame["time"], values, strict=True)
        if (window := stream.push(time, row)) is not None
    ]
    predictions = stream.predict(windows)
    stream.log_summary()
    return predictions


def format_time(time: pd.Timestamp) -> str:
    """``YYYY-MM-DD HH:MM:SS.fff``, finer only where the time is."""
    if time.nanosecond:
        return time.isoformat(sep=" ", timespec="nanoseconds")
    if time.microsecond % 1000:
        return time.isoformat(sep=" ", timespec="microseconds")
    return time.isoformat(sep=" ", timespec="milliseconds")


def csv_line(time: str, values: Sequence[float | int]) -> str:
    """One prediction as a CSV line; floats round-trip exactly."""
    return ",".join([time, *(repr(v) for v in values)])


def csv_lines(frame: pd.DataFrame) -> list[str]:
    """A prediction table as CSV lines, no header."""
    times = [format_time(t) for t in frame["time"]]
    columns = [frame[c].to_numpy() for c in frame.columns[1:]]
    return [
        csv_line(time, [v.item() for v in row])
        for time, row in zip(times, zip(*columns, strict=True), strict=True)
    ]


def write_predictions(
    frame: pd.DataFrame, *, output: Path | None, stdout: TextIO
) -> None:
    """Write ``frame`` atomically: parquet when ``output`` ends so, else CSV.

    Without ``output`` the CSV goes to ``stdout``.
    """
    if output is not None and output.suffix.lower() == ".parquet":
        write_parquet(output, frame)
        return
    text = "".join(f"{line}\n" for line in [",".join(frame.columns), *csv_lines(frame)])
    if output is None:
        stdout.write(text)
        stdout.flush()
    else:
        write_text(output, text)


class Follower:
    """Follow mode's reader: one CSV line in, its prediction line out.

    ``header`` is the first line of the feed; it must name every column the
    model reads (label columns may be absent). Each data line is parsed
    with the cell rules of :func:`~mtlnet.recordings.read_recording`; a line
    that breaks them is reported and skipped.

    Raises:
        MtlnetError: on a header that lacks a column, or a model whose
            scaler cannot scale an unnamed feed.
    """

    def __init__(self, predictor: Predictor, header: str, source: str = STDIN) -> None:
        data = predictor.data
        names = [name.strip() for name in _fields(header.lstrip("\ufeff"))]
        self._required = required_columns(data, with_label=False)
        absent = [c for c in self._required if c not in names]
        if absent:
            raise MtlnetError(
                f"{source}: the header lacks column {absent[0]!r} "
                f"(found: {', '.join(names)})"
            )
        self._index = [names.index(c) for c in self._required]
        self._width = len(names)
        self._features = [self._required.index(c) - 1 for c in data.features]
        self._markers = {m.strip() for m in data.missing_values}
        self._line = 1
        self._seen_time = False
        self._offset: timedelta | None = None
        self.header_line = ",".join(prediction_columns(data))
        self.stream = WindowStream(
            predictor, scope=predictor.scope(None), source=source
        )

    def feed(self, line: str) -> str | None:
        """Take the next line of the feed; its prediction line, if it ends a window."""
        self._line += 1
        if not line.strip():
            return None
        row = self._parse(line)
        if row is None:
            return None
        window = self.stream.push(*row, line=self._line)
        if window is None:
            return None
        return self.stream.predict_line(window)

    def _parse(self, line: str) -> tuple[pd.Timestamp, np.ndarray] | None:
        stream = self.stream
        try:
            fields = _fields(line)
        except csv.Error as error:
            stream.skip(self._line, f"not a CSV line ({error})", "malformed")
            return None
        if len(fields) != self._width:
            stream.skip(
                self._line,
                f"{len(fields)} fields where the header has {self._width}",
                "malformed",
            )
            return None

        cells = [fields[i].strip() for i in self._index]
        missing = [
            column
            for column, cell in zip(self._required, cells, strict=True)
            if cell in self._markers
        ]
        time_column, *number_columns = self._required
        time_cell, *number_cells = cells

        time = None
        if time_column not in missing:
            time = _parse_time(time_cell)
            if time is None:
                stream.skip(
                    self._line,
                    f"column {time_column!r}: {time_cell!r} is not a time "
                    "(expected YYYY-MM-DD HH:MM:SS.fff)",
                    "malformed",
                )
                return None
        numbers = np.full(len(number_columns), np.nan)
        for i, (column, cell) in enumerate(
            zip(number_columns, number_cells, strict=True)
        ):
            if column in missing:
                continue
            value = _parse_number(cell)
            if value is None:
                stream.skip(
                    self._line,
                    f"column {column!r}: {cell!r} is not a number",
                    "malformed",
                )
                return None
            numbers[i] = value
        if missing:
            stream.skip(self._line, f"missing {', '.join(missing)}", "missing")
            return None

        assert time is not None
        # As in batch mode, every time must share the first one's UTC offset.
        offset = time.utcoffset()
        if not self._seen_time:
            self._seen_time, self._offset = True, offset
        elif offset != self._offset:
            stream.skip(
                self._line,
                f"column {time_column!r}: {time_cell!r} has another time zone "
                "than the first time",
                "malformed",
            )
            return None
        return time, numbers[self._features]


def _fields(line: str) -> list[str]:
    return next(csv.reader([line.rstrip("\r\n")], skipinitialspace=True), [])


def _parse_time(cell: str) -> pd.Timestamp | None:
    try:
        time = pd.to_datetime(cell, format="ISO8601")
    except (ValueError, TypeError, OverflowError):
        return None
    return None if pd.isna(time) else pd.Timestamp(time)


def _parse_number(cell: str) -> float | None:
    try:
        value = float(pd.to_numeric(cell))
    except (ValueError, TypeError):
        return None
    return value if np.isfinite(value) else None


def follow(
    lines: Iterable[str], *, predictor: Predictor, out: TextIO, source: str = STDIN
) -> StreamCounts:
    """Predict on CSV lines as they arrive, header first.

    Prints the prediction header at once, then each prediction line as soon
    as its row ends a window, flushing after each.

    Raises:
        MtlnetError: on an empty feed or a bad header.
    """
    predictor.scope(None)  # refuse a per-recording scaler before waiting on input
    lines = iter(lines)
    header = next(lines, None)
    if header is None or not header.strip():
        raise MtlnetError(f"{source}: no header line")
    follower = Follower(predictor, header, source=source)
    out.write(follower.header_line + "\n")
    out.flush()
    for line in lines:
        text = follower.feed(line)
        if text is not None:
            out.write(text + "\n")
            out.flush()
    follower.stream.log_summary()
    return follower.stream.counts
