import json

import pandas as pd
import pytest
from conftest import FCCIQ_COLUMNS, START, fcciq_rows

from mtlnet.config import DataConfig
from mtlnet.errors import MtlnetError
from mtlnet.recordings import numeric_columns, read_recording, required_columns

DATA = DataConfig(window=4)
NOT_A_TIME = "is not a time (expected YYYY-MM-DD HH:MM:SS.fff)"


def error_of(path, data=DATA) -> str:
    with pytest.raises(MtlnetError) as caught:
        read_recording(path, data)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


def test_required_columns_put_time_first_and_name_each_column_once():
    data = DataConfig(features=("RSRP", "SINR"), targets=("SINR", "RSRQ"))

    assert required_columns(data, with_label=True) == [
        "Time",
        "RSRP",
        "SINR",
        "RSRQ",
        "lab_inf",
    ]
    assert required_columns(data, with_label=False)[-1] == "RSRQ"
    assert numeric_columns(data) == ["RSRP", "SINR", "RSRQ"]


def test_a_clean_recording_is_read_with_its_values_and_labels(write_recording):
    path = write_recording("lvl", 6, rsrp=[-80.5, -81, -82, -83, -84, -85])

    recording = read_recording(path, DATA)

    assert recording.name == "lvl"
    assert list(recording.frame.columns) == ["time", "RSRP", "RSRQ", "SINR", "label"]
    assert recording.frame["RSRP"].tolist() == [-80.5, -81, -82, -83, -84, -85]
    assert recording.frame["label"].tolist() == [0, 0, 0, 0, 0, 1]
    assert recording.frame["time"].iloc[1] - recording.frame["time"].iloc[0] == (
        pd.Timedelta(seconds=0.5)
    )
    assert (recording.dropped_rows, recording.duplicate_rows) == (0, 0)
    assert not recording.missing_cells


def test_rows_out_of_time_order_are_sorted_with_their_values(write_recording):
    rows = fcciq_rows(5, rsrp=[0, 1, 2, 3, 4])
    path = write_recording(rows=rows.iloc[[3, 0, 4, 2, 1]])

    frame = read_recording(path, DATA).frame

    assert frame["RSRP"].tolist() == [0, 1, 2, 3, 4]
    assert frame["time"].is_monotonic_increasing


def test_duplicate_timestamps_keep_the_last_row_logged(write_recording):
    rows = fcciq_rows(4, rsrp=[0, 1, 2, 3])
    again = rows.iloc[[1, 1]].assign(RSRP=["10.0", "11.0"])
    path = write_recording(rows=pd.concat([rows, again]))

    recording = read_recording(path, DATA)

    assert recording.frame["RSRP"].tolist() == [0, 11, 2, 3]
    assert recording.duplicate_rows == 2
    assert recording.frame["time"].is_unique


def test_missing_markers_drop_the_row_and_are_counted_per_column(write_recording):
    rows = fcciq_rows(6, rsrp=[0, 1, 2, 3, 4, 5])
    rows.loc[1, "SINR"] = "-"
    rows.loc[2, "SINR"] = ""
    rows.loc[2, "RSRQ"] = " - "
    rows.loc[4, "lab_inf"] = "-"
    rows.loc[5, "PDSCH_MCS"] = ""
    path = write_recording(rows=rows)

    recording = read_recording(path, DATA)

    assert recording.frame["RSRP"].tolist() == [0, 3, 5]
    assert recording.missing_cells == {"SINR": 2, "RSRQ": 1, "lab_inf": 1}
    assert recording.dropped_rows == 3


def test_a_missing_time_drops_the_row(write_recording):
    rows = fcciq_rows(3, rsrp=[0, 1, 2])
    rows.loc[1, "Time"] = "-"
    path = write_recording(rows=rows)

    recording = read_recording(path, DATA)

    assert recording.frame["RSRP"].tolist() == [0, 2]
    assert recording.missing_cells == {"Time": 1}


def test_missing_markers_come_from_the_params(write_recording):
    rows = fcciq_rows(3)
    rows.loc[1, "SINR"] = "NA"
    path = write_recording(rows=rows)
    data = DataConfig(window=4, missing_values=("NA",))

    assert read_recording(path, data).missing_cells == {"SINR": 1}
    assert "line 3: 'NA' is not a number" in error_of(path)


def test_blanks_around_cells_are_ignored(write_recording):
    rows = fcciq_rows(2, rsrp=[-80, -81])
    rows.loc[0, "RSRP"] = "  -79.5 "
    path = write_recording(rows=rows)

    assert read_recording(path, DATA).frame["RSRP"].tolist() == [-79.5, -81]


def test_a_label_column_is_not_needed_without_labels(write_recording):
    path = write_recording(rows=fcciq_rows(3).drop(columns=["lab_inf"]))

    frame = read_recording(path, DATA, with_label=False).frame

    assert "label" not in frame.columns
    assert len(frame) == 3


@pytest.mark.parametrize("column", ["Time", "RSRP", "SINR", "lab_inf"])
def test_a_missing_required_column_is_named(write_recording, column):
    path = write_recording(rows=fcciq_rows(3).drop(columns=[column]))

    found = ", ".join(c for c in FCCIQ_COLUMNS if c != column)
    assert error_of(path) == (
        f"{path}: missing required column {column!r} (found: {found})"
    )


@pytest.mark.parametrize(
    ("column", "cell", "expected"),
    [
        ("RSRP", "-80,5", "'-80,5' is not a number"),
        ("RSRQ", "low", "'low' is not a number"),
        ("SINR", "nan", "'nan' is not a number"),
        ("SINR", "inf", "'inf' is not a number"),
        ("RSRP", "--", "'--' is not a number"),
        ("lab_inf", "2", "'2' is not a label (expected 0 or 1)"),
        ("lab_inf", "0.5", "'0.5' is not a label (expected 0 or 1)"),
        ("lab_inf", "yes", "'yes' is not a label (expected 0 or 1)"),
        ("Time", "yesterday", f"'yesterday' {NOT_A_TIME}"),
        ("Time", "2022-13-04 10:00:00", f"'2022-13-04 10:00:00' {NOT_A_TIME}"),
    ],
)
def test_a_bad_cell_is_named_by_file_column_line_and_value(
    write_recording, column, cell, expected
):
    rows = fcciq_rows(6)
    rows.loc[3, column] = cell
    path = write_recording(rows=rows)

    message = error_of(path)

    # Row 3 of the data is line 5 of the file: the header is line 1.
    assert message == f"{path}: column {column!r}, line 5: {expected}"


def test_a_time_zone_change_is_named_by_its_line(write_recording):
    rows = fcciq_rows(4)
    rows.loc[2, "Time"] = "2022-10-04T15:52:23+02:00"
    path = write_recording(rows=rows)

    message = error_of(path)

    assert "column 'Time', line 4: '2022-10-04T15:52:23+02:00'" in message
    assert "time zone" in message


def test_a_label_of_one_point_zero_is_a_one(write_recording):
    rows = fcciq_rows(3, labels=[0, 0, 0])
    rows.loc[2, "lab_inf"] = "1.0"
    path = write_recording(rows=rows)

    assert read_recording(path, DATA).frame["label"].tolist() == [0, 0, 1]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "empty file"),
        ("\n  \n", "empty file"),
        (b"\xef\xbb\xbf", "empty file"),
        (",".join(fcciq_rows(0).columns) + "\n", "header only, no data rows"),
        (bytes(range(256)) * 4, "not a CSV file (binary content)"),
        (b"Time,RSRP\n\xe9t\xe9,1\n", "not a CSV file (not UTF-8 text)"),
        ('{\n  "Time": 1,\n  "RSRP": 2\n}\n', "not a CSV file"),
        ('{"Time": "2022-10-04", "RSRP": -80}', "missing required column 'Time'"),
        ("hello world\n", "not a CSV file (the header 'hello world' has no commas)"),
        ('Time,RSRP\n"2022-10-04,1\n', "not a CSV file (Error tokenizing data"),
    ],
)
def test_a_file_that_is_not_a_recording_is_one_clear_error(
    write_recording, content, expected
):
    path = write_recording(content=content)

    assert expected in error_of(path)


def test_a_row_with_more_cells_than_the_header_names_its_line(write_recording):
    lines = fcciq_rows(4).to_csv(index=False).splitlines()
    lines[2] += ",surplus"
    path = write_recording(content="\n".join(lines) + "\n")

    assert "Expected 19 fields in line 3, saw 20" in error_of(path)


def test_a_json_array_of_records_is_refused(write_recording):
    records = [{"Time": "2022-10-04 15:52:22.917", "RSRP": -80.0}] * 3
    path = write_recording(content=json.dumps(records, indent=2))

    assert "not a CSV file" in error_of(path)


def test_times_keep_millisecond_precision(write_recording):
    path = write_recording(rows=fcciq_rows(2, step_s=0.123))

    times = read_recording(path, DATA).frame["time"]

    assert times.tolist() == [START, START + pd.Timedelta(milliseconds=123)]
