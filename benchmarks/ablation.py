"""Validation-split ablation of the forecasting choices, on FccIQ.

Trains one architecture (hard sharing by default, the fastest) with the
committed params and with each of the choices that shaped the forecasts
turned back, one seed at a time, and prints each variant's validation
forecast skill per KPI and F1 at its own best threshold. Only the training
and validation splits are read, so this is where the choices were made;
the test split is left to `evaluate`.

Variants, each against the committed params:

- ``committed``: as ``params.yaml`` says;
- ``no summary``: ``arch.<m>.summary: false``, the towers read the GCN
  readout alone;
- ``scaled loss``: ``train.regression_loss: scaled``, the plain MSE of the
  scaled KPIs instead of the MSE relative to persistence;
- ``neither``: both turned back;
- ``30 epochs``: ``train.epochs: 30``, ``train.patience: 8``;
- ``GCN dropout 0.1``: ``arch.<m>.gcn_dropout: 0.1``, dropout after every
  GCN layer as well as in the towers.

The gradient-boosting row is the baseline's validation loss from
``metrics/baselines.json``. Needs ``stages/prepare`` (run ``dvc repro
prepare`` first). Two processes train at once, one thread each::

    .venv/bin/python benchmarks/ablation.py [--arch hardsharing] [--seeds 50 51]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from mtlnet.config import Params, load_params
from mtlnet.dataset import PreparedData
from mtlnet.metrics import best_f1_threshold, classification_metrics
from mtlnet.train import train_model

ROOT = Path(__file__).resolve().parent.parent
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (arch overrides, train overrides)
    "committed": ({}, {}),
    "no summary": ({"summary": False}, {}),
    "scaled loss": ({}, {"regression_loss": "scaled"}),
    "neither": ({"summary": False}, {"regression_loss": "scaled"}),
    "30 epochs": ({}, {"epochs": 30, "patience": 8}),
    "GCN dropout 0.1": ({"gcn_dropout": 0.1}, {}),
}


def run(arch: str, variant: str, seed: int) -> dict[str, Any]:
    """Train one variant with one seed; its validation skill and F1."""
    torch.set_num_threads(1)
    params = load_params(ROOT / "params.yaml")
    prepared = PreparedData.load(ROOT / "stages" / "prepare", params.data)
    train_set, val_set = prepared.split("train"), prepared.split("val")
    arch_overrides, train_overrides = VARIANTS[variant]
    result = train_model(
        architecture=arch,
        arch_config=dataclasses.replace(params.arch.get(arch), **arch_overrides),
        train=dataclasses.replace(params.train, **train_overrides),
        data=params.data,
        graph=params.graph,
        train_set=train_set,
        val_set=val_set,
        seed=seed,
    )
    model = result.model.eval()
    with torch.no_grad():
        forecast, logits = model(val_set.x)
    persistence = ((val_set.target - val_set.last) ** 2).mean(dim=0)
    mse = ((forecast - val_set.target) ** 2).mean(dim=0)
    probability = torch.sigmoid(logits).numpy()
    label = val_set.label.numpy()
    threshold = best_f1_threshold(label, probability)
    return {
        "variant": variant,
        "seed": seed,
        "skill": (1 - torch.sqrt(mse / persistence)).tolist(),
        "f1": classification_metrics(label, probability, threshold)["f1"],
        "epochs": result.epochs_run,
    }


def baseline_skill(params: Params) -> list[float]:
    """Gradient boosting's validation skill, from its recorded losses."""
    prepared = PreparedData.load(ROOT / "stages" / "prepare", params.data)
    val_set = prepared.split("val")
    persistence = ((val_set.target - val_set.last) ** 2).mean(dim=0).tolist()
    baselines = json.loads((ROOT / "metrics" / "baselines.json").read_text())
    settings = baselines["gradient_boosting"]["settings"]
    return [
        1 - math.sqrt(settings[kpi]["val_loss"] / p)
        for kpi, p in zip(params.data.targets, persistence, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="hardsharing")
    parser.add_argument("--seeds", type=int, nargs="+", default=[50, 51])
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    jobs = [(args.arch, v, s) for v in VARIANTS for s in args.seeds]
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, *zip(*jobs, strict=True)))

    kpis = params.data.targets
    print(f"{args.arch}, validation split, seeds {' '.join(map(str, args.seeds))}")
    print(
        f"{'variant':<20}" + "".join(f"{'skill ' + k:>13}" for k in kpis) + "       F1"
    )
    for variant in VARIANTS:
        rows = [r for r in results if r["variant"] == variant]
        skill = [sum(r["skill"][i] for r in rows) / len(rows) for i in range(len(kpis))]
        f1 = sum(r["f1"] for r in rows) / len(rows)
        print(f"{variant:<20}" + "".join(f"{s:>12.1%} " for s in skill) + f"{f1:>8.3f}")
    gb = baseline_skill(params)
    print(f"{'gradient boosting':<20}" + "".join(f"{s:>12.1%} " for s in gb))


if __name__ == "__main__":
    main()
