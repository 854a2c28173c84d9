"""The ``baselines`` stage: simple references the architectures must beat.

Four baselines, each scored on the test split by :func:`mtlnet.scoring.score`
exactly as the models are:

- ``majority``: the training positive rate as a constant probability, decided
  at 0.5, so it always predicts the training majority class; the KPIs are
  forecast by persistence.
- ``sinr_threshold``: a logistic regression of the label on the window's last
  SINR (interference lowers SINR), that is one threshold on the SINR in dB;
  the KPIs are forecast by persistence.
- ``gradient_boosting``: histogram gradient boosting on summary statistics
  of each input feature over the window (:func:`window_statistics`): one
  classifier, and one regressor per KPI forecasting the change from the last
  observed value.
- ``persistence``: each KPI forecast as its last observed value (skill 0 by
  definition), with the majority classifier for detection. It scores the
  same as ``majority``; it is kept as its own block so that the reference of
  ``skill`` is named in the comparison.

Every choice (decision thresholds, boosting hyper-parameters) is made on the
validation split; the test split is only scored.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from mtlnet.config import DataConfig, Params
from mtlnet.dataset import PreparedData, WindowTensors
from mtlnet.errors import MtlnetError
from mtlnet.io import write_json
from mtlnet.metrics import best_f1_threshold, binary_cross_entropy
from mtlnet.scoring import describe, score

logger = logging.getLogger(__name__)

SINR = "SINR"
# The boosting grid. The number of trees is not a grid axis: each fit grows
# up to the cap and the validation loss after every tree picks how many to
# keep, which costs one fit per grid point instead of one per tree count.
# On FccIQ the classifier keeps about 200 trees, the regressors 20 to 60.
LEARNING_RATES = (0.05, 0.1)
MAX_LEAF_NODES = (15, 31)
CLASSIFIER_MAX_ITER = 300
REGRESSOR_MAX_ITER = 150
# Boosting grows many small trees, each a short OpenMP region; with more than
# one thread on a busy 2-core machine the threads spin-wait for each other and
# a fit runs some 30 times slower than on one thread.
BOOSTING_THREADS = 1


def window_statistics(x: np.ndarray) -> np.ndarray:
    """Per window and feature: last value, mean, std, range and slope.

    ``std`` is the population standard deviation; ``slope`` the least-squares
    slope against the step index, in feature units per step.

    Shapes:
        x: ``[windows, window, features]`` (no position channel).
        Returns ``[windows, features * 5]``, feature-major: the five
        statistics of the first feature, then of the next.
    """
    x = np.asarray(x, dtype=np.float64)
    steps = np.arange(x.shape[1], dtype=np.float64)
    centred_steps = steps - steps.mean()
    mean = x.mean(axis=1)
    slope = np.einsum("t,wtf->wf", centred_steps, x - mean[:, None, :]) / np.sum(
        centred_steps**2
    )
    statistics = np.stack(
        [x[:, -1], mean, x.std(axis=1), x.max(axis=1) - x.min(axis=1), slope],
        axis=-1,
    )
    return statistics.reshape(len(x), -1)


def feature_statistics(tensors: WindowTensors, data: DataConfig) -> np.ndarray:
    """:func:`window_statistics` of the scaled input KPIs, position left out."""
    return window_statistics(tensors.x[:, :, : len(data.features)].numpy())


def persistence_forecast(windows: pd.DataFrame, data: DataConfig) -> np.ndarray:
    """The last observed value of each target, ``[windows, targets]`` in dBm/dB."""
    return windows[[f"last_{k}" for k in data.targets]].to_numpy(dtype=np.float64)


def majority_probability(label: np.ndarray) -> float:
    """The training positive rate: at threshold 0.5 it decides the majority."""
    return float(np.mean(np.asarray(label, dtype=np.float64)))


def last_sinr(tensors: WindowTensors, prepared: PreparedData) -> np.ndarray:
    """The SINR of each window's last step in dB, ``[windows]``.

    Read from the window table when SINR is a target, else unscaled from
    the last step of ``x``; SINR must be one or the other.
    """
    data = prepared.data
    if SINR in data.targets:
        return tensors.windows[f"last_{SINR}"].to_numpy(dtype=np.float64)
    scaled = tensors.x[:, -1, data.features.index(SINR)].numpy()
    recordings = list(tensors.windows["recording"])
    return prepared.scaler.inverse_rows(recordings, scaled[:, None], [SINR])[:, 0]


@dataclass(frozen=True)
class SinrRule:
    """``P(interference) = sigmoid(coefficient * z + intercept)``.

    ``z = (sinr_db - mean) / scale`` with the training mean and standard
    deviation, which keeps the solver well conditioned; ``threshold`` is the
    decision threshold on that probability.
    """

    coefficient: float
    intercept: float
    mean: float
    scale: float
    threshold: float

    def probability(self, sinr_db: np.ndarray) -> np.ndarray:
        z = (np.asarray(sinr_db, dtype=np.float64) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(self.coefficient * z + self.intercept)))

    def threshold_db(self) -> float | None:
        """The SINR where the decision flips, or None for a flat rule."""
        if self.coefficient == 0 or not 0 < self.threshold < 1:
            return None
        logit = math.log(self.threshold / (1 - self.threshold))
        return self.mean + self.scale * (logit - self.intercept) / self.coefficient


def fit_sinr_rule(
    train_sinr: np.ndarray,
    train_label: np.ndarray,
    val_sinr: np.ndarray,
    val_label: np.ndarray,
) -> SinrRule:
    """Fit the logistic regression on training windows, the threshold on val."""
    mean = float(np.mean(train_sinr))
    scale = float(np.std(train_sinr)) or 1.0
    z = ((np.asarray(train_sinr, dtype=np.float64) - mean) / scale)[:, None]
    regression = LogisticRegression().fit(z, np.asarray(train_label, dtype=np.int64))
    rule = SinrRule(
        coefficient=float(regression.coef_[0, 0]),
        intercept=float(regression.intercept_[0]),
        mean=mean,
        scale=scale,
        threshold=0.5,
    )
    threshold = best_f1_threshold(val_label, rule.probability(val_sinr))
    return dataclasses.replace(rule, threshold=threshold)


@dataclass(frozen=True)
class TunedBoosting:
    """A boosting model refitted with the settings of lowest validation loss."""

    model: HistGradientBoostingClassifier | HistGradientBoostingRegressor
    learning_rate: float
    max_leaf_nodes: int
    max_iter: int
    val_loss: float

    def settings(self) -> dict[str, float]:
        return {
            "learning_rate": self.learning_rate,
            "max_leaf_nodes": self.max_leaf_nodes,
            "max_iter": self.max_iter,
            "val_loss": self.val_loss,
        }


def tune_classifier(
    train_x: np.ndarray,
    train_label: np.ndarray,
    val_x: np.ndarray,
    val_label: np.ndarray,
    *,
    seed: int,
    balanced: bool,
) -> TunedBoosting:
    """The classifier of lowest validation log loss over the grid.

    ``balanced`` weights the classes inversely to their training frequency,
    as the models' ``train.class_weight: balanced`` does, so that the
    baseline minimises the same loss as the models it is compared with.
    """

    def make(learning_rate: float, max_leaf_nodes: int, max_iter: int) -> Any:
        return HistGradientBoostingClassifier(
            learning_rate=learning_rate,
            max_leaf_nodes=max_leaf_nodes,
            max_iter=max_iter,
            early_stopping=False,
            class_weight="balanced" if balanced else None,
            random_state=seed,
        )

    def losses(model: Any) -> list[float]:
        return [
            binary_cross_entropy(val_label, p[:, 1])
            for p in model.staged_predict_proba(val_x)
        ]

    label = np.asarray(train_label, dtype=np.int64)
    return _tune(make, losses, train_x, label, max_iter=CLASSIFIER_MAX_ITER)


def tune_regressor(
    train_x: np.ndarray,
    train_change: np.ndarray,
    val_x: np.ndarray,
    val_change: np.ndarray,
    *,
    seed: int,
) -> TunedBoosting:
    """The regressor of lowest validation MSE over the grid.

    The target is the change from the last observed value (scaled), so a
    model that learns nothing forecasts persistence rather than the mean.
    """

    def make(learning_rate: float, max_leaf_nodes: int, max_iter: int) -> Any:
        return HistGradientBoostingRegressor(
            learning_rate=learning_rate,
            max_leaf_nodes=max_leaf_nodes,
            max_iter=max_iter,
            early_stopping=False,
            random_state=seed,
        )

    def losses(model: Any) -> list[float]:
        return [
            float(np.mean((p - val_change) ** 2)) for p in model.staged_predict(val_x)
        ]

    return _tune(make, losses, train_x, train_change, max_iter=REGRESSOR_MAX_ITER)


def _tune(
    make: Callable[[float, int, int], Any],
    losses: Callable[[Any], list[float]],
    train_x: np.ndarray,
    train_y: np.ndarray,
    *,
    max_iter: int,
) -> TunedBoosting:
    """Fit ``make(learning_rate, max_leaf_nodes, max_iter)`` over the grid.

    ``losses(model)`` is the validation loss after each tree; the setting
    and tree count of the lowest loss are refitted.
    """
    best: tuple[float, float, int, int] | None = None
    for learning_rate, max_leaf_nodes in itertools.product(
        LEARNING_RATES, MAX_LEAF_NODES
    ):
        model = make(learning_rate, max_leaf_nodes, max_iter).fit(train_x, train_y)
        curve = losses(model)
        # argmin takes the first minimum: the fewest trees among equal losses.
        trees = int(np.argmin(curve)) + 1
        if best is None or curve[trees - 1] < best[0]:
            best = (curve[trees - 1], learning_rate, max_leaf_nodes, trees)
    assert best is not None
    val_loss, learning_rate, max_leaf_nodes, trees = best
    model = make(learning_rate, max_leaf_nodes, trees)
    if trees == max_iter:
        logger.warning(
            "%s: the validation loss still fell at the last of %d trees; "
            "a higher cap may do better",
            type(model).__name__,
            max_iter,
        )
    model.fit(train_x, train_y)
    return TunedBoosting(model, learning_rate, max_leaf_nodes, trees, val_loss)


def gradient_boosting(
    train: WindowTensors,
    val: WindowTensors,
    test: WindowTensors,
    prepared: PreparedData,
    *,
    seed: int,
    balanced: bool,
) -> tuple[np.ndarray, np.ndarray, float, dict[str, Any]]:
    """Fit and tune on train/val; the test probabilities and physical forecasts.

    Returns the test probabilities ``[windows]``, the test forecasts
    ``[windows, targets]`` in dBm/dB, the decision threshold chosen on
    validation, and the chosen settings by task.
    """
    data = prepared.data
    train_x, val_x, test_x = (feature_statistics(s, data) for s in (train, val, test))

    classifier = tune_classifier(
        train_x,
        train.label.numpy(),
        val_x,
        val.label.numpy(),
        seed=seed,
        balanced=balanced,
    )
    val_probability = classifier.model.predict_proba(val_x)[:, 1]
    threshold = best_f1_threshold(val.label.numpy(), val_probability)
    probability = classifier.model.predict_proba(test_x)[:, 1]

    settings: dict[str, Any] = {"classifier": classifier.settings()}
    change = np.empty((len(test), len(data.targets)))
    for i, kpi in enumerate(data.targets):
        regressor = tune_regressor(
            train_x,
            (train.target - train.last)[:, i].numpy(),
            val_x,
            (val.target - val.last)[:, i].numpy(),
            seed=seed,
        )
        change[:, i] = regressor.model.predict(test_x)
        settings[kpi] = regressor.settings()

    forecast = prepared.scaler.inverse_rows(
        list(test.windows["recording"]),
        test.last.numpy().astype(np.float64) + change,
        data.targets,
    )
    return probability, forecast, threshold, settings


def run_baselines_stage(
    *, params: Params, prepared_dir: Path, metrics_path: Path
) -> dict[str, Any]:
    """Fit every baseline on train/val, score it on test, write the JSON."""
    data = params.data
    prepared = PreparedData.load(prepared_dir, data)
    train, val, test = (prepared.split(name) for name in ("train", "val", "test"))
    for name, tensors in (("train", train), ("val", val), ("test", test)):
        if len(tensors) == 0:
            raise MtlnetError(f"the {name} split holds no window; check data.* params")
    if len(np.unique(train.label.numpy())) < 2:
        raise MtlnetError(
            "the train split holds windows of one class only; the detection "
            "baselines need both (check data.label and the recordings)"
        )

    def scored(probability: np.ndarray, forecast: np.ndarray, threshold: float) -> Any:
        return score(
            test.windows, probability, forecast, threshold, prepared.scaler, data
        )

    persistence = persistence_forecast(test.windows, data)
    majority = np.full(len(test), majority_probability(train.label.numpy()))
    results: dict[str, Any] = {"majority": scored(majority, persistence, 0.5)}

    if SINR in data.features or SINR in data.targets:
        rule = fit_sinr_rule(
            last_sinr(train, prepared),
            train.label.numpy(),
            last_sinr(val, prepared),
            val.label.numpy(),
        )
        probability = rule.probability(last_sinr(test, prepared))
        block = scored(probability, persistence, rule.threshold)
        block["rule"] = {"coefficient": rule.coefficient, "intercept": rule.intercept}
        threshold_db = rule.threshold_db()
        if threshold_db is not None:
            block["rule"]["threshold_db"] = threshold_db
        results["sinr_threshold"] = block
    else:
        logger.warning(
            "baseline sinr_threshold skipped: %s is neither in data.features "
            "nor in data.targets",
            SINR,
        )

    with threadpool_limits(limits=BOOSTING_THREADS, user_api="openmp"):
        probability, forecast, threshold, settings = gradient_boosting(
            train,
            val,
            test,
            prepared,
            seed=params.seed,
            balanced=params.train.class_weight == "balanced",
        )
    results["gradient_boosting"] = {
        **scored(probability, forecast, threshold),
        "settings": settings,
    }
    # The majority row already pairs the majority class with persistence.
    results["persistence"] = copy.deepcopy(results["majority"])

    write_json(metrics_path, results)
    for name, block in results.items():
        logger.info("baseline %s on test: %s", name, describe(block, data.targets))
    return results
