import json
import math
import signal
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import START, fcciq_rows, snapshot, write_fcciq_csv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlnet.config import DataConfig, GraphConfig, load_params
from mtlnet.dataset import PreparedData
from mtlnet.errors import MtlnetError
from mtlnet.prepare import find_recordings, prepare
from mtlnet.windows import SPLITS

KPIS = ["RSRP", "RSRQ", "SINR"]


def run(directory: Path, data_dir: Path, **data_options) -> tuple[dict, dict]:
    """Run the stage on ``data_dir``; the summary and the tables read back."""
    options = {"window": 4, "horizon": 1, **data_options}
    data = DataConfig(dir=str(data_dir), **options)
    output_dir = directory / "stages" / "prepare"
    metrics_path = directory / "metrics" / "data.json"

    summary = prepare(
        data=data,
        graph=GraphConfig(),
        output_dir=output_dir,
        metrics_path=metrics_path,
    )

    assert json.loads(metrics_path.read_text()) == summary
    tables = {
        name: pd.read_parquet(output_dir / f"{name}.parquet")
        for name in ("nodes", "windows", "edges", "scaler")
    }
    return summary, tables


def counting_rows(num_rows: int, labels=None) -> pd.DataFrame:
    """RSRP = row index, RSRQ = -row index, SINR = 2 * row index."""
    index = np.arange(num_rows, dtype=float)
    return fcciq_rows(
        num_rows,
        rsrp=index,
        rsrq=-index,
        sinr=2 * index,
        labels=labels if labels is not None else [0] * num_rows,
    )


HALVES = {"train_fraction": 0.5, "val_fraction": 0.25, "test_fraction": 0.25}


@pytest.mark.parametrize(
    ("horizon", "starts"),
    [
        (1, [*range(0, 16), *range(20, 26), *range(30, 36)]),
        (3, [*range(0, 14), *range(20, 24), *range(30, 34)]),
    ],
)
def test_windows_and_targets_line_up_with_their_rows(
    tmp_path, write_recording, data_dir, horizon, starts
):
    labels = [int(i % 3 == 0) for i in range(40)]
    write_recording("lvl", rows=counting_rows(40, labels))

    summary, tables = run(tmp_path, data_dir, horizon=horizon, **HALVES)

    windows, nodes = tables["windows"], tables["nodes"]
    assert windows["first"].tolist() == starts
    # The scaler's mean and (population) std of the train rows' 0, 1, ..., 19.
    mean, std = 9.5, math.sqrt((20**2 - 1) / 12)
    for k, first in enumerate(starts):
        last = first + 3
        target = last + horizon
        window = windows.iloc[k]
        x_rows = nodes.iloc[first : first + 4]
        assert x_rows["row"].tolist() == [first, first + 1, first + 2, first + 3]
        assert x_rows["RSRP"].to_numpy() == pytest.approx(
            (np.arange(first, first + 4) - mean) / std
        )
        assert x_rows["RSRQ"].to_numpy() == pytest.approx(
            (-np.arange(first, first + 4) + mean) / std
        )
        assert window["target_RSRP"] == target
        assert window["target_RSRQ"] == -target
        assert window["target_SINR"] == 2 * target
        assert window["target_RSRP_scaled"] == pytest.approx((target - mean) / std)
        assert window["target_SINR_scaled"] == pytest.approx((target - mean) / std)
        assert window["last_RSRP"] == last
        assert window["last_RSRP_scaled"] == pytest.approx((last - mean) / std)
        assert window["label"] == labels[last]
        assert window["time"] == nodes["time"].iloc[last]
    # Rows 0-19 train, 20-29 validate, 30-39 test.
    splits = ["train" if s < 20 else "val" if s < 30 else "test" for s in starts]
    assert windows["split"].tolist() == splits
    train_starts = [s for s in starts if s < 20]
    assert summary["train"]["positives"] == sum(labels[s + 3] for s in train_starts)


def training_rows_and_wild_rest(num_rows: int, seed: int) -> pd.DataFrame:
    """Train rows near -90 dBm; validation and test rows far off."""
    rng = np.random.default_rng(seed)
    values = rng.normal(-90.0, 4.0, size=(num_rows, 3))
    train_end = math.floor(num_rows * 0.8)
    values[train_end:] = rng.normal(5000.0, 900.0, size=(num_rows - train_end, 3))
    return fcciq_rows(num_rows, rsrp=values[:, 0], rsrq=values[:, 1], sinr=values[:, 2])


@pytest.mark.parametrize("scaler", ["global", "recording"])
def test_scalers_are_fitted_on_training_rows_only(
    tmp_path, write_recording, data_dir, scaler
):
    rows = {"a": training_rows_and_wild_rest(30, 1)}
    rows["b"] = training_rows_and_wild_rest(55, 2)
    for name, frame in rows.items():
        write_recording(name, rows=frame)

    _, tables = run(tmp_path, data_dir, scaler=scaler)

    train = {
        name: frame.iloc[: math.floor(len(frame) * 0.8)][KPIS].astype(float)
        for name, frame in rows.items()
    }
    fitted = tables["scaler"].set_index(["scope", "column"])
    scopes = {"*": pd.concat(train.values())} if scaler == "global" else train
    assert sorted(fitted.index) == sorted((s, c) for s in scopes for c in KPIS)
    for scope, frame in scopes.items():
        for column in KPIS:
            mean, scale = fitted.loc[(scope, column), ["mean", "scale"]]
            assert mean == pytest.approx(frame[column].mean(), rel=1e-12)
            assert scale == pytest.approx(frame[column].std(ddof=0), rel=1e-12)
            assert -100 < mean < -80


@pytest.mark.parametrize("scaler", ["global", "recording"])
def test_each_column_is_scaled_exactly_once(
    tmp_path, write_recording, data_dir, scaler
):
    rsrp = {"a": -105.0 + np.arange(50) % 17, "b": -80.0 - np.arange(70) % 11}
    for name, values in rsrp.items():
        write_recording(name, len(values), rsrp=values)

    _, tables = run(tmp_path, data_dir, scaler=scaler)

    nodes, scaler_table = tables["nodes"], tables["scaler"]
    train = nodes[nodes["split"] == "train"]
    groups = (
        [train] if scaler == "global" else [g for _, g in train.groupby("recording")]
    )
    for group in groups:
        for column in KPIS:
            assert group[column].mean() == pytest.approx(0.0, abs=1e-12)
            assert group[column].std(ddof=0) == pytest.approx(1.0, rel=1e-12)
    # Inverse scaling gives the dBm of the file back, for every row.
    for name, values in rsrp.items():
        scope = "*" if scaler == "global" else name
        entry = scaler_table[
            (scaler_table["scope"] == scope) & (scaler_table["column"] == "RSRP")
        ].iloc[0]
        scaled = nodes.loc[nodes["recording"] == name, "RSRP"].to_numpy()
        assert scaled * entry["scale"] + entry["mean"] == pytest.approx(values)


def test_no_window_crosses_a_split_a_long_gap_or_a_recording(
    tmp_path, write_recording, data_dir
):
    write_recording("a", 50, gaps={7: 5.0, 13: 5.5, 30: 120.0})
    write_recording("b", 31, gaps={20: 9.0})

    _, tables = run(tmp_path, data_dir, max_gap_s=5.0)

    nodes, windows = tables["nodes"], tables["windows"]
    assert len(windows) > 0
    for first in windows["first"]:
        rows = nodes.iloc[first : first + 4 + 1]  # window 4 and the target after it
        assert rows["recording"].nunique() == 1
        assert rows["split"].nunique() == 1
        assert rows["row"].diff().iloc[1:].eq(1).all()
        assert (rows["time"].diff().iloc[1:].dt.total_seconds() <= 5.0).all()
    starts_a = windows.loc[windows["recording"] == "a", "first"].tolist()
    # The 5.0 s gap before row 7 joins; the 5.5 s gap before row 13 breaks.
    assert 5 in starts_a
    assert not set(range(9, 13)) & set(starts_a)
    assert 13 in starts_a


def test_rows_are_split_at_floor_of_eighty_and_ninety_percent(
    tmp_path, write_recording, data_dir
):
    write_recording("a", 23)
    write_recording("b", 47)

    _, tables = run(tmp_path, data_dir)

    nodes = tables["nodes"]
    for name, num_rows in (("a", 23), ("b", 47)):
        split = nodes.loc[nodes["recording"] == name, "split"].tolist()
        train_end, val_end = math.floor(num_rows * 0.8), math.floor(num_rows * 0.9)
        assert (train_end, val_end) == ((18, 20) if name == "a" else (37, 42))
        assert split == (
            ["train"] * train_end
            + ["val"] * (val_end - train_end)
            + ["test"] * (num_rows - val_end)
        )


def test_counts_of_data_json_follow_the_cleaning(tmp_path, write_recording, data_dir):
    rows = fcciq_rows(30)
    rows.loc[3, "SINR"] = "-"
    rows.loc[4, "SINR"] = ""
    rows.loc[9, "RSRQ"] = "-"
    rows.loc[11, "PDSCH_MCS"] = "-"
    duplicates = rows.iloc[[20, 21]]
    write_recording("a", rows=pd.concat([rows, duplicates]).iloc[::-1])
    write_recording("b", 25)

    summary, tables = run(tmp_path, data_dir)

    assert summary["missing_cells"] == {"RSRQ": 1, "SINR": 2}
    assert summary["dropped_rows"] == 3
    assert summary["duplicate_rows"] == 2
    assert summary["recordings"]["a"]["rows"] == 27
    assert summary["recordings"]["a"]["missing_cells"] == {"RSRQ": 1, "SINR": 2}
    assert summary["recordings"]["b"]["missing_cells"] == {}
    assert summary["rows"] == 27 + 25 == len(tables["nodes"])
    assert summary["edges"] == len(tables["edges"]) == 2 * (3 + 2)
    for split in SPLITS:
        of_split = tables["windows"][tables["windows"]["split"] == split]
        assert summary[split] == {
            "windows": len(of_split),
            "positives": int(of_split["label"].sum()),
        }


def test_data_json_holds_numbers_only(tmp_path, write_recording, data_dir):
    rows = fcciq_rows(30)
    rows.loc[3, "SINR"] = "-"
    write_recording("a", rows=rows)

    summary, _ = run(tmp_path, data_dir)

    def leaves(value):
        if isinstance(value, dict):
            for item in value.values():
                yield from leaves(item)
        else:
            yield value

    assert all(type(v) is int or type(v) is float for v in leaves(summary))


def test_features_are_nodes_and_other_targets_only_windows(
    tmp_path, write_recording, data_dir
):
    write_recording("a", 30)

    _, tables = run(
        tmp_path, data_dir, features=("RSRP", "PDSCH_MCS"), targets=("SINR",)
    )

    assert list(tables["nodes"].columns) == [
        "recording",
        "row",
        "time",
        "split",
        "RSRP",
        "PDSCH_MCS",
    ]
    assert [c for c in tables["windows"].columns if "SINR" in c] == [
        "target_SINR",
        "target_SINR_scaled",
        "last_SINR",
        "last_SINR_scaled",
    ]
    assert set(tables["scaler"]["column"]) == {"RSRP", "PDSCH_MCS", "SINR"}
    # A constant column (PDSCH_MCS is 19.0 throughout) scales to zero.
    assert (tables["nodes"]["PDSCH_MCS"] == 0.0).all()


def test_two_runs_write_identical_bytes(tmp_path, write_recording, data_dir):
    rows = fcciq_rows(40, gaps={17: 30.0})
    rows.loc[5, "SINR"] = "-"
    write_recording("a", rows=pd.concat([rows, rows.iloc[[8]]]))
    write_recording("b", 33)

    run(tmp_path / "one", data_dir, scaler="recording")
    run(tmp_path / "two", data_dir, scaler="recording")
    first = snapshot(tmp_path / "one")
    run(tmp_path / "one", data_dir, scaler="recording")

    assert sorted(first) == [
        "metrics/data.json",
        "stages/prepare/edges.parquet",
        "stages/prepare/nodes.parquet",
        "stages/prepare/scaler.parquet",
        "stages/prepare/windows.parquet",
    ]
    assert snapshot(tmp_path / "two") == first
    assert snapshot(tmp_path / "one") == first


def test_a_recording_shorter_than_one_window_and_target_is_named(
    tmp_path, write_recording, data_dir
):
    write_recording("long", 30)
    write_recording("short", 4)

    with pytest.raises(MtlnetError) as caught:
        run(tmp_path, data_dir)

    assert str(caught.value) == (
        f"{data_dir / 'short.csv'}: 4 usable rows, shorter than one window and "
        "its target (5 rows: data.window + data.horizon)"
    )
    assert not (tmp_path / "stages").exists()
    assert not (tmp_path / "metrics").exists()


def test_a_recording_of_window_and_horizon_rows_is_accepted(
    tmp_path, write_recording, data_dir
):
    write_recording("a", 30)
    write_recording("b", 5)

    summary, _ = run(tmp_path, data_dir)

    assert summary["recordings"]["b"]["rows"] == 5
    assert summary["recordings"]["b"]["train"]["windows"] == 0


def test_recordings_are_found_in_subfolders_sorted_and_csv_only(data_dir):
    write_fcciq_csv(data_dir / "b.csv", fcciq_rows(2))
    write_fcciq_csv(data_dir / "sub" / "a.CSV", fcciq_rows(2))
    (data_dir / "README.md").write_text("not a recording")
    (data_dir / "a.csv.dvc").write_text("outs: []")

    assert find_recordings(data_dir) == [data_dir / "b.csv", data_dir / "sub/a.CSV"]


def test_two_recordings_of_one_name_are_refused(tmp_path, data_dir):
    write_fcciq_csv(data_dir / "x" / "lvl.csv", fcciq_rows(30))
    write_fcciq_csv(data_dir / "y" / "lvl.csv", fcciq_rows(30))

    with pytest.raises(MtlnetError, match="two recordings are named 'lvl'"):
        run(tmp_path, data_dir)


def test_a_missing_data_dir_and_an_empty_one_are_named(tmp_path):
    with pytest.raises(MtlnetError, match="data directory not found"):
        find_recordings(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("")
    with pytest.raises(MtlnetError, match="empty: no CSV file found"):
        find_recordings(tmp_path / "empty")


def reference_windows(
    recordings: dict[str, tuple[list, list, list]], data: DataConfig
) -> list[tuple]:
    """Every window by a plain loop: (recording, start, split, label, RSRP target)."""
    found = []
    for name, (seconds, rsrp, labels) in recordings.items():
        n = len(seconds)
        train_end = math.floor(n * Fraction(str(data.train_fraction)))
        val_end = math.floor(
            n * (Fraction(str(data.train_fraction)) + Fraction(str(data.val_fraction)))
        )

        def split_of(row, train_end=train_end, val_end=val_end):
            return "train" if row < train_end else "val" if row < val_end else "test"

        for start in range(n):
            target = start + data.window - 1 + data.horizon
            if target >= n:
                break
            rows = range(start, target + 1)
            if len({split_of(r) for r in rows}) > 1:
                continue
            if any(seconds[r] - seconds[r - 1] > data.max_gap_s for r in rows[1:]):
                continue
            last = start + data.window - 1
            found.append((name, start, split_of(start), labels[last], rsrp[target]))
    return found


@st.composite
def recordings_and_params(draw):
    window = draw(st.integers(2, 6))
    horizon = draw(st.integers(1, 3))
    max_gap_s = draw(st.sampled_from([1.0, 2.0, 5.0]))
    train = draw(st.sampled_from([0.5, 0.6, 0.7, 0.8]))
    val = draw(st.sampled_from([0.1, 0.15]))
    data = DataConfig(
        window=window,
        horizon=horizon,
        max_gap_s=max_gap_s,
        train_fraction=train,
        val_fraction=val,
        test_fraction=round(1 - train - val, 10),
    )
    recordings = {}
    for name in draw(st.sampled_from([["a"], ["a", "b"], ["a", "b", "c"]])):
        n = draw(st.integers(window + horizon, 60))
        steps = draw(
            st.lists(
                st.sampled_from([0.5] * 12 + [1.0, max_gap_s, max_gap_s + 0.5, 30]),
                min_size=n - 1,
                max_size=n - 1,
            )
        )
        seconds = np.concatenate([[0.0], np.cumsum(steps)]).tolist()
        rsrp = draw(st.lists(st.integers(-140, -40), min_size=n, max_size=n))
        labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
        recordings[name] = (seconds, [float(v) for v in rsrp], labels)
    return recordings, data


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=recordings_and_params())
def test_windows_match_a_brute_force_reference(tmp_path, case):
    recordings, data = case
    with tempfile.TemporaryDirectory(dir=tmp_path) as scratch:
        root = Path(scratch)
        for name, (seconds, rsrp, labels) in recordings.items():
            times = [START + pd.Timedelta(seconds=s) for s in seconds]
            rows = fcciq_rows(len(seconds), times=times, rsrp=rsrp, labels=labels)
            write_fcciq_csv(root / "data" / f"{name}.csv", rows)
        options = {k: getattr(data, k) for k in ("window", "horizon", "max_gap_s")}
        fractions = ("train_fraction", "val_fraction", "test_fraction")
        options |= {k: getattr(data, k) for k in fractions}

        summary, tables = run(root, root / "data", **options)

    nodes, windows = tables["nodes"], tables["windows"]
    expected = reference_windows(recordings, data)
    offsets = nodes.groupby("recording", sort=False).size().cumsum().shift(fill_value=0)
    found = [
        (w.recording, w.first - offsets[w.recording], w.split, w.label, w.target_RSRP)
        for w in windows.itertuples()
    ]
    assert found == expected
    # Every row of a window and its target: one recording, one split, no long gap.
    first = windows["first"].to_numpy()
    seconds = (nodes["time"] - nodes["time"].iloc[0]).dt.total_seconds().to_numpy()
    for step in range(1, data.window + data.horizon):
        row, before = first + step, first + step - 1
        for column in ("recording", "split"):
            values = nodes[column].to_numpy()
            assert (values[row] == values[first]).all()
        assert (seconds[row] - seconds[before] <= data.max_gap_s).all()
    for split in SPLITS:
        assert summary[split]["windows"] == sum(e[2] == split for e in expected)
        assert summary[split]["positives"] == sum(
            e[3] for e in expected if e[2] == split
        )
        for name in recordings:
            of_recording = windows[
                (windows["recording"] == name) & (windows["split"] == split)
            ]
            assert summary["recordings"][name][split] == {
                "windows": len(of_recording),
                "positives": int(of_recording["label"].sum()),
            }


KILL_MID_WRITE = """
import os, signal, sys
from pathlib import Path
import pandas as pd
from mtlnet.config import load_params
from mtlnet.prepare import prepare

def half_then_die(frame, path, **kwargs):
    Path(path).write_bytes(b"PAR1 half a parquet file")
    os.kill(os.getpid(), signal.SIGKILL)

pd.DataFrame.to_parquet = half_then_die
params = load_params("params.yaml")
prepare(data=params.data, graph=params.graph, output_dir=Path("stages/prepare"),
        metrics_path=Path("metrics/data.json"))
"""


def test_a_stage_killed_mid_write_leaves_the_previous_outputs_readable(
    project, write_recording
):
    write_recording("lvl", 60)
    prepare_project(project)
    before = snapshot(project / "stages") | snapshot(project / "metrics")
    write_recording("lvl", 80)

    died = subprocess.run(
        [sys.executable, "-c", KILL_MID_WRITE], cwd=project, check=False
    )

    assert died.returncode == -signal.SIGKILL
    after = snapshot(project / "stages") | snapshot(project / "metrics")
    visible = {k: v for k, v in after.items() if not Path(k).name.startswith(".")}
    assert visible == before
    assert not (project / "stages" / ".prepare.old").exists()
    PreparedData.load(project / "stages" / "prepare", DataConfig(dir="data", window=4))


def prepare_project(root: Path) -> None:
    params = load_params(root / "params.yaml")
    prepare(
        data=params.data,
        graph=params.graph,
        output_dir=root / "stages" / "prepare",
        metrics_path=root / "metrics" / "data.json",
    )
