import json
import os
import stat

import pandas as pd
import pytest

from mtlnet.io import atomic_dir, atomic_file, write_json, write_parquet


class Interrupted(Exception):
    pass


def test_atomic_file_keeps_the_old_content_when_the_body_raises(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("old")

    with pytest.raises(Interrupted), atomic_file(path) as tmp:
        tmp.write_text("half-written")
        raise Interrupted

    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["data.json"]


def test_atomic_file_replaces_the_content_on_success(tmp_path):
    path = tmp_path / "metrics" / "data.json"

    with atomic_file(path) as tmp:
        assert not path.exists()
        tmp.write_text("new")

    assert path.read_text() == "new"
    assert os.listdir(path.parent) == ["data.json"]


def test_atomic_dir_keeps_the_old_folder_when_the_body_raises(tmp_path):
    path = tmp_path / "prepare"
    path.mkdir()
    (path / "nodes.parquet").write_text("old nodes")

    with pytest.raises(Interrupted), atomic_dir(path) as tmp:
        (tmp / "nodes.parquet").write_text("new nodes")
        (tmp / "windows.parquet").write_text("new windows")
        raise Interrupted

    assert os.listdir(path) == ["nodes.parquet"]
    assert (path / "nodes.parquet").read_text() == "old nodes"
    assert os.listdir(tmp_path) == ["prepare"]


def test_atomic_dir_swaps_the_whole_folder_on_success(tmp_path):
    path = tmp_path / "prepare"
    path.mkdir()
    (path / "stale.parquet").write_text("from an older run")

    with atomic_dir(path) as tmp:
        (tmp / "nodes.parquet").write_text("new nodes")

    assert os.listdir(path) == ["nodes.parquet"]
    assert os.listdir(tmp_path) == ["prepare"]


def test_outputs_get_the_mode_of_any_new_file(tmp_path):
    old_mask = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "prepare") as tmp:
            write_parquet(tmp / "nodes.parquet", pd.DataFrame({"a": [1]}))
        write_json(tmp_path / "data.json", {"a": 1})
    finally:
        os.umask(old_mask)

    def mode(path):
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(tmp_path / "prepare") == 0o755
    assert mode(tmp_path / "prepare" / "nodes.parquet") == 0o644
    assert mode(tmp_path / "data.json") == 0o644


def test_write_json_sorts_keys_and_ends_in_a_newline(tmp_path):
    path = tmp_path / "data.json"

    write_json(path, {"val": {"windows": 2}, "train": {"windows": 10}})

    text = path.read_text()
    assert text.endswith("}\n")
    assert text.index('"train"') < text.index('"val"')
    assert json.loads(text) == {"train": {"windows": 10}, "val": {"windows": 2}}


def test_write_parquet_drops_the_index(tmp_path):
    path = tmp_path / "t.parquet"

    write_parquet(path, pd.DataFrame({"a": [1, 2]}, index=[7, 9]))

    frame = pd.read_parquet(path)
    assert frame["a"].tolist() == [1, 2]
    assert frame.index.tolist() == [0, 1]
