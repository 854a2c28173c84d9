"""PNG figures of the evaluate and compare stages.

Figures are built as ``matplotlib.figure.Figure`` objects, not through
pyplot, so no backend, display or global figure state is involved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mtlnet.io import atomic_file

UNITS = {"RSRP": "dBm", "RSRQ": "dB", "SINR": "dB"}


def save(figure: Figure, path: Path) -> None:
    """Write ``figure`` as PNG atomically; no timestamp, so bytes are stable."""
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, metadata={"Software": None})


def plot_forecasts(
    predictions: pd.DataFrame, targets: Sequence[str], path: Path
) -> None:
    """Forecast against truth, one panel per KPI, windows in test order."""
    figure = Figure(figsize=(11, 2.6 * len(targets)))
    axes = np.atleast_1d(figure.subplots(len(targets), 1))
    steps = np.arange(len(predictions))
    for axis, kpi in zip(axes, targets, strict=True):
        axis.plot(steps, predictions[f"target_{kpi}"], lw=1.0, label="truth")
        axis.plot(steps, predictions[f"forecast_{kpi}"], lw=1.0, label="forecast")
        axis.set_ylabel(f"{kpi} ({UNITS.get(kpi, '')})")
        _mark_recordings(axis, predictions)
    axes[0].legend(loc="upper right")
    axes[-1].set_xlabel("test window (recordings in order)")
    figure.tight_layout()
    save(figure, path)


def plot_timeline(predictions: pd.DataFrame, path: Path) -> None:
    """Interference truth, predicted probability and decision over the test windows."""
    figure = Figure(figsize=(11, 3.2))
    axis = figure.subplots()
    steps = np.arange(len(predictions))
    axis.fill_between(
        steps,
        0,
        predictions["label"],
        step="mid",
        alpha=0.25,
        label="interference (truth)",
    )
    axis.plot(steps, predictions["probability"], lw=1.0, label="probability")
    axis.step(
        steps, predictions["decision"] * 1.05, where="mid", lw=0.8, label="decision"
    )
    axis.set_ylim(-0.05, 1.15)
    axis.set_xlabel("test window (recordings in order)")
    _mark_recordings(axis, predictions)
    axis.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    save(figure, path)


def plot_confusion(counts: Mapping[str, float], path: Path) -> None:
    """The 2x2 confusion matrix of the test decisions."""
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
    figure = Figure(figsize=(3.6, 3.2))
    axis = figure.subplots()
    axis.imshow(matrix, cmap="Blues")
    for (row, column), value in np.ndenumerate(matrix):
        axis.text(column, row, f"{value:g}", ha="center", va="center")
    axis.set_xticks([0, 1], ["no", "yes"])
    axis.set_yticks([0, 1], ["no", "yes"])
    axis.set_xlabel("predicted interference")
    axis.set_ylabel("true interference")
    figure.tight_layout()
    save(figure, path)


def plot_bars(
    values: Mapping[str, Sequence[float]],
    errors: Mapping[str, Sequence[float]],
    groups: Sequence[str],
    ylabel: str,
    path: Path,
) -> None:
    """Grouped bars: one group per metric, one bar per architecture.

    ``errors`` holds each bar's spread, drawn as an error bar.
    """
    names = list(values)
    figure = Figure(figsize=(max(5.0, 1.1 * len(groups) * len(names) / 2), 3.6))
    axis = figure.subplots()
    width = 0.8 / len(names)
    positions = np.arange(len(groups))
    for i, name in enumerate(names):
        axis.bar(
            positions + i * width - 0.4 + width / 2,
            values[name],
            width,
            yerr=errors[name],
            capsize=2,
            label=name,
        )
    axis.set_xticks(positions, groups)
    axis.set_ylabel(ylabel)
    axis.legend(fontsize="small", ncol=min(len(names), 4))
    figure.tight_layout()
    save(figure, path)


def plot_tradeoff(
    latency_ms: Mapping[str, float], score: Mapping[str, float], ylabel: str, path: Path
) -> None:
    """Accuracy against latency: one point per architecture."""
    figure = Figure(figsize=(5.2, 3.8))
    axis = figure.subplots()
    for name in latency_ms:
        axis.scatter(latency_ms[name], score[name])
        axis.annotate(
            name,
            (latency_ms[name], score[name]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize="small",
        )
    axis.set_xlabel("latency, one window (ms, p50)")
    axis.set_ylabel(ylabel)
    figure.tight_layout()
    save(figure, path)


def _mark_recordings(axis: Axes, predictions: pd.DataFrame) -> None:
    recording = predictions["recording"].to_numpy()
    for boundary in np.flatnonzero(recording[1:] != recording[:-1]) + 1:
        axis.axvline(float(boundary), color="grey", lw=0.6, ls="--")
