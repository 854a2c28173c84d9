"""The ``export`` stage: the best seed of the chosen architecture."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from mtlnet.checkpoint import load_checkpoint, model_for, save_checkpoint
from mtlnet.config import (
    ARCHITECTURES,
    ArchConfigs,
    DataConfig,
    GraphConfig,
    Params,
    load_params,
)
from mtlnet.errors import MtlnetError
from mtlnet.export import MODEL_FILE, export
from mtlnet.io import write_json, write_parquet
from mtlnet.prepare import SCALER_FILE
from mtlnet.scaling import SCALER_COLUMNS

DATA = DataConfig(dir="data", window=4, targets=("RSRP", "SINR"))
GRAPH = GraphConfig()
ARCH = dataclasses.replace(ArchConfigs().ple, hidden=8, tower_hidden=4, layers=1)
PARAMS = Params(
    model="ple",
    models=("stl", "ple"),
    seed=10,
    seeds=3,
    data=DATA,
    graph=GRAPH,
    arch=dataclasses.replace(ArchConfigs(), ple=ARCH),
)


def write_checkpoints(train_dir: Path, val_losses: dict[int, float]) -> None:
    for seed, val_loss in val_losses.items():
        torch.manual_seed(seed)
        save_checkpoint(
            train_dir / "ple" / f"seed_{seed}.pt",
            model=model_for("ple", ARCH, DATA, GRAPH),
            architecture="ple",
            arch_config=ARCH,
            data=DATA,
            graph=GRAPH,
            threshold=0.5,
            seed=seed,
            extra={"best_epoch": 3, "val_loss": val_loss},
        )


def write_inputs(root: Path) -> None:
    """The evaluation, profile and scaler the stage reads besides checkpoints."""
    regression = {
        "RSRP": {"rmse": 2.5, "mae": 2.0, "mse_scaled": 0.1, "skill": 0.2},
        "SINR": {"rmse": 1.5, "mae": 1.0, "mse_scaled": 0.3, "skill": -0.1},
    }
    evaluation = {
        "classification": {"f1": 0.7, "auroc": 0.9, "balanced_accuracy": 0.8},
        "regression": regression,
    }
    write_json(root / "eval" / "ple.json", {**evaluation, "std": evaluation})
    write_json(
        root / "profile" / "ple.json",
        {"params": 1234, "flops": 5.5e5, "latency_ms_p50": 0.25},
    )
    scaler = pd.DataFrame(
        [("*", "RSRP", -95.0, 5.0), ("*", "SINR", 16.0, 5.0)],
        columns=list(SCALER_COLUMNS),
    )
    write_parquet(root / "prepare" / SCALER_FILE, scaler)


def run(root: Path, params: Params = PARAMS) -> dict[str, float]:
    return export(
        params=params,
        prepared_dir=root / "prepare",
        train_dir=root / "train",
        eval_dir=root / "eval",
        profile_dir=root / "profile",
        export_dir=root / "export",
        metrics_path=root / "model.json",
    )


def numbers_only(tree: Any) -> bool:
    if isinstance(tree, dict):
        return all(numbers_only(v) for v in tree.values())
    return isinstance(tree, int | float) and not isinstance(tree, bool)


def test_export_copies_the_seed_of_lowest_validation_loss(tmp_path):
    write_checkpoints(tmp_path / "train", {10: 0.9, 11: 0.4, 12: 0.7})
    write_inputs(tmp_path)

    figures = run(tmp_path)

    exported = tmp_path / "export" / MODEL_FILE
    chosen = tmp_path / "train" / "ple" / "seed_11.pt"
    assert exported.read_bytes() == chosen.read_bytes()
    assert load_checkpoint(exported, architecture="ple").seed == 11
    scaler = tmp_path / "export" / SCALER_FILE
    assert scaler.read_bytes() == (tmp_path / "prepare" / SCALER_FILE).read_bytes()
    assert figures["seed"] == 11
    assert figures["val_loss"] == 0.4


def test_export_writes_the_headline_figures_as_flat_numbers(tmp_path):
    write_checkpoints(tmp_path / "train", {10: 0.9, 11: 0.4, 12: 0.7})
    write_inputs(tmp_path)

    figures = run(tmp_path)

    written = json.loads((tmp_path / "model.json").read_text())
    assert written == figures
    assert numbers_only(written)
    assert written == {
        "f1": 0.7,
        "auroc": 0.9,
        "balanced_accuracy": 0.8,
        "rmse_RSRP": 2.5,
        "skill_RSRP": 0.2,
        "rmse_SINR": 1.5,
        "skill_SINR": -0.1,
        "params": 1234,
        "flops": 5.5e5,
        "latency_ms_p50": 0.25,
        "architecture": ARCHITECTURES.index("ple"),
        "seed": 11,
        "val_loss": 0.4,
    }


def test_export_needs_every_seed_checkpoint(tmp_path):
    write_checkpoints(tmp_path / "train", {10: 0.9, 12: 0.7})
    write_inputs(tmp_path)

    with pytest.raises(MtlnetError, match=r"seed_11\.pt: checkpoint not found"):
        run(tmp_path)
    assert not (tmp_path / "export").exists()
    assert not (tmp_path / "model.json").exists()


def test_a_model_outside_models_is_refused_naming_the_allowed_values():
    with pytest.raises(MtlnetError, match="'mmoe' is not in models; allowed: stl, ple"):
        dataclasses.replace(PARAMS, model="mmoe")


def test_a_params_file_exporting_a_model_outside_models_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"model": "mmoe", "models": ["stl", "ple"]}))

    with pytest.raises(MtlnetError) as raised:
        load_params(path)

    assert str(raised.value) == (
        f"{path}: model: 'mmoe' is not in models; allowed: stl, ple"
    )
