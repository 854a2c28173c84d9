"""Atomic writes: every output appears whole or not at all.

Each writer puts its bytes in a temporary file beside the target and renames
it into place, so a stage killed mid-write leaves the previous output
readable. A directory output is built in a temporary sibling directory and
swapped in at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from mtlnet.errors import MtlnetError, one_line


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    # mkstemp makes the file owner-only; an output is as readable as any other.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``path`` whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    )
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    """The process umask, to give outputs the mode a plain ``open`` would."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON with sorted keys (stable diffs)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    with atomic_file(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_file(path) as tmp:
        frame.to_csv(tmp, index=False)


def read_table(
    path: Path, columns: list[str], *, not_found: str, missing: str
) -> pd.DataFrame:
    """A parquet table that must hold ``columns``.

    A missing file, an unreadable one or a missing column is one
    :class:`MtlnetError` naming the file; ``not_found`` and ``missing`` say
    what to do about the first and the last.
    """
    try:
        frame = pd.read_parquet(path)
    except FileNotFoundError:
        raise MtlnetError(f"{path}: not found; {not_found}") from None
    except (pa.ArrowException, OSError, ValueError) as error:
        raise MtlnetError(
            f"{path}: not a readable parquet file ({one_line(error, 200)})"
        ) from None
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise MtlnetError(f"{path}: missing column {absent[0]!r}; {missing}")
    return frame


def read_metrics(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise MtlnetError(f"{path}: not found; run `dvc repro` first") from None
    except json.JSONDecodeError as error:
        raise MtlnetError(
            f"{path}: not valid JSON ({error.msg}, line {error.lineno})"
        ) from None
    return data
