"""Standard scaling of KPI columns, fitted on training rows only.

A scaler holds a mean and a standard deviation per column and per scope:
one scope ``GLOBAL`` for all recordings, or one per recording. Each column
is scaled exactly once, with one (mean, scale) pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mtlnet.errors import MtlnetError

GLOBAL = "*"
SCALER_COLUMNS = ("scope", "column", "mean", "scale")


@dataclass(frozen=True)
class Scaler:
    """Per-scope, per-column ``(value - mean) / scale``."""

    table: pd.DataFrame

    @classmethod
    def fit(
        cls,
        frames: dict[str, pd.DataFrame],
        columns: Sequence[str],
        *,
        per_recording: bool,
    ) -> Scaler:
        """Fit on ``frames`` (training rows, by recording name).

        A constant column gets scale 1, so it maps to zero, not to NaN.
        """
        if per_recording:
            groups = dict(frames)
        else:
            groups = {GLOBAL: pd.concat(list(frames.values()), ignore_index=True)}
        rows = []
        for scope, frame in groups.items():
            for column in columns:
                values = frame[column].to_numpy(dtype=np.float64)
                if len(values) == 0:
                    raise MtlnetError(
                        f"recording {scope!r}: no training rows to fit the "
                        f"scaler of column {column!r}"
                    )
                std = float(values.std())
                rows.append((scope, column, float(values.mean()), std or 1.0))
        return cls(pd.DataFrame(rows, columns=list(SCALER_COLUMNS)))

    def _params(self, scope: str, column: str) -> tuple[float, float]:
        key = scope if scope in set(self.table["scope"]) else GLOBAL
        match = self.table[
            (self.table["scope"] == key) & (self.table["column"] == column)
        ]
        if match.empty:
            raise MtlnetError(
                f"the scaler has no entry for column {column!r} ({scope})"
            )
        return float(match["mean"].iloc[0]), float(match["scale"].iloc[0])

    def has_scope(self, scope: str) -> bool:
        return bool((self.table["scope"] == scope).any())

    def vectors(
        self, scope: str, columns: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Means and scales of ``columns`` for ``scope``, each ``[len(columns)]``."""
        pairs = [self._params(scope, c) for c in columns]
        return (
            np.array([p[0] for p in pairs], dtype=np.float64),
            np.array([p[1] for p in pairs], dtype=np.float64),
        )

    def transform(
        self, scope: str, frame: pd.DataFrame, columns: Sequence[str]
    ) -> np.ndarray:
        """``frame[columns]`` scaled, ``[rows, len(columns)]``."""
        mean, scale = self.vectors(scope, columns)
        return (frame[list(columns)].to_numpy(dtype=np.float64) - mean) / scale

    def inverse(
        self, scope: str, values: np.ndarray, columns: Sequence[str]
    ) -> np.ndarray:
        """Physical units back from scaled ``values``, ``[..., len(columns)]``."""
        mean, scale = self.vectors(scope, columns)
        return np.asarray(values, dtype=np.float64) * scale + mean

    def row_vectors(
        self, scopes: Sequence[str], columns: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Means and scales for rows of the given scopes, each ``[rows, columns]``."""
        unique = {s: self.vectors(s, columns) for s in dict.fromkeys(scopes)}
        mean = np.array([unique[s][0] for s in scopes]).reshape(-1, len(columns))
        scale = np.array([unique[s][1] for s in scopes]).reshape(-1, len(columns))
        return mean, scale

    def inverse_rows(
        self, scopes: Sequence[str], values: np.ndarray, columns: Sequence[str]
    ) -> np.ndarray:
        """Like :meth:`inverse`, each row with its own scope (its recording)."""
        mean, scale = self.row_vectors(scopes, columns)
        return np.asarray(values, dtype=np.float64) * scale + mean
