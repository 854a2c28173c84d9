"""Time ``mtlnet predict``: follow-mode latency per row, batch throughput.

Three figures, on rows of the model's own schema (synthetic KPIs, one row
each 0.5 s, no gaps, nothing missing):

- follow latency in-process: each CSV line is handed to the streaming core
  (:class:`mtlnet.predict.Follower`), timed from the line's arrival to its
  prediction line (parse, scale, one padded block through the model,
  format), p50 and p99 over ``--rows`` rows;
- follow latency end to end: ``python -m mtlnet predict --follow`` in a
  subprocess, timed from writing a line into its stdin pipe to reading the
  prediction line from its stdout pipe, over ``--pipe-rows`` rows, plus how
  long it took to start (until it printed its header); the CLI runs the
  model on one thread whatever ``--threads`` says;
- batch throughput: ``predict_recording`` and writing the CSV, on a file of
  ``--rows`` rows, in input rows per second (median of three runs).

With the export of ``dvc repro`` (``stages/export``) the exported model is
timed. Without it, an untrained model of the architecture that
``params.yaml`` names in ``model``, with a scaler fitted on the synthetic
rows, stands in (same sizes, same cost); the script says so. Run it from
the project root::

    .venv/bin/python benchmarks/predict.py [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mtlnet.checkpoint import model_for, save_checkpoint
from mtlnet.config import DataConfig, load_params
from mtlnet.export import MODEL_FILE
from mtlnet.io import write_parquet
from mtlnet.predict import (
    BLOCK,
    Follower,
    Predictor,
    load_predictor,
    predict_recording,
    write_predictions,
)
from mtlnet.prepare import SCALER_FILE
from mtlnet.recordings import numeric_columns, required_columns
from mtlnet.scaling import Scaler

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EXPORT = ROOT / "stages" / "export"
WARMUP_ROWS = 50
# Where the FccIQ KPIs sit and how much they move from one row to the next.
KPI_LEVELS = {"RSRP": (-100.0, 0.8), "RSRQ": (-11.0, 0.3), "SINR": (12.0, 0.9)}


def synthetic_rows(data: DataConfig, num_rows: int, seed: int = 0) -> pd.DataFrame:
    """``num_rows`` rows of the columns ``data`` reads, as CSV-ready text."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2022-10-04 15:52:22.917")
    times = start + pd.to_timedelta(np.arange(num_rows) * 0.5, unit="s")
    frame = pd.DataFrame({data.time_column: times.strftime("%Y-%m-%d %H:%M:%S.%f")})
    frame[data.time_column] = frame[data.time_column].str[:-3]
    for column in numeric_columns(data):
        level, step = KPI_LEVELS.get(column, (0.0, 1.0))
        walk = level + np.cumsum(rng.normal(0.0, step, num_rows)) * 0.3
        frame[column] = np.round(walk, 1)
    return frame[required_columns(data, with_label=False)]


def untrained_export(directory: Path) -> str:
    """An export dir with an untrained model of params.yaml's ``model``."""
    params = load_params(ROOT / "params.yaml")
    name = params.model
    torch.manual_seed(params.seed)
    model = model_for(name, params.arch.get(name), params.data, params.graph)
    save_checkpoint(
        directory / MODEL_FILE,
        model=model,
        architecture=name,
        arch_config=params.arch.get(name),
        data=params.data,
        graph=params.graph,
        threshold=0.5,
        seed=params.seed,
    )
    rows = synthetic_rows(params.data, 5000, seed=1)
    scaler = Scaler.fit(
        {"synthetic": rows}, numeric_columns(params.data), per_recording=False
    )
    write_parquet(directory / SCALER_FILE, scaler.table)
    return name


def percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):6.2f} ms  p99 {np.percentile(ms, 99):6.2f} ms"


def follow_in_process(predictor: Predictor, lines: list[str]) -> list[float]:
    """Seconds from each line's arrival to its prediction line."""
    follower = Follower(predictor, lines[0])
    window = predictor.data.window
    for line in lines[1 : window + WARMUP_ROWS]:
        follower.feed(line)
    latencies = []
    for line in lines[window + WARMUP_ROWS :]:
        started = time.perf_counter()
        printed = follower.feed(line)
        latencies.append(time.perf_counter() - started)
        assert printed is not None, "every timed row should end a window"
    return latencies


def follow_through_a_pipe(
    model_dir: Path, lines: list[str], window: int
) -> tuple[float, list[float]]:
    """Start-up seconds, and seconds from writing each line to reading its output."""
    model = str(model_dir)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "mtlnet", "predict", "--follow", "--model-dir", model],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(lines[0])
        process.stdin.flush()
        process.stdout.readline()
        startup = time.perf_counter() - started
        for line in lines[1:window]:
            process.stdin.write(line)
        process.stdin.flush()
        latencies = []
        for line in lines[window:]:
            sent = time.perf_counter()
            process.stdin.write(line)
            process.stdin.flush()
            if not process.stdout.readline():
                raise RuntimeError("predict --follow stopped early")
            latencies.append(time.perf_counter() - sent)
        process.stdin.close()
        process.wait(timeout=60)
    finally:
        process.kill()
    return startup, latencies


def batch_throughput(predictor: Predictor, csv_path: Path, num_rows: int) -> float:
    """Input rows per second: read, window, predict, write the CSV."""
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        frame = predict_recording(csv_path, predictor=predictor)
        write_predictions(
            frame, output=csv_path.with_suffix(".out.csv"), stdout=io.StringIO()
        )
        runs.append(time.perf_counter() - started)
    return num_rows / statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--pipe-rows", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model_dir or DEFAULT_EXPORT
        if args.model_dir is None and not (model_dir / MODEL_FILE).is_file():
            model_dir = Path(scratch) / "export"
            name = untrained_export(model_dir)
            print(
                f"{DEFAULT_EXPORT}: no exported model; timing an untrained "
                f"{name!r} (params.yaml) with a scaler fitted on synthetic rows"
            )
        predictor = load_predictor(model_dir, threads=args.threads)
        data = predictor.data
        print(
            f"{predictor.checkpoint.architecture}, window {data.window}, "
            f"{args.threads} thread(s), blocks of {BLOCK} windows, "
            f"{os.cpu_count()} CPUs"
        )

        total = data.window - 1 + WARMUP_ROWS + args.rows
        rows = synthetic_rows(data, total)
        csv_text = rows.to_csv(index=False)
        lines = csv_text.splitlines(keepends=True)
        latencies = follow_in_process(predictor, lines)
        print(f"follow, in-process, {len(latencies)} rows:  {percentiles(latencies)}")

        pipe_lines = lines[: 1 + data.window - 1 + args.pipe_rows]
        startup, piped = follow_through_a_pipe(model_dir, pipe_lines, data.window)
        print(
            f"follow, through a pipe (the CLI, 1 thread), {len(piped)} rows: "
            f"{percentiles(piped)}"
            f"  (start-up {startup:.1f} s)"
        )

        csv_path = Path(scratch) / "rows.csv"
        body = synthetic_rows(data, args.rows + data.window - 1, seed=2)
        body.to_csv(csv_path, index=False)
        rate = batch_throughput(predictor, csv_path, len(body))
        print(f"batch, {len(body)} rows: {rate:,.0f} rows/s")


if __name__ == "__main__":
    main()
