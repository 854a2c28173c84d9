import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import fcciq_rows, write_fcciq_csv

from mtlnet.config import DataConfig, GraphConfig
from mtlnet.dataset import PreparedData, input_channels
from mtlnet.errors import MtlnetError
from mtlnet.prepare import prepare

WINDOW = 4
# The loader does not read data.dir.
DATA = DataConfig(dir="data", window=WINDOW, horizon=2)


@pytest.fixture(scope="module")
def prepared_once(tmp_path_factory) -> Path:
    """Two small recordings (one with a long gap) through the stage, once."""
    root = tmp_path_factory.mktemp("prepared")
    write_fcciq_csv(root / "data" / "a.csv", fcciq_rows(80, gaps={25: 60.0}))
    write_fcciq_csv(root / "data" / "b.csv", fcciq_rows(60))
    prepare(
        data=dataclasses.replace(DATA, dir=str(root / "data")),
        graph=GraphConfig(offsets=(1, 2)),
        output_dir=root / "stages" / "prepare",
        metrics_path=root / "data.json",
    )
    return root / "stages" / "prepare"


@pytest.fixture
def prepared(prepared_once, tmp_path) -> tuple[Path, DataConfig]:
    """A copy of the stage's folder that a test may break, and its data params."""
    directory = tmp_path / "prepare"
    shutil.copytree(prepared_once, directory)
    return directory, DATA


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_a_split_gathers_each_window_of_its_rows(prepared, split):
    directory, data = prepared
    nodes = pd.read_parquet(directory / "nodes.parquet")
    windows = pd.read_parquet(directory / "windows.parquet")
    windows = windows[windows["split"] == split].reset_index(drop=True)

    tensors = PreparedData.load(directory, data).split(split)

    assert len(tensors) == len(windows) > 0
    assert tensors.x.shape == (len(windows), WINDOW, 3 + 1)
    assert tensors.x.dtype == torch.float32
    features = nodes[["RSRP", "RSRQ", "SINR"]].to_numpy()
    for k, first in enumerate(windows["first"]):
        expected = features[first : first + WINDOW]
        assert tensors.x[k, :, :3].numpy() == pytest.approx(expected, abs=1e-6)
    assert tensors.x[:, :, 3].unique().tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert (tensors.x[:, 0, 3] == 0).all()
    assert tensors.label.tolist() == windows["label"].astype(float).tolist()
    targets = windows[[f"target_{k}_scaled" for k in ("RSRP", "RSRQ", "SINR")]]
    assert tensors.target.numpy() == pytest.approx(targets.to_numpy(), abs=1e-6)
    lasts = windows[[f"last_{k}_scaled" for k in ("RSRP", "RSRQ", "SINR")]]
    assert tensors.last.numpy() == pytest.approx(lasts.to_numpy(), abs=1e-6)
    assert tensors.windows["split"].eq(split).all()


def test_the_last_step_of_x_is_the_last_observed_value(prepared):
    directory, data = prepared

    tensors = PreparedData.load(directory, data).split("train")

    assert tensors.x[:, -1, :3].numpy() == pytest.approx(tensors.last.numpy())


def test_the_edge_index_is_shared_and_undirected(prepared):
    directory, data = prepared

    loaded = PreparedData.load(directory, data)

    assert loaded.edge_index.dtype == torch.int64
    assert loaded.edge_index.shape == (2, 2 * (3 + 2))
    pairs = set(map(tuple, loaded.edge_index.T.tolist()))
    assert (0, 1) in pairs
    assert (1, 0) in pairs
    assert (0, 2) in pairs
    assert loaded.split("val").edge_index is loaded.edge_index


def test_without_position_encoding_x_holds_the_features_alone(prepared):
    directory, data = prepared
    plain = DataConfig(dir=data.dir, window=WINDOW, horizon=2, position_encoding=False)

    tensors = PreparedData.load(directory, plain).split("test")

    assert tensors.x.shape[-1] == input_channels(plain) == 3
    assert input_channels(data) == 4


def test_an_unknown_split_is_refused(prepared):
    directory, data = prepared

    with pytest.raises(MtlnetError, match="unknown split 'dev'; allowed: train"):
        PreparedData.load(directory, data).split("dev")


def test_the_scaler_gives_units_back(prepared):
    directory, data = prepared
    loaded = PreparedData.load(directory, data)
    test = loaded.split("test")

    physical = loaded.scaler.inverse("a", test.target.double().numpy(), data.targets)

    expected = test.windows[[f"target_{k}" for k in data.targets]].to_numpy()
    assert physical == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    "name", ["nodes.parquet", "windows.parquet", "edges.parquet", "scaler.parquet"]
)
def test_a_truncated_table_is_one_error_naming_it(prepared, name):
    directory, data = prepared
    path = directory / name
    path.write_bytes(path.read_bytes()[:100])

    with pytest.raises(MtlnetError) as caught:
        PreparedData.load(directory, data)

    message = str(caught.value)
    assert message.startswith(f"{path}: not a readable parquet file (")
    assert "\n" not in message


def test_a_table_of_garbage_bytes_is_one_error_naming_it(prepared):
    directory, data = prepared
    (directory / "windows.parquet").write_bytes(np.arange(500).tobytes())

    with pytest.raises(MtlnetError, match=r"windows.parquet: not a readable parquet"):
        PreparedData.load(directory, data)


def test_a_missing_table_asks_for_prepare(prepared):
    directory, data = prepared
    (directory / "edges.parquet").unlink()

    with pytest.raises(MtlnetError, match=r"edges.parquet: not found; run `python -m"):
        PreparedData.load(directory, data)


def test_tables_written_for_other_params_are_refused(prepared):
    directory, data = prepared

    other_features = DataConfig(
        dir=data.dir, window=WINDOW, features=("RSRP", "PDSCH_MCS")
    )
    with pytest.raises(
        MtlnetError, match=r"nodes\.parquet: missing column 'PDSCH_MCS'"
    ):
        PreparedData.load(directory, other_features)
    shorter = DataConfig(dir=data.dir, window=2)
    with pytest.raises(MtlnetError, match=r"edges.parquet: node ids outside \[0, 2\)"):
        PreparedData.load(directory, shorter)
    longer = DataConfig(dir=data.dir, window=40)
    with pytest.raises(MtlnetError, match="column 'first' points past the 140 node"):
        PreparedData.load(directory, longer)
