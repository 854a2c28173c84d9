"""The one scoring function for models and baselines alike.

Classification figures at a decision threshold, and per KPI the RMSE and
MAE in the KPI's unit, the MSE of the scaled values and the skill against
persistence. ``loss.total`` is the classification log loss plus the scaled
MSE of every KPI, the unweighted sum the models are selected by.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mtlnet.config import DataConfig
from mtlnet.metrics import classification_metrics, confusion, regression_metrics
from mtlnet.scaling import Scaler


def score(
    windows: pd.DataFrame,
    probability: np.ndarray,
    forecast: np.ndarray,
    threshold: float,
    scaler: Scaler,
    data: DataConfig,
) -> dict[str, Any]:
    """Score detection probabilities and physical forecasts of ``windows``.

    Shapes:
        probability: ``[windows]``; forecast: ``[windows, targets]`` in dBm/dB.
    """
    label = windows["label"].to_numpy()
    classification: dict[str, float] = {
        **classification_metrics(label, probability, threshold),
        **confusion(label, probability >= threshold),
        "threshold": threshold,
    }
    _, scale = scaler.row_vectors(list(windows["recording"]), data.targets)
    regression: dict[str, Any] = {
        kpi: regression_metrics(
            windows[f"target_{kpi}"].to_numpy(),
            forecast[:, i],
            windows[f"last_{kpi}"].to_numpy(),
            scale[:, i],
        )
        for i, kpi in enumerate(data.targets)
    }
    mse_scaled = [regression[kpi]["mse_scaled"] for kpi in data.targets]
    regression["mse_scaled"] = float(np.mean(mse_scaled))
    total = classification["loss"] + float(np.sum(mse_scaled))
    return {
        "classification": classification,
        "regression": regression,
        "loss": {"total": total},
        "windows": len(windows),
    }


def describe(scores: dict[str, Any], targets: Sequence[str]) -> str:
    """A :func:`score` block's headline figures on one line, for the log."""
    classification, regression = scores["classification"], scores["regression"]
    skill = ", ".join(f"{k} {regression[k]['skill']:+.3f}" for k in targets)
    return (
        f"f1 {classification['f1']:.3f} auroc {classification['auroc']:.3f}, "
        f"skill {skill}"
    )
