"""The ``compare`` stage: every architecture's figures side by side.

Reads ``metrics/eval/<m>.json`` and ``metrics/profile/<m>.json`` (and
``metrics/baselines.json`` when it exists) and writes
``metrics/compare.json``, a markdown table and PNG charts.

``delta_m`` of an MTL architecture is its mean relative improvement over
``stl`` on one metric per task: F1 for interference, RMSE for each KPI,
each signed so that better is positive, in percent (see
:func:`mtlnet.metrics.delta_m`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mtlnet.io import read_metrics, write_csv, write_json, write_text
from mtlnet.metrics import HIGHER_IS_BETTER, delta_m
from mtlnet.plots import plot_bars, plot_tradeoff

REFERENCE = "stl"
CLASSIFICATION_KEYS = (
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "f1",
    "auroc",
    "auprc",
)
REGRESSION_KEYS = ("rmse", "mae", "skill")
PROFILE_KEYS = (
    "params",
    "trainable_params",
    "flops",
    "size_mb",
    "latency_ms_p50",
    "latency_ms_p99",
    "throughput_windows_s",
    "train_time_s",
    "epoch_time_s",
)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"a": {"b": 1}}`` to ``{"a.b": 1}``."""
    flat: dict[str, float] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def task_keys(targets: Sequence[str]) -> list[str]:
    """One metric per task, the ones ``delta_m`` averages."""
    return ["classification.f1", *(f"regression.{k}.rmse" for k in targets)]


def architecture_block(
    evaluation: Mapping[str, Any], profile: Mapping[str, Any], targets: Sequence[str]
) -> dict[str, Any]:
    """The figures of one architecture: means, and their spread under ``std``."""

    def pick(tree: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "classification": {
                k: tree["classification"][k] for k in CLASSIFICATION_KEYS
            },
            "regression": {
                kpi: {k: tree["regression"][kpi][k] for k in REGRESSION_KEYS}
                for kpi in targets
            },
        }

    return {
        **pick(evaluation),
        "profile": {k: profile[k] for k in PROFILE_KEYS},
        "std": {
            **pick(evaluation["std"]),
            "profile": {k: profile.get("std", {}).get(k, 0.0) for k in PROFILE_KEYS},
        },
    }


def beyond_spread(
    block: Mapping[str, Any], reference: Mapping[str, Any], key: str
) -> bool:
    """Whether ``key`` differs from the reference by more than both spreads."""
    mean, base = flatten(block)[key], flatten(reference)[key]
    spread = flatten(block["std"])[key] + flatten(reference["std"])[key]
    return abs(mean - base) > spread


def compare(
    *,
    models: Sequence[str],
    targets: Sequence[str],
    eval_dir: Path,
    profile_dir: Path,
    baselines_path: Path | None,
    metrics_path: Path,
    plot_dir: Path,
) -> dict[str, Any]:
    """Write the comparison of ``models`` (and baselines when present)."""
    blocks = {
        m: architecture_block(
            read_metrics(eval_dir / f"{m}.json"),
            read_metrics(profile_dir / f"{m}.json"),
            targets,
        )
        for m in models
    }
    keys = task_keys(targets)
    if REFERENCE in blocks:
        reference = flatten(blocks[REFERENCE])
        for name, block in blocks.items():
            if name != REFERENCE:
                block["delta_m"] = delta_m(flatten(block), reference, keys)

    baselines: dict[str, Any] = {}
    if baselines_path is not None and baselines_path.exists():
        baselines = read_metrics(baselines_path)
    summary = {**blocks, **({"baselines": baselines} if baselines else {})}
    write_json(metrics_path, summary)
    write_text(plot_dir / "table.md", markdown_table(blocks, baselines, targets))
    write_csv(plot_dir / "scores.csv", scores_frame(blocks, targets))
    draw_charts(blocks, targets, plot_dir)
    return summary


def _cell(
    block: Mapping[str, Any], reference: Mapping[str, Any] | None, key: str, digits: int
) -> str:
    mean = flatten(block)[key]
    std = flatten(block["std"]).get(key, 0.0)
    text = f"{mean:.{digits}f} ± {std:.{digits}f}"
    if (
        reference is not None
        and block is not reference
        and beyond_spread(block, reference, key)
    ):
        better = (mean > flatten(reference)[key]) == HIGHER_IS_BETTER[
            key.rsplit(".", 1)[-1]
        ]
        text += " ▲" if better else " ▼"
    return text


def markdown_table(
    blocks: Mapping[str, Any], baselines: Mapping[str, Any], targets: Sequence[str]
) -> str:
    """Mean ± std over seeds; ▲/▼ marks a difference from stl beyond both spreads."""
    reference = blocks.get(REFERENCE)
    header = [
        "model",
        "F1",
        "AUROC",
        "bal. acc.",
        *(f"RMSE {k}" for k in targets),
        *(f"skill {k}" for k in targets),
        "params",
        "MFLOPs",
        "latency p50 (ms)",
        "train (s)",
        "Δm (%)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, block in blocks.items():
        profile = block["profile"]
        row = [
            name,
            _cell(block, reference, "classification.f1", 3),
            _cell(block, reference, "classification.auroc", 3),
            _cell(block, reference, "classification.balanced_accuracy", 3),
            *(_cell(block, reference, f"regression.{k}.rmse", 3) for k in targets),
            *(_cell(block, reference, f"regression.{k}.skill", 3) for k in targets),
            f"{profile['params']:,.0f}",
            f"{profile['flops'] / 1e6:.2f}",
            f"{profile['latency_ms_p50']:.2f}",
            f"{profile['train_time_s']:.0f}",
            "—" if "delta_m" not in block else f"{block['delta_m']:+.1f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    for name, baseline in baselines.items():
        if not isinstance(baseline, Mapping) or "classification" not in baseline:
            continue
        c, r = baseline["classification"], baseline.get("regression", {})
        row = [
            f"*{name}*",
            f"{c['f1']:.3f}",
            f"{c['auroc']:.3f}",
            f"{c['balanced_accuracy']:.3f}",
            *(f"{r[k]['rmse']:.3f}" if k in r else "—" for k in targets),
            *(f"{r[k]['skill']:.3f}" if k in r else "—" for k in targets),
            "—",
            "—",
            "—",
            "—",
            "—",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def scores_frame(blocks: Mapping[str, Any], targets: Sequence[str]) -> pd.DataFrame:
    """One row per architecture, for ``dvc plots`` bar charts.

    Only figures that two runs reproduce exactly; timings are in the JSON
    and the PNG charts.
    """
    rows = []
    for name, block in blocks.items():
        row = {
            "model": name,
            "f1": block["classification"]["f1"],
            "auroc": block["classification"]["auroc"],
            **{f"rmse_{k}": block["regression"][k]["rmse"] for k in targets},
            "params": block["profile"]["params"],
            "flops": block["profile"]["flops"],
        }
        rows.append(row)
    return pd.DataFrame(rows)


def draw_charts(
    blocks: Mapping[str, Any], targets: Sequence[str], plot_dir: Path
) -> None:
    flat = {n: flatten(block) for n, block in blocks.items()}
    flat_std = {n: flatten(block["std"]) for n, block in blocks.items()}

    def bars(
        keys: Sequence[str], groups: Sequence[str], ylabel: str, name: str
    ) -> None:
        plot_bars(
            {n: [values[k] for k in keys] for n, values in flat.items()},
            {n: [spread.get(k, 0.0) for k in keys] for n, spread in flat_std.items()},
            groups,
            ylabel,
            plot_dir / name,
        )

    bars(
        ["classification.f1", "classification.auroc"],
        ["F1", "AUROC"],
        "test score",
        "detection.png",
    )
    bars(
        [f"regression.{k}.rmse" for k in targets],
        targets,
        "test RMSE (dBm / dB)",
        "rmse.png",
    )
    for key, label in (
        ("params", "parameters"),
        ("flops", "FLOPs per window"),
        ("latency_ms_p50", "latency, one window (ms)"),
        ("train_time_s", "training time (s)"),
    ):
        bars([f"profile.{key}"], [key], label, f"{key}.png")
    plot_tradeoff(
        {n: values["profile.latency_ms_p50"] for n, values in flat.items()},
        {n: values["classification.f1"] for n, values in flat.items()},
        "test F1",
        plot_dir / "tradeoff.png",
    )
