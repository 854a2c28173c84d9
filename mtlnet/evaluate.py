"""The ``evaluate`` stage: best checkpoints scored on the test split.

Scores come from :func:`mtlnet.scoring.score`, the function the baselines
use too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mtlnet.checkpoint import checkpoint_path, load_checkpoint
from mtlnet.config import DataConfig, Params, to_mapping
from mtlnet.dataset import PreparedData
from mtlnet.errors import MtlnetError
from mtlnet.io import write_csv, write_json
from mtlnet.metrics import mean_and_std
from mtlnet.plots import plot_confusion, plot_forecasts, plot_timeline
from mtlnet.scoring import describe, score
from mtlnet.train import predict

logger = logging.getLogger(__name__)


def predictions_frame(
    windows: pd.DataFrame,
    probability: np.ndarray,
    forecast: np.ndarray,
    threshold: float,
    data: DataConfig,
) -> pd.DataFrame:
    """One row per window: truth, probability, decision, forecasts (dBm/dB)."""
    frame = pd.DataFrame(
        {
            "recording": windows["recording"].to_numpy(),
            "time": windows["time"].to_numpy(),
            "label": windows["label"].to_numpy(),
            "probability": probability,
            "decision": (probability >= threshold).astype(np.int64),
        }
    )
    for i, kpi in enumerate(data.targets):
        frame[f"target_{kpi}"] = windows[f"target_{kpi}"].to_numpy()
        frame[f"forecast_{kpi}"] = forecast[:, i]
        frame[f"last_{kpi}"] = windows[f"last_{kpi}"].to_numpy()
    return frame


def run_evaluate_stage(
    *,
    params: Params,
    architecture: str,
    prepared_dir: Path,
    train_dir: Path,
    metrics_path: Path,
    plot_dir: Path,
) -> dict[str, Any]:
    """Score every seed's checkpoint on the test split; write mean and spread.

    The predictions and figures are those of the first seed.
    """
    torch.set_num_threads(params.train.threads)
    prepared = PreparedData.load(prepared_dir, params.data)
    test = prepared.split("test")
    if len(test) == 0:
        raise MtlnetError("the test split holds no window; check data.* params")

    runs, first_predictions = [], None
    for seed in params.seed_list():
        path = checkpoint_path(train_dir, architecture, seed)
        checkpoint = load_checkpoint(path, architecture=architecture)
        if to_mapping(checkpoint.data) != to_mapping(params.data):
            raise MtlnetError(
                f"{path}: trained with other data params than params.yaml; "
                "run `dvc repro` to retrain"
            )
        scaled, probability = predict(checkpoint.model, test.x)
        forecast = prepared.scaler.inverse_rows(
            list(test.windows["recording"]), scaled.numpy(), params.data.targets
        )
        probability_np = probability.numpy().astype(np.float64)
        runs.append(
            score(
                test.windows,
                probability_np,
                forecast,
                checkpoint.threshold,
                prepared.scaler,
                params.data,
            )
        )
        if first_predictions is None:
            first_predictions = predictions_frame(
                test.windows,
                probability_np,
                forecast,
                checkpoint.threshold,
                params.data,
            )

    summary = mean_and_std(runs)
    write_json(metrics_path, summary)
    assert first_predictions is not None
    write_csv(plot_dir / "predictions.csv", first_predictions)
    plot_forecasts(first_predictions, params.data.targets, plot_dir / "forecast.png")
    plot_timeline(first_predictions, plot_dir / "timeline.png")
    plot_confusion(runs[0]["classification"], plot_dir / "confusion.png")
    logger.info("%s on test: %s", architecture, describe(summary, params.data.targets))
    return summary
