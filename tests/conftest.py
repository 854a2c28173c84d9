"""Tiny FccIQ-schema recordings, built by the tests themselves.

:func:`fcciq_rows` makes the cells of a recording as text, one row per
sample, so that a test can set any cell (a missing marker, a typo, a bad
label) before :func:`write_fcciq_csv` writes it. The ``write_recording``
fixture does both into ``tmp_path / "data"``; ``project`` turns ``tmp_path``
into a project directory with its own ``params.yaml`` (see
:func:`write_params`), and ``cli`` runs ``python -m mtlnet`` in it,
in-process. :func:`snapshot` reads a folder's files, to compare outputs
byte for byte.

Test modules import the plain functions with ``from conftest import ...``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner, Result

FCCIQ_COLUMNS = (
    "Time",
    "NR-ARFCN",
    "PCI",
    "_oid",
    "RSRP",
    "RSRQ",
    "SINR",
    "PDSCH_MCS",
    "PUSCH_MCS",
    "PDSCH PRBs",
    "PUSCH PRBs",
    "throughput_DL",
    "C-RNTI",
    "Corridor_tag",
    "lab_anom",
    "lab_bs",
    "lab_inf",
    "lab_1rr",
    "Label",
)
START = pd.Timestamp("2022-10-04 15:52:22.917")


def fcciq_times(
    num_rows: int,
    *,
    start: pd.Timestamp = START,
    step_s: float = 0.5,
    gaps: Mapping[int, float] | None = None,
) -> list[pd.Timestamp]:
    """Row ``i`` is logged ``step_s`` after row ``i - 1``, or ``gaps[i]`` after."""
    gaps = gaps or {}
    times = [start]
    for i in range(1, num_rows):
        times.append(times[-1] + pd.Timedelta(seconds=gaps.get(i, step_s)))
    return times[:num_rows]


def fcciq_rows(
    num_rows: int,
    *,
    times: Sequence[pd.Timestamp] | None = None,
    step_s: float = 0.5,
    gaps: Mapping[int, float] | None = None,
    rsrp: Sequence[float] | None = None,
    rsrq: Sequence[float] | None = None,
    sinr: Sequence[float] | None = None,
    labels: Sequence[int] | None = None,
) -> pd.DataFrame:
    """The cells of an FccIQ recording as text, ``[num_rows, 19]``.

    Times follow :func:`fcciq_times` unless given. KPIs default to
    ``RSRP = -100 + i % 10``, ``RSRQ = -10 - i % 4`` and ``SINR = 10 + i % 6``;
    labels (``lab_inf``) to ``i // 5 % 2``. ``lab_anom`` and ``Label`` are
    kept consistent with ``lab_inf``; the other columns are constants.
    """
    index = range(num_rows)
    times = (
        list(times)
        if times is not None
        else fcciq_times(num_rows, step_s=step_s, gaps=gaps)
    )
    rsrp = list(rsrp) if rsrp is not None else [-100.0 + i % 10 for i in index]
    rsrq = list(rsrq) if rsrq is not None else [-10.0 - i % 4 for i in index]
    sinr = list(sinr) if sinr is not None else [10.0 + i % 6 for i in index]
    labels = list(labels) if labels is not None else [i // 5 % 2 for i in index]
    for name, values in (("rsrp", rsrp), ("rsrq", rsrq), ("sinr", sinr)):
        assert len(values) == num_rows, f"{name} needs {num_rows} values"
    assert len(times) == len(labels) == num_rows

    return pd.DataFrame(
        {
            "Time": [t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] for t in times],
            "NR-ARFCN": "628416",
            "PCI": "17",
            "_oid": "1350791784",
            "RSRP": [repr(float(v)) for v in rsrp],
            "RSRQ": [repr(float(v)) for v in rsrq],
            "SINR": [repr(float(v)) for v in sinr],
            "PDSCH_MCS": "19.0",
            "PUSCH_MCS": "12.0",
            "PDSCH PRBs": "128.0",
            "PUSCH PRBs": "4.0",
            "throughput_DL": "237685760",
            "C-RNTI": "13853",
            "Corridor_tag": "0",
            "lab_anom": [str(int(v)) for v in labels],
            "lab_bs": "0",
            "lab_inf": [str(int(v)) for v in labels],
            "lab_1rr": "0",
            # 8 * lab_anom + 4 * lab_bs + 2 * lab_inf + lab_1rr
            "Label": [str(10 * int(v)) for v in labels],
        },
        columns=list(FCCIQ_COLUMNS),
        dtype=object,
    )


def write_fcciq_csv(path: Path, rows: pd.DataFrame) -> Path:
    """Write ``rows`` (text cells, as from :func:`fcciq_rows`) as a CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(path, index=False)
    return path


WriteRecording = Callable[..., Path]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The folder the recordings of a test go to (``data.dir``)."""
    return tmp_path / "data"


@pytest.fixture
def write_recording(data_dir: Path) -> WriteRecording:
    """Write one recording into ``data_dir``; returns its path.

    ``write_recording("lvl", 40, gaps={10: 9.0})`` writes ``data/lvl.csv``
    from :func:`fcciq_rows` with those keywords; ``rows=`` writes a frame the
    test edited instead, and ``content=`` (str or bytes) the file verbatim.
    """

    def write(
        name: str = "rec",
        num_rows: int = 40,
        *,
        rows: pd.DataFrame | None = None,
        content: str | bytes | None = None,
        suffix: str = ".csv",
        **options: Any,
    ) -> Path:
        path = data_dir / f"{name}{suffix}"
        if content is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
            return path
        if rows is None:
            rows = fcciq_rows(num_rows, **options)
        return write_fcciq_csv(path, rows)

    return write


def write_params(path: Path, **blocks: Mapping[str, Any]) -> Path:
    """A ``params.yaml`` reading recordings from ``data``, plus ``blocks``.

    Each keyword is a top-level key; a mapping is merged over the defaults
    below (``data={"window": 4}``), anything else replaces them.
    """
    params: dict[str, Any] = {
        "data": {"dir": "data", "window": 4, "horizon": 1, "max_gap_s": 5.0},
        "graph": {"offsets": [1, 2], "directed": False},
    }
    for key, value in blocks.items():
        if isinstance(value, Mapping) and isinstance(params.get(key), dict):
            params[key] = {**params[key], **value}
        else:
            params[key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path`` as the working directory, with a small ``params.yaml``.

    Recordings go to ``tmp_path / "data"`` (see ``write_recording``); the
    stage writes ``stages/prepare/`` and ``metrics/data.json`` beside them.
    """
    write_params(tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def cli() -> Iterator[Callable[..., Result]]:
    """Run ``python -m mtlnet ARGS`` in-process: ``cli("prepare")``.

    The result keeps stdout and stderr apart. The CLI's logging handler is
    dropped after each run, since it is bound to that run's captured stderr.
    """
    from mtlnet.cli import app

    runner = CliRunner()
    root = logging.getLogger()
    handlers = list(root.handlers)

    def invoke(*args: str) -> Result:
        root.handlers[:] = handlers
        return runner.invoke(app, list(args))

    yield invoke
    root.handlers[:] = handlers
