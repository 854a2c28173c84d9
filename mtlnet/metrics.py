"""Scoring functions shared by training, evaluation and the baselines.

Every number a model or a baseline reports comes from these functions, so a
row of the comparison differs from another in what was scored, never in how.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

# Which way is better, for the task metrics that delta_m averages.
HIGHER_IS_BETTER = {
    "accuracy": True,
    "balanced_accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "auroc": True,
    "auprc": True,
    "skill": True,
    "rmse": False,
    "mae": False,
    "mse_scaled": False,
    "loss": False,
}


def confusion(label: np.ndarray, decision: np.ndarray) -> dict[str, int]:
    """True/false positives/negatives of 0/1 arrays."""
    label = np.asarray(label).astype(bool)
    decision = np.asarray(decision).astype(bool)
    return {
        "tp": int((label & decision).sum()),
        "fp": int((~label & decision).sum()),
        "fn": int((label & ~decision).sum()),
        "tn": int((~label & ~decision).sum()),
    }


def _ratio(numerator: float, denominator: float) -> float:
    """A ratio that is 0 when nothing was counted (sklearn's zero_division=0)."""
    return numerator / denominator if denominator else 0.0


def auroc(label: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: the Mann-Whitney U statistic, ties halved.

    Undefined with one class present; 0.5 is returned then, the value of a
    score that knows nothing.
    """
    label = np.asarray(label).astype(bool)
    positives, negatives = int(label.sum()), int((~label).sum())
    if positives == 0 or negatives == 0:
        return 0.5
    ranks = rankdata(np.asarray(score, dtype=np.float64))
    u = ranks[label].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


def auprc(label: np.ndarray, score: np.ndarray) -> float:
    """Average precision: precision at each threshold, weighted by recall gain.

    Thresholds are the distinct scores, so tied scores enter together.
    With no positive it is 0.
    """
    label = np.asarray(label).astype(bool)
    positives = int(label.sum())
    if positives == 0:
        return 0.0
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="stable")
    sorted_score, sorted_label = score[order], label[order]
    true_pos = np.cumsum(sorted_label)
    # The last index of each run of equal scores is where a threshold cuts.
    cuts = np.flatnonzero(np.r_[sorted_score[1:] != sorted_score[:-1], True])
    tp = true_pos[cuts].astype(np.float64)
    precision = tp / (cuts + 1)
    recall = tp / positives
    gain = np.diff(np.r_[0.0, recall])
    return float((gain * precision).sum())


def binary_cross_entropy(label: np.ndarray, probability: np.ndarray) -> float:
    """Mean log loss, with probabilities clipped away from 0 and 1."""
    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(label, dtype=np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def classification_metrics(
    label: np.ndarray, probability: np.ndarray, threshold: float
) -> dict[str, float]:
    """Detection figures for probabilities against 0/1 labels."""
    label = np.asarray(label).astype(bool)
    probability = np.asarray(probability, dtype=np.float64)
    counts = confusion(label, probability >= threshold)
    tp, fp, fn, tn = counts["tp"], counts["fp"], counts["fn"], counts["tn"]
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    specificity = _ratio(tn, tn + fp)
    present = [r for r, n in ((recall, tp + fn), (specificity, tn + fp)) if n]
    return {
        "accuracy": _ratio(tp + tn, len(label)),
        "balanced_accuracy": float(np.mean(present)) if present else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "auroc": auroc(label, probability),
        "auprc": auprc(label, probability),
        "loss": binary_cross_entropy(label, probability),
    }


def best_f1_threshold(label: np.ndarray, probability: np.ndarray) -> float:
    """The decision threshold that maximises F1 on the given (validation) set.

    Candidates are the smallest probability (every window positive), the
    midpoints between distinct probabilities and 0.5; ties go to the
    threshold nearest 0.5. With no positive, 0.5 is returned.
    """
    label = np.asarray(label).astype(bool)
    probability = np.asarray(probability, dtype=np.float64)
    if not label.any():
        return 0.5
    distinct = np.unique(probability)
    candidates = np.r_[distinct[0], (distinct[1:] + distinct[:-1]) / 2, 0.5]
    decisions = probability[None, :] >= candidates[:, None]
    tp = (decisions & label).sum(axis=1)
    fp = (decisions & ~label).sum(axis=1)
    fn = label.sum() - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    best = np.flatnonzero(f1 == f1.max())
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def regression_metrics(
    target: np.ndarray,
    forecast: np.ndarray,
    persistence: np.ndarray,
    scale: float | np.ndarray,
) -> dict[str, float]:
    """Forecast figures for one KPI, in its physical unit.

    ``scale`` is the scaler's standard deviation of the KPI (one, or one
    per row when each recording has its own scaler), so that
    ``mse_scaled`` is the MSE of the scaled values the models are trained on.
    ``skill`` is ``1 - rmse / rmse_persistence``: 0 for the persistence
    forecast itself, positive when the forecast beats it.
    """
    target = np.asarray(target, dtype=np.float64)
    error = np.asarray(forecast, dtype=np.float64) - target
    rmse = float(np.sqrt(np.mean(error**2)))
    rmse_persistence = float(
        np.sqrt(np.mean((np.asarray(persistence, dtype=np.float64) - target) ** 2))
    )
    return {
        "rmse": rmse,
        "mae": float(np.mean(np.abs(error))),
        "mse_scaled": float(np.mean((error / scale) ** 2)),
        "skill": 1.0 - rmse / rmse_persistence if rmse_persistence else 0.0,
    }


def delta_m(
    model: Mapping[str, float], reference: Mapping[str, float], keys: Sequence[str]
) -> float:
    """Mean relative improvement of ``model`` over ``reference`` (in %).

    For each task metric ``k`` the relative change
    ``(model[k] - reference[k]) / |reference[k]|`` is signed so that an
    improvement is positive (Maninis et al., CVPR 2019; Vandenhende et al.,
    TPAMI 2021). ``keys`` are dotted names whose last part says the metric.
    """
    changes = []
    for key in keys:
        base = reference[key]
        if base == 0:
            continue
        sign = 1.0 if HIGHER_IS_BETTER[key.rsplit(".", 1)[-1]] else -1.0
        changes.append(sign * (model[key] - base) / abs(base))
    return 100.0 * float(np.mean(changes)) if changes else 0.0


def mean_and_std(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Average nested figures over runs (seeds).

    The result has the runs' keys holding the means, a tree ``std`` of the
    same shape holding the population standard deviations, and ``runs``.
    """
    if not runs:
        raise ValueError("no runs to average")

    def reduce(values: list[Any], how: Callable[[list[float]], float]) -> Any:
        if isinstance(values[0], Mapping):
            return {k: reduce([v[k] for v in values], how) for k in values[0]}
        return how([float(v) for v in values])

    return {
        **reduce(list(runs), lambda v: float(np.mean(v))),
        "std": reduce(list(runs), lambda v: float(np.std(v))),
        "runs": len(runs),
    }
