"""Bad input at the boundaries after prepare, through the CLI.

Each case ends in one ``error:`` line and exit code 1, and leaves the
outputs of earlier runs as they were.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import snapshot, write_params
from test_cli import assert_one_clear_error

from mtlnet.checkpoint import checkpoint_path, model_for, save_checkpoint
from mtlnet.config import load_params

FAST = {
    "models": ["stl", "hardsharing"],
    "model": "hardsharing",
    "seeds": 1,
    "seed": 3,
    "train": {"epochs": 2, "batch_size": 16, "threads": 1, "workers": 1},
    "arch": {
        "stl": {"hidden": 4, "layers": 1, "tower_hidden": 2},
        "hardsharing": {"hidden": 4, "layers": 1, "tower_hidden": 2},
    },
}


@pytest.fixture
def trained(project: Path, write_recording, cli) -> dict[str, bytes]:
    """A prepared, trained and evaluated hardsharing run; its outputs."""
    write_params(project / "params.yaml", **FAST)
    write_recording("lvl_4", 80)
    write_recording("lvl_5", 80)
    for command in (
        ["prepare"],
        ["train", "--model", "hardsharing"],
        ["evaluate", "--model", "hardsharing"],
    ):
        result = cli(*command)
        assert result.exit_code == 0, result.output
    return snapshot(project / "metrics") | snapshot(project / "plots")


def outputs(project: Path) -> dict[str, bytes]:
    return snapshot(project / "metrics") | snapshot(project / "plots")


def checkpoint(project: Path) -> Path:
    return checkpoint_path(project / "stages" / "train", "hardsharing", 3)


def test_a_truncated_checkpoint_is_one_line(project, trained, cli):
    path = checkpoint(project)
    path.write_bytes(path.read_bytes()[:300])

    result = cli("evaluate", "--model", "hardsharing")

    assert_one_clear_error(result, "seed_3.pt", "not a readable checkpoint")
    assert outputs(project) == trained


def test_a_file_that_is_no_checkpoint_is_one_line(project, trained, cli):
    checkpoint(project).write_bytes(b"\x89PNG\r\n not weights at all")

    result = cli("evaluate", "--model", "hardsharing")

    assert_one_clear_error(result, "seed_3.pt", "not a readable checkpoint")
    assert outputs(project) == trained


def test_a_checkpoint_of_another_architecture_is_one_line(project, trained, cli):
    params = load_params(project / "params.yaml")
    model = model_for("stl", params.arch.stl, params.data, params.graph)
    save_checkpoint(
        checkpoint(project),
        model=model,
        architecture="stl",
        arch_config=params.arch.stl,
        data=params.data,
        graph=params.graph,
        threshold=0.5,
        seed=3,
    )

    result = cli("evaluate", "--model", "hardsharing")

    assert_one_clear_error(result, "architecture 'stl', expected 'hardsharing'")
    assert outputs(project) == trained


def test_a_plain_tensor_saved_as_checkpoint_is_one_line(project, trained, cli):
    torch.save(torch.zeros(3), checkpoint(project))

    result = cli("evaluate", "--model", "hardsharing")

    assert_one_clear_error(result, "seed_3.pt", "not an mtlnet checkpoint")
    assert outputs(project) == trained


@pytest.mark.parametrize(
    "table", ["nodes.parquet", "windows.parquet", "scaler.parquet"]
)
def test_a_truncated_prepared_table_is_one_line(project, trained, cli, table):
    path = project / "stages" / "prepare" / table
    path.write_bytes(path.read_bytes()[:40])

    result = cli("evaluate", "--model", "hardsharing")

    assert_one_clear_error(result, table, "not a readable parquet file")
    assert outputs(project) == trained


def test_an_architecture_outside_models_is_one_line(project, trained, cli):
    result = cli("train", "--model", "ple")

    assert_one_clear_error(result, "'ple' is not in params models", "stl, hardsharing")
    assert outputs(project) == trained


def test_an_unknown_architecture_is_one_line(project, trained, cli):
    result = cli("profile", "--model", "transformer")

    assert_one_clear_error(result, "unknown architecture 'transformer'")
    assert outputs(project) == trained


def test_an_unknown_weighting_is_one_line(project, trained, cli):
    write_params(
        project / "params.yaml",
        **{**FAST, "train": {**FAST["train"], "weighting": "gradnorm"}},
    )

    result = cli("train", "--model", "hardsharing")

    assert_one_clear_error(result, "train.weighting", "'gradnorm'")
    assert outputs(project) == trained


def test_a_nan_in_the_data_stops_training_with_the_epoch_and_task(
    project, trained, cli, monkeypatch
):
    import mtlnet.train as train

    original = train.task_losses

    def nan_losses(*args, **kwargs):  # the regression of RSRP blows up
        losses = original(*args, **kwargs)
        return torch.cat([losses[:1] * float("nan"), losses[1:]])

    monkeypatch.setattr(train, "task_losses", nan_losses)
    before = snapshot(project / "stages" / "train")

    result = cli("train", "--model", "hardsharing")

    assert_one_clear_error(result, "epoch 1", "task 'RSRP'", "no checkpoint written")
    assert snapshot(project / "stages" / "train") == before
    assert outputs(project) == trained
