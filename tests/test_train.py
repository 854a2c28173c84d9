"""The shared training loop and the ``train`` stage, on tiny prepared data."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from conftest import fcciq_rows, write_fcciq_csv

from mtlnet.checkpoint import load_checkpoint
from mtlnet.config import (
    ARCHITECTURES,
    ArchConfigs,
    BackboneConfig,
    DataConfig,
    GraphConfig,
    Params,
    TrainConfig,
)
from mtlnet.dataset import PreparedData, WindowTensors
from mtlnet.errors import MtlnetError
from mtlnet.losses import persistence_mse, positive_weight
from mtlnet.prepare import WINDOWS_FILE, prepare
from mtlnet.train import (
    TrainJob,
    TrainResult,
    evaluate_losses,
    run_train_stage,
    task_names,
    train_jobs,
    train_model,
)

KPIS = ("RSRP", "RSRQ", "SINR")
TASKS = (*KPIS, "interference")
TIMING_KEYS = ("epoch_time_s",)


def tiny_arch(name: str) -> BackboneConfig:
    """Architecture ``name`` at the smallest sizes that still train."""
    sizes: dict[str, Any] = {
        "hidden": 8,
        "tower_hidden": 4,
        "layers": 1,
        "dropout": 0.0,
    }
    sizes |= {
        "mmoe": {"experts": 2},
        "crossstitch": {"stitch_after": (0,)},
        "ple": {"levels": 1, "shared_experts": 1, "task_experts": 1},
        "attention": {"heads": 2},
    }.get(name, {})
    return dataclasses.replace(ArchConfigs().get(name), **sizes)


def tiny_archs() -> ArchConfigs:
    return ArchConfigs(**{name: tiny_arch(name) for name in ARCHITECTURES})


def tiny_data(directory: Path) -> DataConfig:
    return DataConfig(
        dir=str(directory),
        window=4,
        train_fraction=0.6,
        val_fraction=0.2,
        test_fraction=0.2,
    )


@dataclasses.dataclass(frozen=True)
class Prepared:
    data: DataConfig
    directory: Path
    tables: PreparedData

    @property
    def train(self) -> WindowTensors:
        return self.tables.split("train")

    @property
    def val(self) -> WindowTensors:
        return self.tables.split("val")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    """Two 60-row recordings: 64 training, 16 validation windows of 4 steps."""
    root = tmp_path_factory.mktemp("prepared")
    for name in ("east", "west"):
        write_fcciq_csv(root / "data" / f"{name}.csv", fcciq_rows(60))
    data = tiny_data(root / "data")
    prepare(
        data=data,
        graph=GraphConfig(),
        output_dir=root / "stages" / "prepare",
        metrics_path=root / "metrics" / "data.json",
    )
    directory = root / "stages" / "prepare"
    return Prepared(data, directory, PreparedData.load(directory, data))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train(
    prepared: Prepared,
    architecture: str = "hardsharing",
    *,
    seed: int = 0,
    train_set: WindowTensors | None = None,
    val_set: WindowTensors | None = None,
    **options: Any,
) -> TrainResult:
    config = TrainConfig(
        **{"epochs": 6, "batch_size": 16, "lr": 0.01, "threads": 1, **options}
    )
    return train_model(
        architecture=architecture,
        arch_config=tiny_arch(architecture),
        train=config,
        data=prepared.data,
        graph=GraphConfig(),
        train_set=prepared.train if train_set is None else train_set,
        val_set=prepared.val if val_set is None else val_set,
        seed=seed,
    )


def without_timing(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in history]


def numbers_only(tree: Any) -> bool:
    if isinstance(tree, dict):
        return all(isinstance(k, str) and numbers_only(v) for k, v in tree.items())
    return isinstance(tree, int | float) and not isinstance(tree, bool)


def test_task_names_put_the_targets_first_and_detection_last(prepared):
    assert task_names(prepared.data) == list(TASKS)


@pytest.mark.parametrize("architecture", ["hardsharing", "mmoe", "crossstitch"])
def test_a_short_run_lowers_every_task_training_loss(prepared, architecture):
    result = train(prepared, architecture, epochs=8)

    first, last = result.history[0], result.history[-1]
    for task in TASKS:
        assert last[f"train_loss_{task}"] < first[f"train_loss_{task}"], task
    assert last["val_loss"] < first["val_loss"]
    assert result.epochs_run == 8


def test_two_runs_with_one_seed_are_identical(prepared):
    one = train(prepared, "mmoe", seed=7, epochs=3)
    two = train(prepared, "mmoe", seed=7, epochs=3)

    assert without_timing(one.history) == without_timing(two.history)
    assert one.threshold == two.threshold
    assert one.best_val == two.best_val
    state_one, state_two = one.model.state_dict(), two.model.state_dict()
    assert list(state_one) == list(state_two)
    for name, tensor in state_one.items():
        assert torch.equal(tensor, state_two[name]), name


def test_runs_with_different_seeds_differ(prepared):
    one = train(prepared, "mmoe", seed=7, epochs=3)
    two = train(prepared, "mmoe", seed=8, epochs=3)

    assert one.history[0]["train_loss"] != two.history[0]["train_loss"]
    state_two = two.model.state_dict()
    assert any(
        not torch.equal(tensor, state_two[name])
        for name, tensor in one.model.state_dict().items()
        if tensor.is_floating_point()
    )


def test_early_stopping_waits_patience_epochs_and_keeps_the_best_weights(prepared):
    # A high learning rate overshoots, so validation stops improving early.
    result = train(prepared, epochs=60, patience=3, lr=0.2)

    val_losses = [record["val_loss"] for record in result.history]
    best = min(val_losses)
    assert result.epochs_run < 60
    assert result.epochs_run == result.best_epoch + 3
    assert val_losses[result.best_epoch - 1] == best
    assert all(loss >= best for loss in val_losses[result.best_epoch :])
    assert val_losses[-1] != best

    pos_weight = positive_weight(prepared.train.label)
    scale = persistence_mse(prepared.train.target, prepared.train.last)
    losses, _ = evaluate_losses(result.model, prepared.val, pos_weight, scale)
    assert float(losses.sum()) == pytest.approx(best, rel=1e-6)
    assert result.best_val["loss"] == pytest.approx(best, rel=1e-6)
    assert [result.best_val[f"loss_{t}"] for t in TASKS] == pytest.approx(
        [result.history[result.best_epoch - 1][f"val_loss_{t}"] for t in TASKS],
        rel=1e-6,
    )


def test_the_history_records_the_best_epoch_so_far(prepared):
    result = train(prepared, epochs=10, patience=10, lr=0.2)

    running_best, best_epoch = math.inf, 0
    for record in result.history:
        if record["val_loss"] < running_best:
            running_best, best_epoch = record["val_loss"], int(record["epoch"])
        assert record["best_epoch"] == best_epoch
    assert result.best_epoch == best_epoch


@pytest.mark.parametrize("weighting", ["equal", "uncertainty", "dwa"])
def test_every_weighting_trains(prepared, weighting):
    result = train(prepared, weighting=weighting, epochs=6)

    losses = [record["train_loss"] for record in result.history]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]
    assert result.epochs_run == 6


def test_dwa_trains_like_equal_weighting_for_two_epochs_then_departs(prepared):
    equal = without_timing(train(prepared, weighting="equal", epochs=3).history)
    dwa = without_timing(train(prepared, weighting="dwa", epochs=3).history)

    assert dwa[:2] == equal[:2]
    assert dwa[2]["train_loss"] != equal[2]["train_loss"]


def test_uncertainty_weighting_changes_training_from_the_first_epoch(prepared):
    equal = train(prepared, weighting="equal", epochs=1).history
    uncertainty = train(prepared, weighting="uncertainty", epochs=1).history

    assert uncertainty[0]["train_loss"] != equal[0]["train_loss"]


@pytest.mark.parametrize(
    ("split", "column", "message"),
    [
        ("train", 1, "epoch 1: the training loss of task 'RSRQ' is nan"),
        ("val", 2, "epoch 1: the validation loss of task 'SINR' is nan"),
    ],
)
def test_a_nan_target_stops_training_naming_the_epoch_and_the_task(
    prepared, split, column, message
):
    windows = prepared.train if split == "train" else prepared.val
    target = windows.target.clone()
    target[5, column] = math.nan
    broken = dataclasses.replace(windows, target=target)

    with pytest.raises(MtlnetError, match=message):
        train(prepared, **{f"{split}_set": broken})


def test_training_without_validation_windows_is_a_clear_error(prepared):
    empty = prepared.tables.tensors(prepared.tables.windows.iloc[:0])

    with pytest.raises(MtlnetError, match="found 64 and 0"):
        train(prepared, val_set=empty)


def stage_params(prepared: Prepared) -> Params:
    return Params(
        model="hardsharing",
        models=("stl", "hardsharing"),
        seed=3,
        seeds=2,
        data=prepared.data,
        train=TrainConfig(epochs=4, batch_size=16, lr=0.01, threads=1, workers=1),
        arch=tiny_archs(),
    )


def run_stage(prepared: Prepared, root: Path, prepared_dir: Path | None = None):
    return run_train_stage(
        params=stage_params(prepared),
        architecture="hardsharing",
        prepared_dir=prepared.directory if prepared_dir is None else prepared_dir,
        train_dir=root / "stages" / "train",
        metrics_path=root / "metrics" / "train" / "hardsharing.json",
        plot_path=root / "plots" / "train" / "hardsharing.csv",
    )


@pytest.mark.parametrize("regression_loss", ["relative", "scaled"])
def test_the_history_holds_the_losses_of_the_chosen_regression_loss(
    prepared, regression_loss
):
    result = train(prepared, epochs=2, regression_loss=regression_loss)

    scale = persistence_mse(prepared.train.target, prepared.train.last)
    pos_weight = positive_weight(prepared.train.label)
    losses, _ = evaluate_losses(
        result.model,
        prepared.val,
        pos_weight,
        scale if regression_loss == "relative" else None,
    )
    best = result.history[result.best_epoch - 1]
    recorded = [best[f"val_loss_{task}"] for task in TASKS]
    assert losses.tolist() == pytest.approx(recorded, rel=1e-6)


def test_the_relative_loss_trains_on_the_scaled_mse_over_persistence(prepared):
    # One batch, one epoch: the training loss is that of the untrained
    # model, the same for both runs since the seed is the same.
    one_step = {"epochs": 1, "batch_size": len(prepared.train)}
    relative = train(prepared, regression_loss="relative", **one_step)
    scaled = train(prepared, regression_loss="scaled", **one_step)

    scale = persistence_mse(prepared.train.target, prepared.train.last)
    for i, kpi in enumerate(KPIS):
        assert relative.history[0][f"train_loss_{kpi}"] == pytest.approx(
            scaled.history[0][f"train_loss_{kpi}"] / float(scale[i]), rel=1e-5
        )
    assert relative.history[0]["train_loss_interference"] == pytest.approx(
        scaled.history[0]["train_loss_interference"], rel=1e-6
    )


def test_the_train_stage_writes_a_checkpoint_per_seed(prepared, tmp_path):
    run_stage(prepared, tmp_path)

    model_dir = tmp_path / "stages" / "train" / "hardsharing"
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "seed_3.pt",
        "seed_3_history.csv",
        "seed_4.pt",
        "seed_4_history.csv",
    ]
    pos_weight = positive_weight(prepared.train.label)
    scale = persistence_mse(prepared.train.target, prepared.train.last)
    for seed in (3, 4):
        checkpoint = load_checkpoint(model_dir / f"seed_{seed}.pt")
        assert checkpoint.architecture == "hardsharing"
        assert checkpoint.seed == seed
        assert 0 < checkpoint.threshold < 1
        losses, _ = evaluate_losses(checkpoint.model, prepared.val, pos_weight, scale)
        assert float(losses.sum()) == pytest.approx(checkpoint.meta["val_loss"])


def test_the_train_stage_writes_numeric_metrics_over_seeds(prepared, tmp_path):
    summary = run_stage(prepared, tmp_path)

    path = tmp_path / "metrics" / "train" / "hardsharing.json"
    written = json.loads(path.read_text())
    assert written == summary
    assert numbers_only(written)
    assert set(written) == {
        "best_epoch",
        "epochs_run",
        "train_time_s",
        "epoch_time_s",
        "val",
        "std",
        "runs",
    }
    assert written["runs"] == 2
    assert written["epochs_run"] == 4
    assert written["std"]["epochs_run"] == 0.0
    assert written["epoch_time_s"] == pytest.approx(written["train_time_s"] / 4)
    assert set(written["val"]) == {
        "loss",
        "threshold",
        "f1",
        "auroc",
        *(f"loss_{t}" for t in TASKS),
    }
    assert set(written["std"]) == set(written) - {"std", "runs"}

    model_dir = tmp_path / "stages" / "train" / "hardsharing"
    meta = [load_checkpoint(model_dir / f"seed_{s}.pt").meta for s in (3, 4)]
    assert written["val"]["loss"] == pytest.approx(
        (meta[0]["val_loss"] + meta[1]["val_loss"]) / 2
    )
    assert written["best_epoch"] == (meta[0]["best_epoch"] + meta[1]["best_epoch"]) / 2
    assert written["val"]["loss"] == pytest.approx(
        sum(written["val"][f"loss_{t}"] for t in TASKS)
    )


def test_the_train_stage_plots_one_row_per_epoch_of_the_first_seed(prepared, tmp_path):
    run_stage(prepared, tmp_path)

    plot = pd.read_csv(tmp_path / "plots" / "train" / "hardsharing.csv")
    assert list(plot.columns) == [
        "epoch",
        *(f"train_loss_{t}" for t in TASKS),
        *(f"val_loss_{t}" for t in TASKS),
        "train_loss",
        "val_loss",
        "val_f1",
    ]
    assert plot["epoch"].tolist() == [1, 2, 3, 4]
    history = pd.read_csv(
        tmp_path / "stages" / "train" / "hardsharing" / "seed_3_history.csv"
    )
    pd.testing.assert_frame_equal(plot, history[plot.columns])
    assert plot["val_f1"].between(0, 1).all()


def test_a_nan_in_training_targets_writes_no_checkpoint(prepared, tmp_path):
    broken_dir = tmp_path / "broken"
    shutil.copytree(prepared.directory, broken_dir)
    windows = pd.read_parquet(broken_dir / WINDOWS_FILE)
    first_train = windows.index[windows["split"] == "train"][0]
    windows.loc[first_train, "target_SINR_scaled"] = math.nan
    windows.to_parquet(broken_dir / WINDOWS_FILE, index=False)

    with pytest.raises(MtlnetError, match=r"epoch 1: .* task 'SINR'"):
        run_stage(prepared, tmp_path, prepared_dir=broken_dir)

    assert not (tmp_path / "stages" / "train" / "hardsharing").exists()
    assert not (tmp_path / "metrics").exists()
    assert not (tmp_path / "plots").exists()


def test_parallel_workers_train_the_same_models_as_one_process(prepared):
    def jobs(workers: int) -> list[TrainJob]:
        config = TrainConfig(
            epochs=3, batch_size=16, lr=0.01, threads=1, workers=workers
        )
        return [
            TrainJob(
                "hardsharing",
                tiny_arch("hardsharing"),
                config,
                prepared.data,
                GraphConfig(),
                seed,
            )
            for seed in (5, 6)
        ]

    reported: list[tuple[int, float]] = []

    sequential = train_jobs(jobs(1), prepared.train, prepared.val, lambda s, r: None)
    parallel = train_jobs(
        jobs(2),
        prepared.train,
        prepared.val,
        lambda seed, record: reported.append((seed, record["epoch"])),
    )

    assert sorted(reported) == [(5, 1), (5, 2), (5, 3), (6, 1), (6, 2), (6, 3)]
    for one, other in zip(sequential, parallel, strict=True):
        assert without_timing(one.history) == without_timing(other.history)
        for key, tensor in one.model.state_dict().items():
            assert torch.equal(tensor, other.model.state_dict()[key]), key
