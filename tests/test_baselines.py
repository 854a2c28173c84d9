import dataclasses
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import fcciq_rows, write_fcciq_csv

from mtlnet import baselines
from mtlnet.baselines import (
    SinrRule,
    feature_statistics,
    fit_sinr_rule,
    last_sinr,
    majority_probability,
    run_baselines_stage,
    window_statistics,
)
from mtlnet.config import DataConfig, GraphConfig, Params
from mtlnet.dataset import PreparedData
from mtlnet.errors import MtlnetError
from mtlnet.metrics import binary_cross_entropy, classification_metrics
from mtlnet.prepare import prepare

KPIS = ("RSRP", "RSRQ", "SINR")
BASELINES = ["gradient_boosting", "majority", "persistence", "sinr_threshold"]
NUM_ROWS = 400
# Interference is exactly SINR < -3 dB, and -4 and -2 dB both occur, so any
# threshold between them separates every split.
SINR_LEVELS = (-12.0, -8.0, -5.0, -4.0, -2.0, 0.0, 4.0, 8.0, 15.0)
RSRP_STEP = 0.1


def recording(num_rows: int = NUM_ROWS, seed: int = 0) -> pd.DataFrame:
    """SINR drawn from SINR_LEVELS with label SINR < -3; RSRP a steady ramp."""
    rng = np.random.default_rng(seed)
    sinr = rng.choice(SINR_LEVELS, num_rows)
    return fcciq_rows(
        num_rows,
        rsrp=-120.0 + RSRP_STEP * np.arange(num_rows),
        rsrq=-10.0 - rng.integers(0, 5, num_rows),
        sinr=sinr,
        labels=(sinr < -3).astype(int),
    )


def prepare_into(root: Path, rows: pd.DataFrame, **data_options) -> Params:
    """Write ``rows`` as one recording under ``root`` and run prepare on it."""
    write_fcciq_csv(root / "data" / "rec.csv", rows)
    data = DataConfig(dir=str(root / "data"), window=4, horizon=1, **data_options)
    prepare(
        data=data,
        graph=GraphConfig(),
        output_dir=root / "prepare",
        metrics_path=root / "data.json",
    )
    return Params(data=data)


@pytest.fixture(scope="module", autouse=True)
def few_trees():
    """Cap the boosting at 30 trees, so that a stage run takes a second.

    The rules of :func:`recording` are learnt in a few trees.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(baselines, "CLASSIFIER_MAX_ITER", 30)
        patch.setattr(baselines, "REGRESSOR_MAX_ITER", 30)
        yield


@pytest.fixture(scope="module")
def stage(tmp_path_factory) -> tuple[Params, Path, dict]:
    """The stage run once on the recording above: params, its folder, result."""
    root = tmp_path_factory.mktemp("baselines")
    params = prepare_into(root, recording())
    result = run_baselines_stage(
        params=params,
        prepared_dir=root / "prepare",
        metrics_path=root / "baselines.json",
    )
    return params, root, result


def test_window_statistics_of_a_ramp_and_a_zigzag_match_a_hand_computation():
    ramp = [1.0, 3.0, 5.0, 7.0]
    zigzag = [0.0, 4.0, 0.0, 4.0]
    x = np.array([ramp, zigzag]).T[None]

    statistics = window_statistics(x)

    # last, mean, std, range, slope; the zigzag's slope is
    # sum((t - 1.5) * (v - 2)) / sum((t - 1.5)^2) = 4 / 5.
    assert statistics.shape == (1, 10)
    assert statistics[0, :5] == pytest.approx([7.0, 4.0, math.sqrt(5.0), 6.0, 2.0])
    assert statistics[0, 5:] == pytest.approx([4.0, 2.0, 2.0, 4.0, 0.8])


def test_a_constant_window_has_no_spread_and_no_slope():
    x = np.full((2, 5, 1), -3.0)

    statistics = window_statistics(x)

    assert statistics.tolist() == [[-3.0, -3.0, 0.0, 0.0, 0.0]] * 2


def test_feature_statistics_leave_out_the_position_channel(stage):
    params, root, _ = stage
    train = PreparedData.load(root / "prepare", params.data).split("train")

    statistics = feature_statistics(train, params.data)

    assert train.x.shape[-1] == len(KPIS) + 1
    assert statistics.shape == (len(train), len(KPIS) * 5)
    # The "last" statistic of each KPI is its last observed (scaled) value.
    assert statistics[:, ::5] == pytest.approx(train.last.numpy(), abs=1e-6)


def test_the_majority_probability_is_the_training_positive_rate():
    assert majority_probability(np.array([0, 0, 1, 0])) == 0.25


def test_a_positive_majority_is_detected_everywhere_at_one_half():
    probability = np.full(4, majority_probability(np.array([1, 1, 0])))

    metrics = classification_metrics(np.array([1, 0, 1, 0]), probability, 0.5)

    assert metrics["recall"] == 1.0
    assert metrics["precision"] == 0.5


def test_the_sinr_threshold_comes_from_validation_not_from_training():
    # Training says interference is SINR < -3; validation says SINR < -6.
    train_sinr = np.repeat(SINR_LEVELS, 20)
    val_sinr = np.array(SINR_LEVELS)

    rule = fit_sinr_rule(train_sinr, train_sinr < -3, val_sinr, val_sinr < -6)

    assert rule.coefficient < 0
    threshold_db = rule.threshold_db()
    assert threshold_db is not None
    assert -8 < threshold_db < -5


def test_a_flat_sinr_rule_has_no_threshold_in_db():
    rule = SinrRule(coefficient=0.0, intercept=0.0, mean=0.0, scale=1.0, threshold=0.5)

    assert rule.threshold_db() is None
    assert rule.probability(np.array([-10.0, 10.0])).tolist() == [0.5, 0.5]


def test_majority_predicts_the_training_majority_on_test(stage):
    _, root, result = stage
    windows = pd.read_parquet(root / "prepare" / "windows.parquet")
    train_rate = windows.loc[windows["split"] == "train", "label"].mean()
    test_label = windows.loc[windows["split"] == "test", "label"].to_numpy()

    majority = result["majority"]["classification"]

    assert 0 < train_rate < 0.5
    assert test_label.sum() > 0
    assert majority["tp"] == majority["fp"] == 0
    assert majority["f1"] == 0.0
    assert majority["threshold"] == 0.5
    assert majority["auroc"] == 0.5
    assert majority["loss"] == pytest.approx(
        binary_cross_entropy(test_label, np.full(len(test_label), train_rate))
    )


def test_the_sinr_threshold_separates_sinr_below_minus_three(stage):
    _, _, result = stage

    block = result["sinr_threshold"]

    assert block["classification"]["f1"] == 1.0
    assert block["classification"]["auroc"] == 1.0
    assert block["rule"]["coefficient"] < 0
    assert -4 < block["rule"]["threshold_db"] < -2
    assert [block["regression"][k]["skill"] for k in KPIS] == [0.0, 0.0, 0.0]


def test_gradient_boosting_learns_a_steady_ramp_and_the_sinr_rule(stage):
    _, _, result = stage
    boosting, persistence = result["gradient_boosting"], result["persistence"]

    assert boosting["regression"]["RSRP"]["skill"] > 0.99
    assert boosting["regression"]["RSRP"]["rmse"] < 0.01 * RSRP_STEP
    assert persistence["regression"]["RSRP"]["rmse"] == pytest.approx(RSRP_STEP)
    assert boosting["classification"]["f1"] == 1.0
    settings = boosting["settings"]
    assert sorted(settings) == ["RSRP", "RSRQ", "SINR", "classifier"]
    assert all(s["max_iter"] >= 1 for s in settings.values())


def test_persistence_has_skill_exactly_zero_and_the_majority_detector(stage):
    _, _, result = stage

    persistence = result["persistence"]

    assert [persistence["regression"][k]["skill"] for k in KPIS] == [0.0, 0.0, 0.0]
    assert persistence["classification"] == result["majority"]["classification"]


def test_the_json_holds_numbers_only_and_matches_the_result(stage):
    _, root, result = stage
    written = json.loads((root / "baselines.json").read_text())

    def leaves(tree):
        if isinstance(tree, dict):
            for value in tree.values():
                yield from leaves(value)
        else:
            yield tree

    assert written == result
    assert sorted(written) == BASELINES
    values = list(leaves(written))
    assert all(type(v) in (int, float) and math.isfinite(v) for v in values)


def test_no_choice_depends_on_the_test_split(stage, tmp_path):
    params, root, result = stage
    shutil.copytree(root / "prepare", tmp_path / "prepare")
    path = tmp_path / "prepare" / "windows.parquet"
    windows = pd.read_parquet(path)
    test = windows["split"] == "test"
    windows.loc[test, "label"] = 1 - windows.loc[test, "label"]
    for kpi in KPIS:
        for column in (f"target_{kpi}", f"target_{kpi}_scaled"):
            windows.loc[test, column] += 5.0
    windows.to_parquet(path, index=False)

    changed = run_baselines_stage(
        params=params,
        prepared_dir=tmp_path / "prepare",
        metrics_path=tmp_path / "baselines.json",
    )

    for name in BASELINES:
        before = result[name]["classification"]["threshold"]
        assert changed[name]["classification"]["threshold"] == before
    assert changed["sinr_threshold"]["rule"] == result["sinr_threshold"]["rule"]
    assert (
        changed["gradient_boosting"]["settings"]
        == (result["gradient_boosting"]["settings"])
    )
    # The test split was read: the scores did change.
    assert changed["sinr_threshold"]["classification"]["f1"] == 0.0
    assert changed["persistence"]["regression"]["RSRP"]["rmse"] > 4.0


def test_without_sinr_the_threshold_baseline_is_skipped_with_a_warning(
    tmp_path, caplog
):
    params = prepare_into(tmp_path, recording(), features=KPIS[:2], targets=KPIS[:2])

    with caplog.at_level(logging.INFO, logger="mtlnet.baselines"):
        result = run_baselines_stage(
            params=params,
            prepared_dir=tmp_path / "prepare",
            metrics_path=tmp_path / "baselines.json",
        )

    assert sorted(result) == ["gradient_boosting", "majority", "persistence"]
    assert sorted(result["gradient_boosting"]["regression"]) == [
        "RSRP",
        "RSRQ",
        "mse_scaled",
    ]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("sinr_threshold skipped" in r.getMessage() for r in warnings)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert [line.split()[1] for line in lines] == [
        "majority",
        "gradient_boosting",
        "persistence",
    ]


def test_the_last_sinr_of_a_feature_only_is_unscaled_to_db(stage, tmp_path):
    params, root, _ = stage
    full = PreparedData.load(root / "prepare", params.data).split("val")
    data = dataclasses.replace(params.data, targets=("RSRP",))
    prepare(
        data=data,
        graph=GraphConfig(),
        output_dir=tmp_path / "prepare",
        metrics_path=tmp_path / "data.json",
    )
    prepared = PreparedData.load(tmp_path / "prepare", data)

    sinr = last_sinr(prepared.split("val"), prepared)

    assert "last_SINR" not in prepared.windows.columns
    assert sinr == pytest.approx(full.windows["last_SINR"].to_numpy(), abs=1e-4)
    assert set(np.round(sinr, 4)) <= set(SINR_LEVELS)


def test_a_training_split_of_one_class_is_a_clear_error(tmp_path):
    rows = recording()
    rows["lab_inf"] = "0"
    params = prepare_into(tmp_path, rows)

    with pytest.raises(MtlnetError, match="one class only"):
        run_baselines_stage(
            params=params,
            prepared_dir=tmp_path / "prepare",
            metrics_path=tmp_path / "baselines.json",
        )

    assert not (tmp_path / "baselines.json").exists()
