import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import fcciq_rows, snapshot, write_params

ROOT = Path(__file__).resolve().parents[1]


def outputs(project: Path) -> dict[str, bytes]:
    """The stage's outputs, byte for byte."""
    return {
        f"{folder}/{name}": content
        for folder in ("stages", "metrics")
        for name, content in snapshot(project / folder).items()
    }


def assert_one_clear_error(result, *fragments: str) -> str:
    """Exit 1 from an MtlnetError: one stderr line holding every fragment."""
    assert result.exit_code == 1, result.output
    assert type(result.exception) is SystemExit, result.exception
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    (line,) = lines
    assert line.startswith("error: ")
    for fragment in fragments:
        assert fragment in line
    return line


@pytest.fixture
def prepared(project, write_recording, cli) -> dict[str, bytes]:
    """A good run in ``project``: two recordings; its outputs, byte for byte."""
    write_recording("lvl_4", 40)
    write_recording("lvl_5", 30)
    result = cli("prepare")
    assert result.exit_code == 0, result.output
    return outputs(project)


def test_prepare_writes_the_tables_and_data_json(project, prepared):
    assert sorted(prepared) == [
        "metrics/data.json",
        "stages/prepare/edges.parquet",
        "stages/prepare/nodes.parquet",
        "stages/prepare/scaler.parquet",
        "stages/prepare/windows.parquet",
    ]
    summary = json.loads(prepared["metrics/data.json"])
    assert summary["rows"] == 70
    assert sorted(summary["recordings"]) == ["lvl_4", "lvl_5"]
    windows = pd.read_parquet(project / "stages" / "prepare" / "windows.parquet")
    # window 4, horizon 1: train rows 0-31 and 0-23 hold 28 + 20 windows.
    assert summary["train"]["windows"] == 48 == (windows["split"] == "train").sum()


def test_prepare_reads_the_params_file_it_is_given(project, write_recording, cli):
    write_recording("lvl", 30)
    write_params(project / "other.yaml", data={"window": 6})

    result = cli("prepare", "--params", "other.yaml")

    assert result.exit_code == 0, result.output
    summary = json.loads((project / "metrics" / "data.json").read_text())
    assert summary["train"]["windows"] == 24 - 6
    edges = pd.read_parquet(project / "stages" / "prepare" / "edges.parquet")
    assert len(edges) == 2 * (5 + 4)


def test_the_missing_marker_is_counted_not_refused(
    project, prepared, write_recording, cli
):
    rows = fcciq_rows(30)
    rows.loc[[2, 7], "SINR"] = "-"
    rows.loc[9, "RSRQ"] = ""
    write_recording("lvl_5", rows=rows)

    result = cli("prepare")

    assert result.exit_code == 0, result.output
    summary = json.loads((project / "metrics" / "data.json").read_text())
    assert summary["missing_cells"] == {"RSRQ": 1, "SINR": 2}
    assert summary["recordings"]["lvl_5"]["missing_cells"] == {"RSRQ": 1, "SINR": 2}
    assert summary["recordings"]["lvl_5"]["rows"] == 27


def bad_rows(column: str, row: int, cell: str) -> pd.DataFrame:
    rows = fcciq_rows(30)
    rows.loc[row, column] = cell
    return rows


# Each case: what the bad file holds, and what the error line must say.
BAD_FILES = {
    "missing column": (
        {"rows": fcciq_rows(30).drop(columns=["SINR"])},
        ["missing required column 'SINR'"],
    ),
    "text in a number": (
        {"rows": bad_rows("RSRP", 6, "weak")},
        ["column 'RSRP', line 8: 'weak' is not a number"],
    ),
    "label outside 0 and 1": (
        {"rows": bad_rows("lab_inf", 11, "2")},
        ["column 'lab_inf', line 13: '2' is not a label (expected 0 or 1)"],
    ),
    "time that does not parse": (
        {"rows": bad_rows("Time", 0, "noon")},
        ["column 'Time', line 2: 'noon' is not a time"],
    ),
    "empty file": ({"content": ""}, ["empty file"]),
    "header only": ({"content": ",".join(fcciq_rows(0).columns)}, ["header only"]),
    "shorter than a window": (
        {"rows": fcciq_rows(4)},
        ["4 usable rows, shorter than one window and its target (5 rows"],
    ),
    "binary bytes": ({"content": bytes(range(256))}, ["not a CSV file (binary"]),
    "json text": (
        {"content": json.dumps({"Time": ["2022-10-04"], "RSRP": [-80]}, indent=2)},
        ["not a CSV file ("],
    ),
    "one-line json": (
        {"content": json.dumps({"Time": "2022-10-04", "RSRP": -80})},
        ["missing required column 'Time'"],
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_recording_is_one_line_and_keeps_the_outputs(
    project, prepared, write_recording, cli, case
):
    options, fragments = BAD_FILES[case]
    path = write_recording("lvl_6", **options)

    result = cli("prepare")

    assert_one_clear_error(result, f"error: {path.relative_to(project)}: ", *fragments)
    assert outputs(project) == prepared


def test_a_data_dir_without_csv_is_named(project, prepared, data_dir, cli):
    for path in data_dir.glob("*.csv"):
        path.unlink()
    (data_dir / "notes.md").write_text("no recordings here")

    result = cli("prepare")

    assert_one_clear_error(result, "error: data: no CSV file found (data.dir)")
    assert outputs(project) == prepared


def test_a_data_dir_that_does_not_exist_is_named(project, prepared, cli):
    write_params(project / "params.yaml", data={"dir": "dataset/nowhere"})

    result = cli("prepare")

    assert_one_clear_error(
        result, "error: dataset/nowhere: data directory not found (data.dir)"
    )
    assert outputs(project) == prepared


BAD_PARAMS = {
    "unknown key": ({"data": {"windows": 4}}, "unknown key data.windows; allowed:"),
    "wrong type": ({"data": {"window": "four"}}, "data.window: expected an integer"),
    "negative window": ({"data": {"window": -4}}, "data.window: must be at least 2"),
    "fractions": (
        {"data": {"train_fraction": 0.9}},
        "train, val and test fractions must sum to 1, not 1.1",
    ),
    "label as feature": (
        {"data": {"features": ["RSRP", "lab_inf"]}},
        "data.features: 'lab_inf' is a label column and can never be a model input",
    ),
    "unknown architecture": (
        {"models": ["stl", "gat"], "model": "stl"},
        "models: unknown architecture 'gat'; allowed: stl, hardsharing, mmoe,",
    ),
    "model not in models": (
        {"models": ["stl", "mmoe"], "model": "ple"},
        "model: 'ple' is not in models; allowed: stl, mmoe",
    ),
    "unknown weighting": (
        {"train": {"weighting": "pcgrad"}},
        "train.weighting: 'pcgrad' is not one of equal, uncertainty, dwa",
    ),
}


@pytest.mark.parametrize("case", BAD_PARAMS)
def test_a_bad_parameter_is_one_line_and_keeps_the_outputs(
    project, prepared, cli, case
):
    blocks, fragment = BAD_PARAMS[case]
    write_params(project / "params.yaml", **blocks)

    result = cli("prepare")

    assert_one_clear_error(result, "error: params.yaml: ", fragment)
    assert outputs(project) == prepared


def test_a_missing_params_file_is_one_line(project, cli):
    result = cli("prepare", "--params", "nope.yaml")

    assert_one_clear_error(result, "error: nope.yaml: parameter file not found")
    assert not (project / "stages").exists()


def run_module(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "mtlnet", *args],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_python_dash_m_mtlnet_prepare_runs_and_fails_cleanly(project, write_recording):
    write_recording("lvl_4", 30)

    good = run_module(project, "prepare")
    before = outputs(project)
    write_recording("lvl_5", rows=bad_rows("SINR", 3, "n/a"))
    bad = run_module(project, "prepare")

    assert good.returncode == 0, good.stderr
    assert "INFO mtlnet.prepare: prepared 1 recordings: 30 rows" in good.stderr
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert bad.stderr == (
        "error: data/lvl_5.csv: column 'SINR', line 5: 'n/a' is not a number\n"
    )
    assert outputs(project) == before
