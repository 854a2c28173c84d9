"""Scoring on the test split, in physical units, and the ``evaluate`` stage."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import fcciq_rows, write_fcciq_csv

from mtlnet.checkpoint import load_checkpoint
from mtlnet.config import (
    ArchConfigs,
    DataConfig,
    GraphConfig,
    HardSharingConfig,
    Params,
    TrainConfig,
)
from mtlnet.dataset import PreparedData
from mtlnet.errors import MtlnetError
from mtlnet.evaluate import run_evaluate_stage, score
from mtlnet.prepare import prepare
from mtlnet.scaling import SCALER_COLUMNS, Scaler
from mtlnet.train import predict as train_predict
from mtlnet.train import run_train_stage

KPIS = ("RSRP", "RSRQ", "SINR")
CLASSIFICATION = (
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "f1",
    "auroc",
    "auprc",
    "loss",
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def numbers_only(tree: Any) -> bool:
    if isinstance(tree, dict):
        return all(numbers_only(v) for v in tree.values())
    return isinstance(tree, int | float) and not isinstance(tree, bool)


# Two recordings, two KPIs, hand-picked so every figure is easy to check.
HAND_DATA = DataConfig(features=("RSRP", "SINR"), targets=("RSRP", "SINR"))
HAND_WINDOWS = pd.DataFrame(
    {
        "recording": ["a", "a", "b", "b"],
        "label": [1, 0, 1, 0],
        "target_RSRP": [-90.0, -91.0, -100.0, -102.0],
        "last_RSRP": [-91.0, -90.0, -101.0, -100.0],
        "target_SINR": [10.0, 12.0, 20.0, 22.0],
        "last_SINR": [11.0, 10.0, 20.0, 21.0],
    }
)
HAND_PROBABILITY = np.array([0.8, 0.3, 0.4, 0.1])


def hand_scaler(per_recording: bool) -> Scaler:
    if per_recording:
        rows = [
            ("a", "RSRP", -90.0, 2.0),
            ("a", "SINR", 11.0, 1.0),
            ("b", "RSRP", -100.0, 4.0),
            ("b", "SINR", 21.0, 2.0),
        ]
    else:
        rows = [("*", "RSRP", -95.0, 5.0), ("*", "SINR", 16.0, 5.0)]
    return Scaler(pd.DataFrame(rows, columns=list(SCALER_COLUMNS)))


def hand_targets() -> np.ndarray:
    return HAND_WINDOWS[["target_RSRP", "target_SINR"]].to_numpy()


def hand_lasts() -> np.ndarray:
    return HAND_WINDOWS[["last_RSRP", "last_SINR"]].to_numpy()


@pytest.mark.parametrize("per_recording", [False, True])
def test_a_forecast_of_the_true_target_scores_rmse_zero_and_skill_one(
    per_recording,
):
    result = score(
        HAND_WINDOWS,
        HAND_PROBABILITY,
        hand_targets(),
        0.5,
        hand_scaler(per_recording),
        HAND_DATA,
    )

    for kpi in HAND_DATA.targets:
        assert result["regression"][kpi] == {
            "rmse": 0.0,
            "mae": 0.0,
            "mse_scaled": 0.0,
            "skill": 1.0,
        }
    assert result["regression"]["mse_scaled"] == 0.0


def test_the_persistence_forecast_scores_skill_zero():
    result = score(
        HAND_WINDOWS, HAND_PROBABILITY, hand_lasts(), 0.5, hand_scaler(False), HAND_DATA
    )

    assert result["regression"]["RSRP"]["skill"] == 0.0
    assert result["regression"]["SINR"]["skill"] == 0.0
    # RSRP persistence errs by 1, 1, 1 and 2 dBm.
    assert result["regression"]["RSRP"]["rmse"] == pytest.approx(math.sqrt(7 / 4))
    assert result["regression"]["RSRP"]["mae"] == pytest.approx(5 / 4)


def test_a_recording_scaler_scores_each_window_with_its_own_scale():
    # Each RSRP forecast misses by exactly one scale of its recording.
    forecast = hand_targets() + np.array([[2.0, 0], [-2.0, 0], [4.0, 0], [-4.0, 0]])

    result = score(
        HAND_WINDOWS, HAND_PROBABILITY, forecast, 0.5, hand_scaler(True), HAND_DATA
    )

    rsrp = result["regression"]["RSRP"]
    assert rsrp["mse_scaled"] == pytest.approx(1.0)
    assert rsrp["rmse"] == pytest.approx(math.sqrt((4 + 4 + 16 + 16) / 4))
    assert result["regression"]["mse_scaled"] == pytest.approx((1.0 + 0.0) / 2)
    # The global scaler divides every miss by 5 instead.
    global_result = score(
        HAND_WINDOWS, HAND_PROBABILITY, forecast, 0.5, hand_scaler(False), HAND_DATA
    )
    assert global_result["regression"]["RSRP"]["mse_scaled"] == pytest.approx(10 / 25)


def test_score_reports_numbers_only_with_the_loss_total_by_hand():
    forecast = hand_targets() + np.array([[5.0, 0], [0, 0], [0, 5.0], [0, 0]])

    result = score(
        HAND_WINDOWS, HAND_PROBABILITY, forecast, 0.35, hand_scaler(False), HAND_DATA
    )

    assert numbers_only(result)
    classification = result["classification"]
    # Decisions at 0.35: [1, 0, 1, 0], all right.
    assert (classification["tp"], classification["fp"]) == (2, 0)
    assert (classification["fn"], classification["tn"]) == (0, 2)
    assert classification["f1"] == 1.0
    assert classification["threshold"] == 0.35
    log_loss = -np.mean(np.log([0.8, 0.7, 0.4, 0.9]))
    assert classification["loss"] == pytest.approx(log_loss)
    # One miss of 5 over four windows, scale 5, for each KPI.
    assert result["regression"]["RSRP"]["mse_scaled"] == pytest.approx(1 / 4)
    assert result["loss"]["total"] == pytest.approx(log_loss + 1 / 4 + 1 / 4)
    assert result["windows"] == 4


def write_levels(directory: Path) -> None:
    """Two recordings at different levels and spreads of every KPI."""
    index = range(60)
    write_fcciq_csv(directory / "near.csv", fcciq_rows(60))
    write_fcciq_csv(
        directory / "far.csv",
        fcciq_rows(
            60,
            rsrp=[-120.0 + 3 * (i % 10) for i in index],
            rsrq=[-20.0 - 2 * (i % 4) for i in index],
            sinr=[-5.0 + 0.5 * (i % 6) for i in index],
        ),
    )


@pytest.mark.parametrize("scaler", ["global", "recording"])
def test_inverse_scaling_of_the_scaled_targets_gives_dbm_back(tmp_path, scaler):
    write_levels(tmp_path / "data")
    data = DataConfig(dir=str(tmp_path / "data"), window=4, scaler=scaler)
    prepare(
        data=data,
        graph=GraphConfig(),
        output_dir=tmp_path / "prepared",
        metrics_path=tmp_path / "data.json",
    )
    prepared = PreparedData.load(tmp_path / "prepared", data)
    windows = prepared.windows
    scopes = list(windows["recording"])

    def physical(prefix: str) -> np.ndarray:
        scaled = windows[[f"{prefix}_{k}_scaled" for k in KPIS]].to_numpy()
        return prepared.scaler.inverse_rows(scopes, scaled, KPIS)

    targets = windows[[f"target_{k}" for k in KPIS]].to_numpy()
    np.testing.assert_allclose(physical("target"), targets, atol=1e-9)
    probability = np.full(len(windows), 0.5)
    perfect = score(
        windows, probability, physical("target"), 0.5, prepared.scaler, data
    )
    persistence = score(
        windows, probability, physical("last"), 0.5, prepared.scaler, data
    )
    for kpi in KPIS:
        assert perfect["regression"][kpi]["rmse"] == pytest.approx(0.0, abs=1e-9)
        assert perfect["regression"][kpi]["skill"] == pytest.approx(1.0)
        assert persistence["regression"][kpi]["skill"] == pytest.approx(0.0, abs=1e-9)


@dataclasses.dataclass(frozen=True)
class Evaluated:
    root: Path
    params: Params
    prepared: PreparedData
    summary: dict[str, Any]

    @property
    def plot_dir(self) -> Path:
        return self.root / "plots" / "eval" / "hardsharing"


def tiny_params(data: DataConfig, seeds: int) -> Params:
    arch = ArchConfigs(
        hardsharing=HardSharingConfig(hidden=8, tower_hidden=4, layers=1)
    )
    return Params(
        model="hardsharing",
        models=("hardsharing",),
        seed=3,
        seeds=seeds,
        data=data,
        train=TrainConfig(epochs=2, batch_size=32, lr=0.01, threads=1, workers=1),
        arch=arch,
    )


def train_and_evaluate(
    root: Path, seeds: int, scaler: Literal["global", "recording"] = "global"
) -> Evaluated:
    write_levels(root / "data")
    data = DataConfig(
        dir=str(root / "data"),
        window=4,
        train_fraction=0.6,
        val_fraction=0.2,
        test_fraction=0.2,
        scaler=scaler,
    )
    params = tiny_params(data, seeds)
    prepared_dir = root / "stages" / "prepare"
    prepare(
        data=data,
        graph=params.graph,
        output_dir=prepared_dir,
        metrics_path=root / "metrics" / "data.json",
    )
    run_train_stage(
        params=params,
        architecture="hardsharing",
        prepared_dir=prepared_dir,
        train_dir=root / "stages" / "train",
        metrics_path=root / "metrics" / "train" / "hardsharing.json",
        plot_path=root / "plots" / "train" / "hardsharing.csv",
    )
    summary = run_evaluate_stage(
        params=params,
        architecture="hardsharing",
        prepared_dir=prepared_dir,
        train_dir=root / "stages" / "train",
        metrics_path=root / "metrics" / "eval" / "hardsharing.json",
        plot_dir=root / "plots" / "eval" / "hardsharing",
    )
    return Evaluated(root, params, PreparedData.load(prepared_dir, data), summary)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Evaluated:
    threads = torch.get_num_threads()
    result = train_and_evaluate(tmp_path_factory.mktemp("evaluated"), seeds=2)
    torch.set_num_threads(threads)
    return result


def test_the_evaluate_stage_writes_the_design_keys_in_numbers(evaluated):
    path = evaluated.root / "metrics" / "eval" / "hardsharing.json"
    written = json.loads(path.read_text())

    assert written == evaluated.summary
    assert numbers_only(written)
    assert set(CLASSIFICATION) <= set(written["classification"])
    assert set(written["regression"]) == {*KPIS, "mse_scaled"}
    for kpi in KPIS:
        assert set(written["regression"][kpi]) == {"rmse", "mae", "mse_scaled", "skill"}
    assert set(written["loss"]) == {"total"}
    assert written["runs"] == 2
    assert written["std"]["regression"]["RSRP"].keys() == {
        "rmse",
        "mae",
        "mse_scaled",
        "skill",
    }
    assert written["loss"]["total"] == pytest.approx(
        written["classification"]["loss"]
        + sum(written["regression"][k]["mse_scaled"] for k in KPIS)
    )
    assert written["windows"] == len(evaluated.prepared.split("test"))


def test_the_predictions_hold_one_row_per_test_window(evaluated):
    predictions = pd.read_csv(evaluated.plot_dir / "predictions.csv")
    test = evaluated.prepared.split("test").windows

    assert len(predictions) == len(test)
    assert predictions["recording"].tolist() == test["recording"].tolist()
    assert predictions["label"].tolist() == test["label"].tolist()
    assert pd.to_datetime(predictions["time"]).tolist() == test["time"].tolist()
    for kpi in KPIS:
        np.testing.assert_allclose(predictions[f"target_{kpi}"], test[f"target_{kpi}"])
        np.testing.assert_allclose(predictions[f"last_{kpi}"], test[f"last_{kpi}"])
    checkpoint = load_checkpoint(
        evaluated.root / "stages" / "train" / "hardsharing" / "seed_3.pt"
    )
    decision = (predictions["probability"] >= checkpoint.threshold).astype(int)
    assert predictions["decision"].tolist() == decision.tolist()
    # The first seed's own outputs, its forecasts back in dBm / dB.
    split = evaluated.prepared.split("test")
    scaled, probability = train_predict(checkpoint.model, split.x)
    forecast = evaluated.prepared.scaler.inverse_rows(
        list(test["recording"]), scaled.numpy(), KPIS
    )
    np.testing.assert_allclose(predictions["probability"], probability, atol=1e-6)
    for i, kpi in enumerate(KPIS):
        np.testing.assert_allclose(
            predictions[f"forecast_{kpi}"], forecast[:, i], atol=1e-4
        )


def test_the_evaluate_stage_draws_its_figures(evaluated):
    for name in ("forecast.png", "timeline.png", "confusion.png"):
        assert (evaluated.plot_dir / name).read_bytes()[:8] == PNG_MAGIC


def test_one_seed_scores_exactly_its_predictions(tmp_path):
    evaluated = train_and_evaluate(tmp_path, seeds=1, scaler="recording")
    predictions = pd.read_csv(evaluated.plot_dir / "predictions.csv")
    test = evaluated.prepared.split("test").windows
    checkpoint = load_checkpoint(
        tmp_path / "stages" / "train" / "hardsharing" / "seed_3.pt"
    )

    rescored = score(
        test,
        predictions["probability"].to_numpy(),
        predictions[[f"forecast_{k}" for k in KPIS]].to_numpy(),
        checkpoint.threshold,
        evaluated.prepared.scaler,
        evaluated.params.data,
    )

    summary = {k: v for k, v in evaluated.summary.items() if k not in ("std", "runs")}
    assert flatten(summary) == pytest.approx(flatten(rescored), rel=1e-6)
    spread = flatten(evaluated.summary["std"])
    assert spread == dict.fromkeys(spread, 0.0)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = float(value)
    return flat


def test_evaluating_without_a_checkpoint_names_the_missing_file(tmp_path):
    write_levels(tmp_path / "data")
    data = DataConfig(dir=str(tmp_path / "data"), window=4)
    prepare(
        data=data,
        graph=GraphConfig(),
        output_dir=tmp_path / "prepared",
        metrics_path=tmp_path / "data.json",
    )

    with pytest.raises(MtlnetError, match=r"seed_3\.pt: checkpoint not found"):
        run_evaluate_stage(
            params=tiny_params(data, seeds=1),
            architecture="hardsharing",
            prepared_dir=tmp_path / "prepared",
            train_dir=tmp_path / "stages" / "train",
            metrics_path=tmp_path / "eval.json",
            plot_dir=tmp_path / "plots",
        )
    assert not (tmp_path / "eval.json").exists()


def test_a_checkpoint_trained_on_other_data_params_is_refused(evaluated, tmp_path):
    other = dataclasses.replace(evaluated.params.data, max_gap_s=9.0)
    params = dataclasses.replace(evaluated.params, data=other)

    with pytest.raises(MtlnetError, match="trained with other data params"):
        run_evaluate_stage(
            params=params,
            architecture="hardsharing",
            prepared_dir=evaluated.root / "stages" / "prepare",
            train_dir=evaluated.root / "stages" / "train",
            metrics_path=tmp_path / "eval.json",
            plot_dir=tmp_path / "plots",
        )
