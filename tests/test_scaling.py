import numpy as np
import pandas as pd
import pytest

from mtlnet.errors import MtlnetError
from mtlnet.scaling import GLOBAL, Scaler

COLUMNS = ["RSRP", "SINR"]


def frames() -> dict[str, pd.DataFrame]:
    return {
        "a": pd.DataFrame({"RSRP": [-80.0, -90.0], "SINR": [10.0, 20.0]}),
        "b": pd.DataFrame({"RSRP": [-100.0, -110.0], "SINR": [0.0, 30.0]}),
    }


def test_a_global_scaler_fits_all_rows_together():
    scaler = Scaler.fit(frames(), COLUMNS, per_recording=False)

    mean, scale = scaler.vectors("a", COLUMNS)
    assert mean.tolist() == [-95.0, 15.0]
    assert scale == pytest.approx([np.sqrt(125.0), np.sqrt(125.0)])
    assert scaler.table["scope"].tolist() == [GLOBAL, GLOBAL]
    assert scaler.vectors("unseen", COLUMNS)[0].tolist() == [-95.0, 15.0]


def test_a_recording_scaler_fits_each_recording_alone():
    scaler = Scaler.fit(frames(), COLUMNS, per_recording=True)

    assert scaler.vectors("a", COLUMNS)[0].tolist() == [-85.0, 15.0]
    assert scaler.vectors("a", COLUMNS)[1].tolist() == [5.0, 5.0]
    assert scaler.vectors("b", COLUMNS)[0].tolist() == [-105.0, 15.0]
    assert scaler.vectors("b", COLUMNS)[1].tolist() == [5.0, 15.0]
    assert scaler.has_scope("b")
    assert not scaler.has_scope(GLOBAL)


def test_a_recording_scaler_refuses_an_unseen_recording():
    scaler = Scaler.fit(frames(), COLUMNS, per_recording=True)

    with pytest.raises(MtlnetError, match="no entry for column 'RSRP'"):
        scaler.vectors("c", COLUMNS)


def test_transform_standardises_and_inverse_gives_the_units_back():
    scaler = Scaler.fit(frames(), COLUMNS, per_recording=True)
    frame = frames()["b"]

    scaled = scaler.transform("b", frame, COLUMNS)

    assert scaled.tolist() == [[1.0, -1.0], [-1.0, 1.0]]
    assert scaler.inverse("b", scaled, COLUMNS).tolist() == frame.to_numpy().tolist()


def test_inverse_works_on_any_leading_shape():
    scaler = Scaler.fit(frames(), COLUMNS, per_recording=False)
    scaled = np.zeros((3, 4, 2))

    physical = scaler.inverse("a", scaled, COLUMNS)

    assert physical.shape == (3, 4, 2)
    assert physical[2, 3].tolist() == [-95.0, 15.0]


def test_a_constant_column_gets_scale_one_and_maps_to_zero():
    constant = {"a": pd.DataFrame({"RSRP": [-80.0, -80.0, -80.0]})}

    scaler = Scaler.fit(constant, ["RSRP"], per_recording=False)

    assert scaler.vectors("a", ["RSRP"])[1].tolist() == [1.0]
    assert scaler.transform("a", constant["a"], ["RSRP"]).tolist() == [[0.0]] * 3


def test_a_recording_with_no_training_rows_is_one_clear_error():
    empty = {"a": pd.DataFrame({"RSRP": [-80.0]}), "b": pd.DataFrame({"RSRP": []})}

    with pytest.raises(MtlnetError, match="recording 'b': no training rows"):
        Scaler.fit(empty, ["RSRP"], per_recording=True)


def test_inverse_rows_uses_each_rows_own_recording():
    scaler = Scaler.fit(frames(), COLUMNS, per_recording=True)
    scaled = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, -1.0]])

    physical = scaler.inverse_rows(["a", "b", "a"], scaled, COLUMNS)

    assert physical.tolist() == [[-80.0, 15.0], [-100.0, 15.0], [-85.0, 10.0]]
    assert scaler.inverse_rows([], np.zeros((0, 2)), COLUMNS).shape == (0, 2)
