"""Behaviour of ``mtlnet.profiling``: FLOPs, size, timings, the stage."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from mtlnet.checkpoint import checkpoint_path, model_for, save_checkpoint
from mtlnet.compare import flatten
from mtlnet.config import (
    ARCHITECTURES,
    ArchConfigs,
    AttentionConfig,
    BackboneConfig,
    DataConfig,
    GraphConfig,
    HardSharingConfig,
    MMoEConfig,
    Params,
    ProfileConfig,
)
from mtlnet.errors import MtlnetError
from mtlnet.graph import window_edges
from mtlnet.io import write_json
from mtlnet.metrics import mean_and_std
from mtlnet.models import MultiTaskModel, build_model, count_parameters
from mtlnet.profiling import (
    MIB,
    count_flops,
    measure_latency,
    measure_throughput,
    run_profile_stage,
    size_mb,
    trainable_parameters,
)

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


def default_model(name: str) -> MultiTaskModel:
    """``name`` at the shipped defaults (window 35, hidden 64, 4 tasks)."""
    params = Params()
    torch.manual_seed(0)
    return model_for(name, params.arch.get(name), params.data, params.graph)


def varied_config(name: str) -> BackboneConfig:
    """Small sizes that take the paths the defaults do not."""
    sizes: dict[str, object] = {"hidden": 6, "layers": 3, "tower_hidden": 5}
    extra: dict[str, dict[str, object]] = {
        "mmoe": {"experts": 3},
        "crossstitch": {"stitch_after": (1,)},
        "ple": {"levels": 3, "shared_experts": 1, "task_experts": 2},
        "attention": {"heads": 3},
    }
    return dataclasses.replace(
        ArchConfigs().get(name), **{**sizes, **extra.get(name, {})}
    )


def varied_model(name: str) -> MultiTaskModel:
    """``name`` on a directed 7-step window with 2 targets and 5 channels."""
    edge_index = torch.from_numpy(
        window_edges(7, GraphConfig(offsets=(1, 3), directed=True))
    )
    torch.manual_seed(0)
    return build_model(
        name,
        varied_config(name),
        in_channels=5,
        window=7,
        edge_index=edge_index,
        num_targets=2,
    )


def aten_flops(model: MultiTaskModel) -> int:
    """FLOPs of every matrix product torch dispatches on one window."""
    model.eval()
    x = torch.randn(1, model.window, model.in_channels)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


ONE_EDGE = torch.tensor([[0], [1]])


def hand_model(name: str, config: BackboneConfig) -> MultiTaskModel:
    """Window 3, 2 input channels, 1 target (2 tasks), the edge 0 -> 1."""
    return build_model(
        name, config, in_channels=2, window=3, edge_index=ONE_EDGE, num_targets=1
    )


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Torch on 1 thread: tiny forwards gain nothing from a busy thread pool."""
    original = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(original)


@pytest.fixture
def threads_two() -> Iterator[None]:
    """Torch on 2 threads during the test, its own count restored after."""
    original = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(original)


class ForwardLog:
    """Records each forward pass's batch size, mode and inference mode."""

    def __init__(self, model: nn.Module) -> None:
        self.passes: list[tuple[int, bool, bool]] = []
        model.register_forward_hook(self.record)

    def record(self, module: nn.Module, inputs: tuple[Tensor], output: object) -> None:
        self.passes.append(
            (inputs[0].size(0), module.training, torch.is_inference_mode_enabled())
        )


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_flops_at_the_defaults_equal_torch_flop_counter(name: str) -> None:
    """Exact: both count every matrix product and nothing element-wise."""
    model = default_model(name)

    assert count_flops(model)["flops"] == aten_flops(model)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_flops_of_varied_sizes_equal_torch_flop_counter(name: str) -> None:
    model = varied_model(name)

    assert count_flops(model)["flops"] == aten_flops(model)


def test_flops_are_twice_the_macs() -> None:
    counts = count_flops(default_model("ple"))

    assert counts["flops"] == 2 * counts["macs"] > 0


def test_hand_count_of_hard_sharing() -> None:
    model = hand_model(
        "hardsharing", HardSharingConfig(hidden=2, layers=1, tower_hidden=2)
    )

    transform = 3 * 2 * 2  # window x in_channels x hidden
    propagate = 3 * 3 * 2  # window x window x hidden: dense adj @ (x W)
    tower = 4 * 2 + 2 * 1  # readout (2 * hidden) -> tower_hidden -> 1
    expected = transform + propagate + 2 * tower  # two tasks
    assert expected == 50
    assert count_flops(model) == {"macs": 50, "flops": 100}


def test_hand_count_of_mmoe_includes_the_expert_mixing() -> None:
    model = hand_model(
        "mmoe", MMoEConfig(hidden=2, layers=1, tower_hidden=2, experts=2)
    )

    experts = 2 * (3 * 2 * 2 + 3 * 3 * 2)  # two one-layer GCN experts
    gates = 2 * (4 * 2)  # per task: readout (2 * in_channels) -> 2 experts
    mixing = 2 * (2 * 3 * 2)  # per task: experts x window x hidden
    towers = 2 * (4 * 2 + 2 * 1)
    assert experts + gates + mixing + towers == 120
    assert count_flops(model)["macs"] == 120


def test_hand_count_of_attention_includes_scores_and_values() -> None:
    model = hand_model(
        "attention", AttentionConfig(hidden=2, layers=1, tower_hidden=2, heads=1)
    )

    encoder = 3 * 2 * 2 + 3 * 3 * 2
    key_value = 2 * (3 * 2 * 2)  # window x hidden x hidden, each
    scores = 2 * 3 * 2  # tasks x window x hidden
    values = 2 * 3 * 2
    towers = 2 * (4 * 2 + 2 * 1)  # attended and last node: 2 * hidden in
    assert encoder + key_value + scores + values + towers == 98
    assert count_flops(model)["macs"] == 98


def test_count_flops_leaves_the_model_as_it_was() -> None:
    model = default_model("crossstitch")
    model.train()
    keys = list(model.state_dict())

    count_flops(model)

    assert model.training
    assert list(model.state_dict()) == keys
    assert not any(hasattr(module, "total_ops") for module in model.modules())


def test_size_is_the_parameters_and_edges_in_mebibytes() -> None:
    model = model_for(
        "hardsharing",
        HardSharingConfig(hidden=256),
        DataConfig(),
        GraphConfig(),
    )

    # float32 parameters and the int64 edge_index buffer, before the
    # archive's headers and the pickled dict (well under 1 KiB per tensor).
    data_bytes = count_parameters(model) * 4 + model.edge_index.numel() * 8
    overhead = size_mb(model) * MIB - data_bytes
    assert 0 < overhead < 1024 * len(model.state_dict())


def test_trainable_parameters_leave_out_frozen_ones() -> None:
    model = default_model("hardsharing")
    frozen = sum(p.numel() for p in model.encoder.parameters())
    model.encoder.requires_grad_(False)

    assert trainable_parameters(model) == count_parameters(model) - frozen


def test_latency_times_single_windows_in_inference_mode(threads_two: None) -> None:
    model = varied_model("mmoe")
    model.train()
    log = ForwardLog(model)

    latency = measure_latency(model, 7, 5, warmup=3, runs=25, threads=1)

    assert 0 < latency["latency_ms_p50"] <= latency["latency_ms_p99"]
    assert latency["threads"] == 1
    assert log.passes == [(1, False, True)] * 28
    assert torch.get_num_threads() == 2
    assert model.training


def test_throughput_runs_large_batches_and_restores_threads(
    threads_two: None,
) -> None:
    model = varied_model("hardsharing")
    log = ForwardLog(model)

    throughput = measure_throughput(model, 7, 5, batch=64, runs=3, threads=1)

    assert throughput > 0
    assert log.passes == [(64, False, True)] * 4  # one untimed, three timed
    assert torch.get_num_threads() == 2


def test_timings_restore_threads_when_the_forward_fails(threads_two: None) -> None:
    model = varied_model("stl")

    with pytest.raises(ValueError, match="x must be"):
        measure_latency(model, 8, 5, warmup=0, runs=2, threads=1)

    assert torch.get_num_threads() == 2


def tiny_params() -> Params:
    return Params(
        seeds=2,
        data=DataConfig(window=4),
        arch=ArchConfigs(
            hardsharing=HardSharingConfig(hidden=4, layers=1, tower_hidden=2)
        ),
        profile=ProfileConfig(
            warmup=1, runs=3, threads=1, throughput_batch=8, throughput_runs=2
        ),
    )


def write_checkpoint(
    train_dir: Path, params: Params, seed: int, config: HardSharingConfig
) -> MultiTaskModel:
    model = model_for("hardsharing", config, params.data, params.graph)
    save_checkpoint(
        checkpoint_path(train_dir, "hardsharing", seed),
        model=model,
        architecture="hardsharing",
        arch_config=config,
        data=params.data,
        graph=params.graph,
        threshold=0.5,
        seed=seed,
    )
    return model


def write_train_metrics(path: Path) -> None:
    runs = [
        {"train_time_s": 10.0, "epoch_time_s": 1.0, "best_epoch": 3},
        {"train_time_s": 14.0, "epoch_time_s": 3.0, "best_epoch": 5},
    ]
    write_json(path, mean_and_std(runs))


def test_profile_stage_writes_every_figure_of_the_first_seed(tmp_path: Path) -> None:
    params = tiny_params()
    train_dir = tmp_path / "stages" / "train"
    model = write_checkpoint(train_dir, params, params.seed, params.arch.hardsharing)
    # A wider model under the second seed, which the stage must not read.
    write_checkpoint(train_dir, params, params.seed + 1, HardSharingConfig(hidden=8))
    train_metrics = tmp_path / "metrics" / "train" / "hardsharing.json"
    write_train_metrics(train_metrics)
    metrics_path = tmp_path / "metrics" / "profile" / "hardsharing.json"

    figures = run_profile_stage(
        params=params,
        architecture="hardsharing",
        train_dir=train_dir,
        train_metrics_path=train_metrics,
        metrics_path=metrics_path,
    )

    assert json.loads(metrics_path.read_text()) == figures
    assert set(PROFILE_KEYS) <= set(figures)
    assert all(
        isinstance(value, int | float) and not isinstance(value, bool)
        for value in flatten(figures).values()
    )
    assert figures["params"] == figures["trainable_params"] == count_parameters(model)
    assert figures["flops"] == count_flops(model)["flops"] == 2 * figures["macs"]
    assert figures["size_mb"] == size_mb(model)
    assert figures["threads"] == 1
    assert 0 < figures["latency_ms_p50"] <= figures["latency_ms_p99"]
    assert figures["throughput_windows_s"] > 0
    assert (figures["train_time_s"], figures["epoch_time_s"]) == (12.0, 2.0)
    assert figures["std"] == {"train_time_s": 2.0, "epoch_time_s": 1.0}


def test_profile_stage_without_train_metrics_names_the_file(tmp_path: Path) -> None:
    params = tiny_params()
    train_dir = tmp_path / "train"
    write_checkpoint(train_dir, params, params.seed, params.arch.hardsharing)
    missing = tmp_path / "train.json"

    with pytest.raises(MtlnetError, match=r"train\.json: not found"):
        run_profile_stage(
            params=params,
            architecture="hardsharing",
            train_dir=train_dir,
            train_metrics_path=missing,
            metrics_path=tmp_path / "profile.json",
        )
    assert not (tmp_path / "profile.json").exists()


def test_profile_stage_names_a_missing_spread(tmp_path: Path) -> None:
    params = tiny_params()
    train_dir = tmp_path / "train"
    write_checkpoint(train_dir, params, params.seed, params.arch.hardsharing)
    train_metrics = tmp_path / "train.json"
    write_json(train_metrics, {"train_time_s": 3.0, "epoch_time_s": 1.0})

    with pytest.raises(MtlnetError, match=r"no number at std\.train_time_s"):
        run_profile_stage(
            params=params,
            architecture="hardsharing",
            train_dir=train_dir,
            train_metrics_path=train_metrics,
            metrics_path=tmp_path / "profile.json",
        )


def test_profile_stage_without_a_checkpoint_says_to_train(tmp_path: Path) -> None:
    with pytest.raises(MtlnetError, match="run the train stage"):
        run_profile_stage(
            params=tiny_params(),
            architecture="hardsharing",
            train_dir=tmp_path / "train",
            train_metrics_path=tmp_path / "train.json",
            metrics_path=tmp_path / "profile.json",
        )
