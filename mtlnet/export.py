"""The ``export`` stage: promote one architecture for ``mtlnet predict``.

``stages/export/`` receives the checkpoint and the scaler it was trained
with (``model.pt``, ``scaler.parquet``). Of the architecture's seeds, the
one with the lowest validation loss is exported (a choice made on
validation, never on test). ``metrics/model.json`` holds its headline test
figures (means over seeds, as in the comparison), flat, so that its columns
line up across experiments in ``dvc exp show``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtlnet.checkpoint import checkpoint_path, load_checkpoint
from mtlnet.config import ARCHITECTURES, Params
from mtlnet.io import atomic_dir, read_metrics, write_json
from mtlnet.prepare import SCALER_FILE

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"


def headline(
    evaluation: dict[str, Any], profile: dict[str, Any], targets: Sequence[str]
) -> dict[str, float]:
    """The figures a reader compares experiments by, flat and numeric."""
    classification = evaluation["classification"]
    figures: dict[str, float] = {
        "f1": classification["f1"],
        "auroc": classification["auroc"],
        "balanced_accuracy": classification["balanced_accuracy"],
    }
    for kpi in targets:
        figures[f"rmse_{kpi}"] = evaluation["regression"][kpi]["rmse"]
        figures[f"skill_{kpi}"] = evaluation["regression"][kpi]["skill"]
    figures["params"] = profile["params"]
    figures["flops"] = profile["flops"]
    figures["latency_ms_p50"] = profile["latency_ms_p50"]
    return figures


def export(
    *,
    params: Params,
    prepared_dir: Path,
    train_dir: Path,
    eval_dir: Path,
    profile_dir: Path,
    export_dir: Path,
    metrics_path: Path,
) -> dict[str, float]:
    """Copy the chosen checkpoint and its scaler; write its headline figures.

    ``params.model`` is one of ``params.models``: :class:`Params` refuses
    anything else when it is built.
    """
    name = params.model
    candidates = []
    for seed in params.seed_list():
        path = checkpoint_path(train_dir, name, seed)
        checkpoint = load_checkpoint(path, architecture=name)
        candidates.append((float(checkpoint.meta["val_loss"]), seed, path))
    val_loss, seed, chosen = min(candidates)

    figures = headline(
        read_metrics(eval_dir / f"{name}.json"),
        read_metrics(profile_dir / f"{name}.json"),
        params.data.targets,
    )
    figures["architecture"] = ARCHITECTURES.index(name)
    figures["seed"] = seed
    figures["val_loss"] = val_loss

    with atomic_dir(export_dir) as tmp:
        shutil.copyfile(chosen, tmp / MODEL_FILE)
        shutil.copyfile(prepared_dir / SCALER_FILE, tmp / SCALER_FILE)
    write_json(metrics_path, figures)
    logger.info("exported %s seed %d (validation loss %.4f)", name, seed, val_loss)
    return figures
