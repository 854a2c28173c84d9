from pathlib import Path

import pytest
import yaml

from mtlnet.config import (
    ARCHITECTURES,
    DataConfig,
    GraphConfig,
    Params,
    from_mapping,
    is_label_column,
    load_params,
    to_mapping,
)
from mtlnet.errors import MtlnetError

PROJECT_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def load_text(tmp_path: Path, text: str) -> Params:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return load_params(path)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(MtlnetError) as caught:
        load_text(tmp_path, text)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'params.yaml'}: ")
    return message


def test_project_params_file_loads_and_names_every_architecture():
    params = load_params(PROJECT_PARAMS)

    assert params.model in params.models
    assert set(params.models) <= set(ARCHITECTURES)
    assert params.data.label == "lab_inf"
    assert not any(is_label_column(c) for c in params.data.features)


def test_an_empty_file_gives_the_defaults(tmp_path):
    assert load_text(tmp_path, "") == Params()


def test_values_given_replace_defaults_and_integers_become_floats(tmp_path):
    params = load_text(
        tmp_path,
        "data:\n  window: 12\n  max_gap_s: 3\n  features: [RSRP, SINR]\n"
        "graph:\n  offsets: [1, 3]\n  directed: true\n",
    )

    assert params.data.window == 12
    assert params.data.max_gap_s == 3.0
    assert isinstance(params.data.max_gap_s, float)
    assert params.data.features == ("RSRP", "SINR")
    assert params.data.horizon == DataConfig().horizon
    assert params.graph == GraphConfig(offsets=(1, 3), directed=True)


def test_to_mapping_round_trips_through_from_mapping():
    params = Params(model="mmoe", data=DataConfig(window=9, scaler="recording"))

    assert from_mapping(Params, to_mapping(params), prefix="") == params
    assert yaml.safe_load(yaml.safe_dump(to_mapping(params)))["data"]["window"] == 9


def test_seed_list_counts_up_from_seed():
    assert Params(seed=7, seeds=3).seed_list() == [7, 8, 9]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dta: {}\n", "unknown key dta; allowed: arch, data, graph, model,"),
        ("data:\n  windw: 3\n", "unknown key data.windw; allowed: dir, features,"),
        ("arch:\n  ple:\n    level: 3\n", "unknown key arch.ple.level; allowed:"),
        ("1: 2\nfoo: 3\n", "unknown key 1; allowed:"),
    ],
)
def test_an_unknown_key_is_named_with_the_allowed_ones(tmp_path, text, expected):
    assert expected in error_of(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data:\n  window: '35'\n", "data.window: expected an integer, got '35'"),
        ("data:\n  window: 35.0\n", "data.window: expected an integer, got 35.0"),
        ("data:\n  window: true\n", "data.window: expected an integer, got True"),
        ("data:\n  max_gap_s: fast\n", "data.max_gap_s: expected a number"),
        ("data:\n  max_gap_s: .inf\n", "data.max_gap_s: expected a finite number"),
        ("data:\n  features: RSRP\n", "data.features: expected a list, got str"),
        ("data:\n  features: [RSRP, 3]\n", "data.features[1]: expected a string"),
        ("graph:\n  directed: 1\n", "graph.directed: expected true or false"),
        ("data: [1, 2]\n", "data: expected a mapping, got list"),
        ("data:\n", "data: expected a mapping, got NoneType"),
        ("- stl\n", "top level: expected a mapping, got list"),
    ],
)
def test_a_value_of_the_wrong_type_is_named(tmp_path, text, expected):
    assert expected in error_of(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data:\n  window: -3\n", "data.window: must be at least 2"),
        ("data:\n  window: 1\n", "data.window: must be at least 2"),
        ("data:\n  horizon: 0\n", "data.horizon: must be at least 1"),
        ("data:\n  max_gap_s: 0\n", "data.max_gap_s: must be positive"),
        ("graph:\n  offsets: [0, 1]\n", "graph.offsets: must be >= 1"),
        ("graph:\n  offsets: []\n", "graph.offsets: must list an offset"),
        ("seeds: 0\n", "seeds: must be at least 1"),
        ("train:\n  lr: 0\n", "train.lr: must be positive"),
        ("arch:\n  attention:\n    heads: 5\n", "must divide hidden (64)"),
        (
            "arch:\n  mmoe:\n    gcn_dropout: 1.0\n",
            "arch.*.gcn_dropout: must lie in [0, 1)",
        ),
        (
            "train:\n  regression_loss: mae\n",
            "train.regression_loss: 'mae' is not one of relative, scaled",
        ),
    ],
)
def test_a_value_out_of_range_is_named(tmp_path, text, expected):
    assert expected in error_of(tmp_path, text)


def test_fractions_that_do_not_sum_to_one_are_refused_with_their_sum(tmp_path):
    message = error_of(tmp_path, "data:\n  train_fraction: 0.7\n")

    assert "train, val and test fractions must sum to 1, not 0.9" in message


def test_a_zero_fraction_is_refused(tmp_path):
    message = error_of(
        tmp_path,
        "data:\n  train_fraction: 0.8\n  val_fraction: 0.2\n  test_fraction: 0\n",
    )

    assert "fractions must lie in (0, 1)" in message


def test_an_unknown_architecture_in_models_lists_the_allowed_ones(tmp_path):
    message = error_of(tmp_path, "models: [stl, transformer]\n")

    assert "models: unknown architecture 'transformer'" in message
    assert "allowed: stl, hardsharing, mmoe, crossstitch, ple, attention" in message


def test_a_model_not_in_models_lists_the_models(tmp_path):
    message = error_of(tmp_path, "model: ple\nmodels: [stl, mmoe]\n")

    assert "model: 'ple' is not in models; allowed: stl, mmoe" in message


def test_an_unknown_weighting_lists_the_allowed_ones(tmp_path):
    message = error_of(tmp_path, "train:\n  weighting: gradnorm\n")

    assert "train.weighting: 'gradnorm' is not one of equal, uncertainty, dwa" in (
        message
    )


def test_an_unknown_scaler_lists_the_allowed_ones(tmp_path):
    message = error_of(tmp_path, "data:\n  scaler: minmax\n")

    assert "data.scaler: 'minmax' is not one of global, recording" in message


@pytest.mark.parametrize(
    ("block", "column"),
    [
        ("features: [RSRP, lab_inf]", "lab_inf"),
        ("features: [lab_anom]", "lab_anom"),
        ("features: [RSRP, Label]", "Label"),
        ("targets: [RSRP, lab_bs]", "lab_bs"),
        ("label: Interference\n  features: [RSRP, Interference]", "Interference"),
    ],
)
def test_a_label_column_is_refused_as_a_feature_or_target(tmp_path, block, column):
    message = error_of(tmp_path, f"data:\n  {block}\n")

    key = "data.targets" if block.startswith("targets") else "data.features"
    assert f"{key}: {column!r} is a label column and can never be a model input" in (
        message
    )


@pytest.mark.parametrize("key", ["features", "targets"])
def test_the_time_column_is_refused_as_a_feature_or_target(tmp_path, key):
    message = error_of(tmp_path, f"data:\n  {key}: [RSRP, Time]\n")

    assert f"data.{key}: the time column 'Time' is not a KPI column" in message


def test_a_column_named_twice_is_refused(tmp_path):
    message = error_of(tmp_path, "data:\n  features: [RSRP, SINR, RSRP]\n")

    assert "data.features: names a column twice" in message


def test_corridor_tag_may_be_chosen_as_a_feature(tmp_path):
    params = load_text(tmp_path, "data:\n  features: [RSRP, Corridor_tag]\n")

    assert params.data.features == ("RSRP", "Corridor_tag")


def test_a_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(MtlnetError, match="parameter file not found"):
        load_params(tmp_path / "nope.yaml")


def test_a_file_that_is_not_yaml_is_one_clear_error(tmp_path):
    assert "not valid YAML" in error_of(tmp_path, "data: [1, 2\n")


def test_a_file_that_is_not_text_is_one_clear_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(b"\xff\xfe\x00\x01")

    with pytest.raises(MtlnetError, match="not a text file"):
        load_params(path)


def test_is_label_column_knows_the_fcciq_labels():
    labels = ["lab_anom", "lab_bs", "lab_inf", "lab_1rr", "Label"]

    assert [is_label_column(c) for c in labels] == [True] * 5
    assert not any(is_label_column(c) for c in ["RSRP", "Corridor_tag", "label"])
