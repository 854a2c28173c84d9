"""``mtlnet predict``: the exported model on new rows, in batch and follow mode."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import fcciq_rows

from mtlnet.checkpoint import model_for, save_checkpoint
from mtlnet.config import ArchConfigs, DataConfig, GraphConfig
from mtlnet.dataset import PreparedData
from mtlnet.errors import MtlnetError
from mtlnet.io import write_parquet
from mtlnet.predict import (
    Predictor,
    WindowStream,
    follow,
    load_predictor,
    predict_recording,
    prediction_columns,
    write_predictions,
)
from mtlnet.prepare import prepare
from mtlnet.scaling import SCALER_COLUMNS
from mtlnet.train import predict as train_predict

ROOT = Path(__file__).resolve().parents[1]
DATA = DataConfig(dir="data", window=4, horizon=1, max_gap_s=5.0)
GRAPH = GraphConfig()
ARCH = dataclasses.replace(ArchConfigs().ple, hidden=8, tower_hidden=4, layers=1)
COLUMNS = [
    "time",
    "probability",
    "decision",
    *(f"forecast_{k}" for k in ("RSRP", "RSRQ", "SINR")),
]
GLOBAL_SCALER = pd.DataFrame(
    [("*", "RSRP", -95.0, 3.0), ("*", "RSRQ", -11.5, 1.1), ("*", "SINR", 12.5, 1.7)],
    columns=list(SCALER_COLUMNS),
)


def write_export(
    export_dir: Path,
    *,
    data: DataConfig = DATA,
    scaler: pd.DataFrame = GLOBAL_SCALER,
    threshold: float = 0.5,
) -> Path:
    """An export directory as the export stage leaves it: model and scaler."""
    torch.manual_seed(7)
    save_checkpoint(
        export_dir / "model.pt",
        model=model_for("ple", ARCH, data, GRAPH),
        architecture="ple",
        arch_config=ARCH,
        data=data,
        graph=GRAPH,
        threshold=threshold,
        seed=7,
    )
    write_parquet(export_dir / "scaler.parquet", scaler)
    return export_dir


@pytest.fixture
def predictor(tmp_path: Path) -> Predictor:
    return load_predictor(write_export(tmp_path / "export"))


def times_of(rows: pd.DataFrame, indices: list[int]) -> list[pd.Timestamp]:
    return [pd.Timestamp(rows["Time"][i]) for i in indices]


def batch_csv(path: Path, predictor: Predictor) -> str:
    out = io.StringIO()
    write_predictions(
        predict_recording(path, predictor=predictor), output=None, stdout=out
    )
    return out.getvalue()


@pytest.mark.parametrize("scaler", ["global", "recording"])
def test_predict_gives_the_evaluate_numbers_on_the_test_windows(
    tmp_path, data_dir, write_recording, scaler
):
    data = dataclasses.replace(DATA, dir=str(data_dir), scaler=scaler)
    path = write_recording("lvl_4", 80, gaps={30: 9.0})
    write_recording("lvl_5", 50, rsrp=[-80.0 - i % 7 for i in range(50)])
    prepare(
        data=data,
        graph=GRAPH,
        output_dir=tmp_path / "prepared",
        metrics_path=tmp_path / "data.json",
    )
    prepared = PreparedData.load(tmp_path / "prepared", data)
    predictor = load_predictor(
        write_export(tmp_path / "export", data=data, scaler=prepared.scaler.table)
    )

    test = prepared.split("test")
    scaled, probability = train_predict(predictor.checkpoint.model, test.x)
    forecast = prepared.scaler.inverse_rows(
        list(test.windows["recording"]), scaled.numpy(), data.targets
    )
    ours = predict_recording(path, predictor=predictor)

    # The gap at row 30 leaves runs of 30 and 50 rows: 27 + 47 full windows
    # (prepare keeps fewer: its windows need a target row and one split).
    assert len(ours) == 74
    mine = (test.windows["recording"] == "lvl_4").to_numpy()
    assert mine.sum() == 4
    matched = ours.set_index("time").loc[test.windows["time"][mine]]
    np.testing.assert_allclose(
        matched["probability"], probability.numpy()[mine], rtol=0, atol=1e-5
    )
    for i, kpi in enumerate(data.targets):
        np.testing.assert_allclose(
            matched[f"forecast_{kpi}"], forecast[mine, i], rtol=0, atol=1e-5
        )


def test_one_row_per_row_that_ends_a_full_window(predictor, write_recording):
    rows = fcciq_rows(10)
    frame = predict_recording(write_recording("rec", rows=rows), predictor=predictor)

    assert list(frame.columns) == COLUMNS == prediction_columns(DATA)
    assert list(frame["time"]) == times_of(rows, list(range(3, 10)))
    assert frame["probability"].between(0, 1).all()
    # The forecast is a KPI value in dBm or dB, not a scaled one.
    assert frame["forecast_RSRP"].between(-130, -70).all()


def test_decision_uses_the_threshold_chosen_at_training(tmp_path, write_recording):
    path = write_recording("rec", 30)
    first = predict_recording(
        path, predictor=load_predictor(write_export(tmp_path / "a"))
    )
    threshold = float(first["probability"].median())

    again = load_predictor(write_export(tmp_path / "b", threshold=threshold))
    frame = predict_recording(path, predictor=again)

    expected = (first["probability"] >= threshold).astype(np.int64)
    assert frame["decision"].tolist() == expected.tolist()
    assert 0 < frame["decision"].sum() < len(frame)


def test_a_missing_kpi_row_is_reported_and_skipped_not_filled(
    predictor, write_recording, caplog
):
    rows = fcciq_rows(10)
    rows.loc[4, "SINR"] = "-"
    rows.loc[7, "RSRP"] = ""
    path = write_recording("rec", rows=rows)

    with caplog.at_level(logging.INFO, logger="mtlnet.predict"):
        frame = predict_recording(path, predictor=predictor)

    # Rows 4 and 7 are lines 6 and 9; the window runs on over them.
    assert list(frame["time"]) == times_of(rows, [3, 5, 6, 8, 9])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"{path}, line 6: missing SINR; row skipped",
        f"{path}, line 9: missing RSRP; row skipped",
    ]
    assert "10 rows, 5 predictions, 2 rows skipped (missing 2)" in caplog.messages[-1]
    without = write_recording("without", rows=rows.drop(index=[4, 7]))
    expected = predict_recording(without, predictor=predictor)
    pd.testing.assert_frame_equal(frame, expected)


def test_a_gap_over_max_gap_s_restarts_the_window(predictor, write_recording):
    rows = fcciq_rows(12, gaps={6: 9.0})
    frame = predict_recording(write_recording("rec", rows=rows), predictor=predictor)

    assert list(frame["time"]) == times_of(rows, [3, 4, 5, 9, 10, 11])
    # The first window after the gap sees nothing from before it.
    after = predict_recording(
        write_recording("after", rows=rows.iloc[6:]), predictor=predictor
    )
    pd.testing.assert_frame_equal(frame.iloc[3:].reset_index(drop=True), after)


def test_a_gap_of_exactly_max_gap_s_keeps_the_window(predictor, write_recording):
    rows = fcciq_rows(12, gaps={6: 5.0})
    frame = predict_recording(write_recording("rec", rows=rows), predictor=predictor)

    assert list(frame["time"]) == times_of(rows, list(range(3, 12)))


def test_label_columns_are_optional(predictor, write_recording):
    rows = fcciq_rows(20)
    labelled = predict_recording(write_recording("a", rows=rows), predictor=predictor)
    unlabelled = rows.drop(
        columns=["lab_anom", "lab_bs", "lab_inf", "lab_1rr", "Label"]
    )
    frame = predict_recording(
        write_recording("b", rows=unlabelled), predictor=predictor
    )

    pd.testing.assert_frame_equal(frame, labelled)


def test_unsorted_rows_are_sorted_and_a_repeated_time_keeps_the_last(
    predictor, write_recording
):
    rows = fcciq_rows(10)
    shuffled = pd.concat([rows.iloc[5:], rows.iloc[:5]], ignore_index=True)
    # Time 9 logged twice; the second one logged has another RSRP.
    repeated = pd.concat([rows, rows.iloc[[9]].assign(RSRP="-70.0")])

    frame = predict_recording(write_recording("a", rows=rows), predictor=predictor)
    sorted_frame = predict_recording(
        write_recording("b", rows=shuffled), predictor=predictor
    )
    last_kept = predict_recording(
        write_recording("c", rows=repeated), predictor=predictor
    )

    pd.testing.assert_frame_equal(sorted_frame, frame)
    assert len(last_kept) == len(frame)
    assert last_kept["forecast_RSRP"].iloc[-1] != frame["forecast_RSRP"].iloc[-1]
    pd.testing.assert_frame_equal(last_kept.iloc[:-1], frame.iloc[:-1])


def test_follow_prints_the_lines_batch_mode_writes(predictor, write_recording):
    rows = fcciq_rows(40, gaps={12: 9.0, 25: 5.0})
    rows.loc[5, "SINR"] = "-"
    rows.loc[30, "RSRQ"] = " "
    path = write_recording("rec", rows=rows)
    out = io.StringIO()

    counts = follow(
        path.read_text().splitlines(keepends=True), predictor=predictor, out=out
    )

    expected = batch_csv(path, predictor)
    assert out.getvalue() == expected
    # Two rows skipped, and one gap: runs of 11 and 27 usable rows.
    assert len(expected.splitlines()) == 1 + 8 + 24
    assert (counts.rows, counts.predictions, counts.gaps) == (40, 32, 1)


def test_follow_reports_and_skips_bad_lines(predictor, caplog):
    rows = fcciq_rows(8)
    lines = rows.to_csv(index=False).splitlines(keepends=True)
    good = "".join(lines)
    bad = [
        lines[0],
        *lines[1:4],
        lines[4].replace("-97.0", "oops"),  # text in a KPI column
        "2022-10-04 15:52:25,1,2\n",  # too few fields
        lines[4].replace("2022-10-04", "2022-13-04"),  # not a time
        lines[1],  # earlier than the last row taken
        lines[3],  # the time of the last row again: it replaces that row
        *lines[4:],
    ]
    expected = io.StringIO()
    follow(good.splitlines(keepends=True), predictor=predictor, out=expected)
    out = io.StringIO()

    with caplog.at_level(logging.INFO, logger="mtlnet.predict"):
        counts = follow(bad, predictor=predictor, out=out)

    assert out.getvalue() == expected.getvalue()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 5
    assert warnings[0].startswith("standard input, line 5: column 'RSRP': 'oops'")
    assert warnings[1].startswith("standard input, line 6: 3 fields")
    assert "line 7: column 'Time'" in warnings[2]
    assert "line 8: time" in warnings[3] and "before" in warnings[3]
    assert "line 9: time" in warnings[4] and "replaces" in warnings[4]
    assert counts.skipped == {"malformed": 3, "out_of_order": 1, "duplicate_time": 1}


def test_follow_reprints_a_repeated_time_with_the_row_batch_mode_keeps(
    predictor, write_recording
):
    rows = fcciq_rows(12)
    again = rows.iloc[[6]].assign(RSRP="-70.0")
    last = rows.iloc[[11]].assign(SINR="30.0")
    rows = pd.concat([rows.iloc[:7], again, rows.iloc[7:], last], ignore_index=True)
    path = write_recording("rec", rows=rows)
    out = io.StringIO()

    follow(path.read_text().splitlines(keepends=True), predictor=predictor, out=out)

    printed = out.getvalue().splitlines()
    batch = batch_csv(path, predictor).splitlines()
    assert len(printed) == len(batch) + 2
    last_per_time = {line.split(",")[0]: line for line in printed[1:]}
    assert list(last_per_time.values()) == batch[1:]
    # The first line for row 6's time, and the one that replaces it.
    assert printed[4].split(",")[0] == printed[5].split(",")[0]
    assert printed[4] != printed[5]


@pytest.mark.parametrize("place", [0, 3, 8, 13])
def test_a_window_alone_gets_the_numbers_of_its_place_among_many(predictor, place):
    x = torch.randn(16, DATA.window, 4, generator=torch.Generator().manual_seed(0))

    forecast, probability = predictor.infer(x, 0)
    alone_forecast, alone_probability = predictor.infer(x[place : place + 1], place)

    assert np.array_equal(alone_forecast[0], forecast[place])
    assert alone_probability[0] == probability[place]


def test_window_places_count_windows_and_a_replacing_row_takes_the_place(
    predictor,
):
    stream = WindowStream(predictor, scope=predictor.scope(None), source="test")
    start = pd.Timestamp("2022-10-04 15:00:00")
    values = np.array([-95.0, -11.0, 12.0])
    # DATA.window is 4: the rows at 0-2 s fill the buffer, those at 3-5 s
    # end windows 0-2, 5 s is logged again (window 2 again), the 15 s gap
    # restarts the buffer, and the rows at 23 and 24 s end windows 3 and 4.
    seconds = [0, 1, 2, 3, 4, 5, 5, 20, 21, 22, 23, 24]
    places = []
    for second in seconds:
        window = stream.push(start + pd.Timedelta(seconds=second), values)
        places.append(None if window is None else window.index)

    assert places == [None, None, None, 0, 1, 2, 2, None, None, None, 3, 4]


def test_follow_refuses_a_header_without_a_kpi_column(predictor):
    header = "Time,RSRP,RSRQ,lab_inf\n"

    with pytest.raises(
        MtlnetError, match=r"standard input: the header lacks column 'SINR'"
    ):
        follow([header], predictor=predictor, out=io.StringIO())


def test_follow_refuses_an_empty_feed(predictor):
    with pytest.raises(MtlnetError, match="standard input: no header line"):
        follow([], predictor=predictor, out=io.StringIO())


def test_follow_prints_each_prediction_before_the_next_row_arrives(
    tmp_path, write_recording, predictor
):
    rows = fcciq_rows(12, gaps={8: 7.0})
    path = write_recording("rec", rows=rows)
    lines = path.read_text().splitlines(keepends=True)
    export = str(predictor.export_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "mtlnet", "predict", "--follow", "--model-dir", export],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdin is not None and process.stdout is not None
    printed: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [printed.put(line) for line in process.stdout], daemon=True
    )
    reader.start()

    try:
        received = []
        for line in lines[:5]:  # the header and the first full window
            process.stdin.write(line)
        process.stdin.flush()
        received.append(printed.get(timeout=60))
        received.append(printed.get(timeout=60))
        for line in lines[5:]:
            process.stdin.write(line)
        process.stdin.close()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    reader.join(timeout=10)
    while not printed.empty():
        received.append(printed.get())

    assert "".join(received) == batch_csv(path, predictor)
    assert len(received) == 1 + 5 + 1
    assert (
        "12 rows, 6 predictions, 0 rows skipped, window restarted after 1 gap(s)"
        in process.stderr.read()
    )


def test_a_recording_scaler_scales_only_its_own_recording(tmp_path, write_recording):
    scaler = pd.concat([GLOBAL_SCALER.assign(scope="lvl_4")], ignore_index=True)
    data = dataclasses.replace(DATA, scaler="recording")
    predictor = load_predictor(
        write_export(tmp_path / "export", data=data, scaler=scaler)
    )
    own = write_recording("lvl_4", 10)
    other = write_recording("lvl_9", 10)

    assert len(predict_recording(own, predictor=predictor)) == 7
    with pytest.raises(MtlnetError, match=r"data\.scaler: recording.*'lvl_9'.*global"):
        predict_recording(other, predictor=predictor)
    with pytest.raises(MtlnetError, match=r"data\.scaler: recording.*standard input"):
        follow(own.read_text().splitlines(), predictor=predictor, out=io.StringIO())


def test_a_scaler_missing_a_kpi_is_refused(tmp_path):
    export_dir = write_export(tmp_path / "export", scaler=GLOBAL_SCALER.iloc[:2])

    with pytest.raises(MtlnetError, match=r"scaler\.parquet: .*'SINR'"):
        load_predictor(export_dir)


def test_the_cli_writes_parquet_when_the_name_ends_so(tmp_path, write_recording, cli):
    path = write_recording("rec", 20, gaps={10: 6.0})
    export_dir = write_export(tmp_path / "export")
    expected = predict_recording(path, predictor=load_predictor(export_dir))

    parquet = cli(
        "predict",
        str(path),
        "-o",
        str(tmp_path / "out.parquet"),
        "--model-dir",
        str(export_dir),
    )
    as_csv = cli(
        "predict",
        str(path),
        "-o",
        str(tmp_path / "out.csv"),
        "--model-dir",
        str(export_dir),
    )

    assert parquet.exit_code == 0 and as_csv.exit_code == 0, (
        parquet.output + as_csv.output
    )
    assert (tmp_path / "out.parquet").read_bytes()[:4] == b"PAR1"
    frame = pd.read_parquet(tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(frame, expected, check_dtype=False)
    text = (tmp_path / "out.csv").read_text()
    assert text == batch_csv(path, load_predictor(export_dir))
    from_csv = pd.read_csv(io.StringIO(text), parse_dates=["time"])
    pd.testing.assert_frame_equal(from_csv, expected, check_dtype=False)


def test_the_cli_prints_csv_without_an_output(tmp_path, write_recording, cli):
    path = write_recording("rec", 8)
    export_dir = write_export(tmp_path / "export")

    result = cli("predict", str(path), "--model-dir", str(export_dir))

    assert result.exit_code == 0, result.output
    assert result.stdout == batch_csv(path, load_predictor(export_dir))
    assert result.stdout.splitlines()[0] == ",".join(COLUMNS)
    assert len(result.stdout.splitlines()) == 1 + 5


def assert_one_error_line(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    for fragment in fragments:
        assert fragment in line, line


def test_a_missing_export_dir_is_one_error_line(tmp_path, write_recording, cli):
    path = write_recording("rec", 8)

    result = cli("predict", str(path), "--model-dir", str(tmp_path / "nowhere"))

    assert_one_error_line(result, "nowhere", "export directory not found")


def test_an_export_dir_without_the_scaler_is_one_error_line(
    tmp_path, write_recording, cli
):
    path = write_recording("rec", 8)
    export_dir = write_export(tmp_path / "export")
    (export_dir / "scaler.parquet").unlink()

    result = cli("predict", str(path), "--model-dir", str(export_dir))

    assert_one_error_line(result, "scaler.parquet: not found")


def test_text_in_a_kpi_column_is_one_error_line_in_batch_mode(
    tmp_path, write_recording, cli
):
    rows = fcciq_rows(8)
    rows.loc[3, "RSRQ"] = "n/a"
    path = write_recording("rec", rows=rows)
    export_dir = write_export(tmp_path / "export")

    result = cli("predict", str(path), "--model-dir", str(export_dir))

    assert_one_error_line(result, "column 'RSRQ', line 5", "is not a number")


def test_predict_needs_an_input_or_follow(tmp_path, cli):
    export_dir = write_export(tmp_path / "export")

    result = cli("predict", "--model-dir", str(export_dir))

    assert_one_error_line(result, "INPUT.csv", "--follow")
