"""The scoring functions every model and baseline is reported with."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as sk

from mtlnet.metrics import (
    best_f1_threshold,
    classification_metrics,
    delta_m,
    mean_and_std,
    regression_metrics,
)


def sklearn_figures(
    label: np.ndarray, probability: np.ndarray, threshold: float
) -> dict[str, float]:
    decision = (probability >= threshold).astype(int)
    return {
        "accuracy": sk.accuracy_score(label, decision),
        "balanced_accuracy": sk.balanced_accuracy_score(label, decision),
        "precision": sk.precision_score(label, decision, zero_division=0),
        "recall": sk.recall_score(label, decision, zero_division=0),
        "f1": sk.f1_score(label, decision, zero_division=0),
        "auroc": sk.roc_auc_score(label, probability),
        "auprc": sk.average_precision_score(label, probability),
        "loss": sk.log_loss(label, probability, labels=[0, 1]),
    }


def test_classification_metrics_match_a_hand_computed_case():
    label = np.array([1, 0, 1, 0, 0, 0])
    probability = np.array([0.9, 0.7, 0.3, 0.2, 0.1, 0.05])

    figures = classification_metrics(label, probability, 0.5)

    # Decisions [1, 1, 0, 0, 0, 0]: tp 1, fp 1, fn 1, tn 3.
    assert figures["accuracy"] == pytest.approx(4 / 6)
    assert figures["balanced_accuracy"] == pytest.approx((1 / 2 + 3 / 4) / 2)
    assert figures["precision"] == pytest.approx(1 / 2)
    assert figures["recall"] == pytest.approx(1 / 2)
    assert figures["f1"] == pytest.approx(1 / 2)
    # 0.9 outranks all four negatives, 0.3 three of them.
    assert figures["auroc"] == pytest.approx(7 / 8)
    # Recall 1/2 at precision 1 (0.9), then 1/2 more at precision 2/3 (0.3).
    assert figures["auprc"] == pytest.approx(1 / 2 + 1 / 3)
    expected_loss = -np.mean(np.log([0.9, 0.3, 0.3, 0.8, 0.9, 0.95]))
    assert figures["loss"] == pytest.approx(expected_loss)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.75])
def test_classification_metrics_agree_with_scikit_learn_on_tied_scores(seed, threshold):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, 40)
    label[:2] = [0, 1]
    # One decimal leaves many tied scores, across both classes.
    probability = np.round(rng.uniform(0.05, 0.95, 40), 1)

    figures = classification_metrics(label, probability, threshold)

    assert figures == pytest.approx(sklearn_figures(label, probability, threshold))


def test_tied_scores_enter_auroc_and_auprc_together():
    # A positive and a negative share 0.5; the positive comes first in order.
    label = np.array([1, 0, 1, 0])
    probability = np.array([0.5, 0.5, 0.8, 0.2])

    figures = classification_metrics(label, probability, 0.5)

    assert figures["auroc"] == pytest.approx(3.5 / 4)
    assert figures["auprc"] == pytest.approx(1 / 2 * 1 + 1 / 2 * 2 / 3)
    assert figures["auprc"] == pytest.approx(
        sk.average_precision_score(label, probability)
    )


def test_no_predicted_positive_gives_precision_and_f1_zero():
    label = np.array([1, 0, 1, 0])
    probability = np.array([0.4, 0.1, 0.3, 0.2])

    figures = classification_metrics(label, probability, 0.5)

    assert figures["precision"] == 0.0
    assert figures["recall"] == 0.0
    assert figures["f1"] == 0.0
    assert figures["accuracy"] == 0.5
    assert figures["balanced_accuracy"] == 0.5
    assert figures == pytest.approx(sklearn_figures(label, probability, 0.5))


def test_one_class_only_averages_the_present_class_and_gives_auroc_one_half():
    label = np.zeros(4, dtype=int)
    probability = np.array([0.9, 0.1, 0.2, 0.3])

    figures = classification_metrics(label, probability, 0.5)

    assert figures["balanced_accuracy"] == pytest.approx(3 / 4)
    assert figures["auroc"] == 0.5
    assert figures["auprc"] == 0.0
    assert figures["precision"] == 0.0


def test_log_loss_clips_certain_mistakes_to_a_finite_value():
    figures = classification_metrics(np.array([1, 0]), np.array([0.0, 0.0]), 0.5)

    assert figures["loss"] == pytest.approx(-math.log(1e-7) / 2)


def test_best_f1_threshold_picks_the_threshold_of_highest_f1():
    label = np.array([0, 1, 0, 1, 1])
    probability = np.array([0.1, 0.3, 0.35, 0.6, 0.8])

    threshold = best_f1_threshold(label, probability)

    # F1 at 0.1: 3/4, at 0.2: 6/7, at 0.325: 2/3, at 0.475 and 0.5: 4/5.
    assert threshold == pytest.approx(0.2)
    assert classification_metrics(label, probability, threshold)["f1"] == (
        pytest.approx(6 / 7)
    )


def test_best_f1_threshold_can_call_every_window_positive():
    label = np.array([1, 1, 1])
    probability = np.array([0.1, 0.2, 0.3])

    threshold = best_f1_threshold(label, probability)

    assert classification_metrics(label, probability, threshold)["f1"] == 1.0


def test_best_f1_threshold_breaks_ties_towards_one_half():
    # 0.55 and 0.5 both separate the classes perfectly.
    assert best_f1_threshold(np.array([0, 1]), np.array([0.2, 0.9])) == 0.5


def test_best_f1_threshold_is_one_half_without_a_positive():
    assert best_f1_threshold(np.array([0, 0]), np.array([0.2, 0.9])) == 0.5


@pytest.mark.parametrize("seed", range(10))
def test_no_threshold_gives_a_higher_f1_than_the_best_one(seed):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, 25)
    label[0] = 1
    probability = np.round(rng.random(25), 2)

    threshold = best_f1_threshold(label, probability)

    best = max(
        sk.f1_score(label, probability >= t, zero_division=0)
        for t in [*probability, 2.0]
    )
    f1 = classification_metrics(label, probability, threshold)["f1"]
    assert f1 == pytest.approx(best)


def test_regression_metrics_match_hand_computed_errors():
    target = np.array([1.0, 2.0, 3.0, 4.0])
    forecast = np.array([2.0, 2.0, 2.0, 6.0])
    persistence = np.array([0.0, 2.0, 3.0, 4.0])

    figures = regression_metrics(target, forecast, persistence, 2.0)

    # Errors 1, 0, -1, 2: MSE 6/4; persistence errs by 1 once: RMSE 1/2.
    assert figures["rmse"] == pytest.approx(math.sqrt(1.5))
    assert figures["mae"] == pytest.approx(1.0)
    assert figures["mse_scaled"] == pytest.approx(1.5 / 4)
    assert figures["skill"] == pytest.approx(1 - math.sqrt(1.5) / 0.5)


def test_mse_scaled_divides_each_row_by_its_own_scale():
    target = np.array([1.0, 2.0, 3.0, 4.0])
    forecast = np.array([2.0, 2.0, 2.0, 6.0])
    scale = np.array([1.0, 1.0, 2.0, 2.0])

    figures = regression_metrics(target, forecast, target + 1, scale)

    assert figures["mse_scaled"] == pytest.approx((1 + 0 + 0.25 + 1) / 4)


def test_the_persistence_forecast_has_skill_exactly_zero():
    target = np.array([-100.0, -98.5, -97.0, -101.25])
    persistence = np.array([-99.0, -100.0, -98.5, -97.0])

    figures = regression_metrics(target, persistence, persistence, 3.0)

    assert figures["skill"] == 0.0


def test_a_perfect_forecast_has_skill_one_and_no_error():
    target = np.array([-100.0, -98.5, -97.0])

    figures = regression_metrics(target, target, target - 1, 3.0)

    assert figures == {"rmse": 0.0, "mae": 0.0, "mse_scaled": 0.0, "skill": 1.0}


def test_delta_m_is_the_mean_signed_relative_change_in_percent():
    reference = {"f1": 0.5, "RSRP.rmse": 2.0, "SINR.rmse": 4.0}
    model = {"f1": 0.6, "RSRP.rmse": 1.5, "SINR.rmse": 5.0}

    # F1 up 20 % (better), RSRP RMSE down 25 % (better), SINR up 25 % (worse).
    result = delta_m(model, reference, ["f1", "RSRP.rmse", "SINR.rmse"])

    assert result == pytest.approx((20 + 25 - 25) / 3)


def test_delta_m_is_negative_when_every_metric_gets_worse():
    reference = {"c.auroc": 0.8, "r.mae": 1.0}
    model = {"c.auroc": 0.6, "r.mae": 1.5}

    result = delta_m(model, reference, ["c.auroc", "r.mae"])

    assert result == pytest.approx((-25 - 50) / 2)


def test_delta_m_leaves_out_a_metric_whose_reference_is_zero():
    result = delta_m({"f1": 0.3, "rmse": 1.0}, {"f1": 0.0, "rmse": 2.0}, ["f1", "rmse"])

    assert result == pytest.approx(50.0)


def test_mean_and_std_average_nested_figures_over_runs():
    runs = [
        {"a": 1, "b": {"c": 2.0, "d": {"e": 10}}},
        {"a": 3, "b": {"c": 6.0, "d": {"e": 10}}},
    ]

    summary = mean_and_std(runs)

    assert summary == {
        "a": 2.0,
        "b": {"c": 4.0, "d": {"e": 10.0}},
        "std": {"a": 1.0, "b": {"c": 2.0, "d": {"e": 0.0}}},
        "runs": 2,
    }


def test_mean_and_std_of_one_run_has_zero_spread():
    summary = mean_and_std([{"a": 4.5}])

    assert summary == {"a": 4.5, "std": {"a": 0.0}, "runs": 1}


def test_mean_and_std_refuse_no_runs():
    with pytest.raises(ValueError, match="no runs"):
        mean_and_std([])
