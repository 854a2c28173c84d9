"""Checkpoints: saving, reading back, and refusing what is not one."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from mtlnet.checkpoint import load_checkpoint, model_for, save_checkpoint
from mtlnet.config import ArchConfigs, BackboneConfig, DataConfig, GraphConfig
from mtlnet.errors import MtlnetError
from mtlnet.models import MultiTaskModel

DATA = DataConfig(dir="data", window=4)
GRAPH = GraphConfig(offsets=(1,))


def tiny_config(name: str) -> BackboneConfig:
    sizes: dict[str, object] = {"hidden": 8, "tower_hidden": 4, "layers": 1}
    if name == "crossstitch":
        sizes["stitch_after"] = (0,)
    return dataclasses.replace(ArchConfigs().get(name), **sizes)


def tiny_model(name: str, seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    return model_for(name, tiny_config(name), DATA, GRAPH)


def save(path: Path, name: str = "mmoe", model: MultiTaskModel | None = None) -> None:
    save_checkpoint(
        path,
        model=tiny_model(name) if model is None else model,
        architecture=name,
        arch_config=tiny_config(name),
        data=DATA,
        graph=GRAPH,
        threshold=0.375,
        seed=51,
        extra={"best_epoch": 7, "val_loss": 1.25},
    )


def inputs() -> torch.Tensor:
    return torch.randn(5, DATA.window, 4, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", ["hardsharing", "mmoe", "crossstitch"])
def test_a_checkpoint_round_trips_to_the_same_outputs(tmp_path, name):
    model = tiny_model(name, seed=3).eval()
    path = tmp_path / "seed_51.pt"
    save(path, name, model)

    checkpoint = load_checkpoint(path, architecture=name)

    assert not checkpoint.model.training
    regression, logits = checkpoint.model(inputs())
    expected_regression, expected_logits = model(inputs())
    assert torch.equal(regression, expected_regression)
    assert torch.equal(logits, expected_logits)
    assert type(checkpoint.model) is type(model)


def test_a_checkpoint_keeps_its_settings(tmp_path):
    path = tmp_path / "seed_51.pt"
    save(path)

    checkpoint = load_checkpoint(path)

    assert checkpoint.architecture == "mmoe"
    assert checkpoint.data == DATA
    assert checkpoint.graph == GRAPH
    assert checkpoint.threshold == 0.375
    assert checkpoint.seed == 51
    assert checkpoint.meta["best_epoch"] == 7
    assert checkpoint.meta["val_loss"] == 1.25


def test_a_checkpoint_holds_only_plain_data(tmp_path):
    path = tmp_path / "seed_51.pt"
    save(path)

    content = torch.load(path, weights_only=True)

    assert set(content) == {"state_dict", "meta"}
    assert all(isinstance(v, torch.Tensor) for v in content["state_dict"].values())


def assert_refused(path: Path, detail: str, **options: str) -> None:
    with pytest.raises(MtlnetError) as raised:
        load_checkpoint(path, **options)
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    assert re.search(detail, message), message
    assert "\n" not in message


def test_loading_as_another_architecture_names_both(tmp_path):
    path = tmp_path / "seed_51.pt"
    save(path, "mmoe")

    assert_refused(path, "architecture 'mmoe', expected 'ple'", architecture="ple")


def test_a_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "seed_51.pt"
    save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    assert_refused(path, "not a readable checkpoint")


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "seed_51.pt"
    generator = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (4096,), dtype=torch.uint8, generator=generator)
    path.write_bytes(bytes(noise.tolist()))

    assert_refused(path, "not a readable checkpoint")


def test_a_saved_tensor_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "seed_51.pt"
    torch.save(torch.ones(3), path)

    assert_refused(path, "not an mtlnet checkpoint")


def test_pickled_code_is_never_run(tmp_path):
    path = tmp_path / "seed_51.pt"
    torch.save({"state_dict": {}, "meta": Path("elsewhere")}, path)

    assert_refused(path, "not a readable checkpoint")


def test_a_missing_checkpoint_says_to_train(tmp_path):
    assert_refused(tmp_path / "seed_51.pt", "not found; run the train stage")


def test_weights_of_another_shape_are_refused(tmp_path):
    path = tmp_path / "seed_51.pt"
    wider = model_for(
        "mmoe", dataclasses.replace(tiny_config("mmoe"), hidden=16), DATA, GRAPH
    )
    save(path, "mmoe", wider)

    assert_refused(path, "weights do not fit 'mmoe'")


@pytest.mark.parametrize("content", [{"weights": {}}, {"state_dict": {}, "meta": [1]}])
def test_a_saved_dict_of_another_shape_is_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "seed_51.pt"
    torch.save(content, path)

    assert_refused(path, "not an mtlnet checkpoint")


def test_a_checkpoint_of_another_format_version_is_refused(tmp_path):
    path = tmp_path / "seed_51.pt"
    save(path)
    content = torch.load(path, weights_only=True)
    content["meta"]["format"] = 99
    torch.save(content, path)

    assert_refused(path, "checkpoint format 99, expected 1")
