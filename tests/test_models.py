"""Behaviour of the multi-task architectures in ``mtlnet.models``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import Tensor
from torch_geometric.nn import GCNConv

from mtlnet.config import (
    ARCHITECTURES,
    ArchConfigs,
    BackboneConfig,
    CrossStitchConfig,
    GraphConfig,
    MMoEConfig,
    PLEConfig,
    STLConfig,
)
from mtlnet.errors import MtlnetError
from mtlnet.graph import window_edges
from mtlnet.models import MODELS, MultiTaskModel, build_model, count_parameters
from mtlnet.models.backbone import (
    GCNEncoder,
    dense_adjacency,
    readout,
    window_summary,
)

IN_CHANNELS = 3
WINDOW = 6
NUM_TARGETS = 2
# The window summary of the first two input channels goes to every tower.
SUMMARY_CHANNELS = (0, 1)
NUM_TASKS = NUM_TARGETS + 1


EDGE_INDEX = torch.from_numpy(window_edges(WINDOW, GraphConfig(offsets=(1, 2))))


def tiny_config(name: str, **overrides: object) -> BackboneConfig:
    sizes: dict[str, object] = {"hidden": 8, "tower_hidden": 4, "dropout": 0.0}
    if name == "attention":
        sizes["heads"] = 2
    return dataclasses.replace(ArchConfigs().get(name), **{**sizes, **overrides})


def tiny_model(
    name: str,
    seed: int = 0,
    summary_channels: tuple[int, ...] = SUMMARY_CHANNELS,
    **overrides: object,
) -> MultiTaskModel:
    torch.manual_seed(seed)
    return build_model(
        name,
        tiny_config(name, **overrides),
        in_channels=IN_CHANNELS,
        window=WINDOW,
        edge_index=EDGE_INDEX,
        num_targets=NUM_TARGETS,
        summary_channels=summary_channels,
    )


def windows(batch: int, seed: int = 1) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, WINDOW, IN_CHANNELS, generator=generator)


def task_output(model: MultiTaskModel, x: Tensor, task: int) -> Tensor:
    regression, logits = model(x)
    return logits if task == NUM_TARGETS else regression[:, task]


def test_registry_names_every_architecture_in_config_order() -> None:
    assert tuple(MODELS) == ARCHITECTURES


@pytest.mark.parametrize("batch", [1, 2, 5])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_outputs_are_one_value_per_target_and_one_logit_per_window(
    name: str, batch: int
) -> None:
    regression, logits = tiny_model(name)(windows(batch))

    assert regression.shape == (batch, NUM_TARGETS)
    assert logits.shape == (batch,)
    assert torch.isfinite(regression).all()
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_a_window_gets_the_same_output_whatever_else_is_in_its_batch(
    name: str,
) -> None:
    model = tiny_model(name, dropout=0.3).eval()
    x = windows(4)

    regression, logits = model(x)
    alone = [model(x[i : i + 1]) for i in range(4)]

    torch.testing.assert_close(regression, torch.cat([r for r, _ in alone]))
    torch.testing.assert_close(logits, torch.cat([lg for _, lg in alone]))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_one_backward_over_all_outputs_reaches_every_parameter(name: str) -> None:
    model = tiny_model(name)
    regression, logits = model(windows(8))

    (regression.square().mean() + logits.square().mean()).backward()

    unreached = [
        parameter_name
        for parameter_name, parameter in model.named_parameters()
        if parameter.grad is None or not parameter.grad.abs().sum() > 0
    ]
    assert unreached == []


def test_mmoe_task_gates_are_softmaxes_over_the_experts() -> None:
    model = tiny_model("mmoe", experts=3)

    gates = model.gate_weights(windows(5))

    assert list(gates) == ["target0", "target1", "interference"]
    for weights in gates.values():
        assert weights.shape == (5, 3)
        assert (weights > 0).all()
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(5))


@pytest.mark.parametrize("levels", [1, 3])
def test_ple_gates_weigh_own_and_shared_experts_and_all_experts_below_the_top(
    levels: int,
) -> None:
    model = tiny_model("ple", levels=levels, task_experts=2, shared_experts=3)

    gates = model.gate_weights(windows(5))

    expected_shapes = {}
    for level in range(levels):
        for task in ("target0", "target1", "interference"):
            expected_shapes[f"level{level}/{task}"] = (5, 2 + 3)
        if level < levels - 1:
            expected_shapes[f"level{level}/shared"] = (5, NUM_TASKS * 2 + 3)
    assert {key: tuple(w.shape) for key, w in gates.items()} == expected_shapes
    for weights in gates.values():
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(5))


def test_task_attention_weights_sum_to_one_over_the_window_per_head() -> None:
    model = tiny_model("attention", heads=2)

    gates = model.gate_weights(windows(5))

    assert list(gates) == ["target0", "target1", "interference"]
    for weights in gates.values():
        assert weights.shape == (5, 2, WINDOW)
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(5, 2))
    assert not torch.allclose(gates["target0"], gates["interference"])


@pytest.mark.parametrize("name", ["stl", "hardsharing", "crossstitch"])
def test_models_without_input_gates_report_no_gate_weights(name: str) -> None:
    assert tiny_model(name).gate_weights(windows(2)) == {}


def test_cross_stitch_units_start_as_a_convex_mix_favouring_the_own_task() -> None:
    model = tiny_model("crossstitch", stitch_after=(0, 1), stitch_self=0.7)

    expected = torch.tensor(
        [[0.70, 0.15, 0.15], [0.15, 0.70, 0.15], [0.15, 0.15, 0.70]]
    )
    assert sorted(model.stitches) == ["0", "1"]
    for unit in model.stitches.values():
        torch.testing.assert_close(unit.weight.detach(), expected)


def test_cross_stitch_places_units_only_after_the_listed_layers() -> None:
    model = tiny_model("crossstitch", layers=3, stitch_after=(1,))

    assert list(model.stitches) == ["1"]


@pytest.mark.parametrize(("stitch_self", "crosses"), [(1.0, False), (0.5, True)])
def test_cross_stitch_lets_a_task_read_other_columns_only_when_mixing(
    stitch_self: float, crosses: bool
) -> None:
    model = tiny_model("crossstitch", stitch_after=(0,), stitch_self=stitch_self)

    task_output(model, windows(4), task=0).sum().backward()

    other_column = model.layers[0].columns[1]
    reached = any(p.grad.abs().sum() > 0 for p in other_column.parameters())
    assert reached == crosses


def test_stl_tasks_share_no_parameter() -> None:
    model = tiny_model("stl")

    per_task = [{id(p) for p in network.parameters()} for network in model.tasks]

    for i in range(NUM_TASKS):
        for j in range(i + 1, NUM_TASKS):
            assert per_task[i].isdisjoint(per_task[j])
    assert set().union(*per_task) == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("task", range(NUM_TASKS))
def test_stl_gradient_of_a_task_reaches_only_that_tasks_network(task: int) -> None:
    model = tiny_model("stl")

    task_output(model, windows(4), task).sum().backward()

    for index, network in enumerate(model.tasks):
        grads = [p.grad for p in network.parameters()]
        if index == task:
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None or not g.any() for g in grads)


DIRECTED_EDGE_INDEX = torch.tensor([[0, 0, 1, 4, 5, 2, 3], [1, 2, 3, 2, 0, 3, 5]])


@pytest.mark.parametrize(
    "edge_index", [EDGE_INDEX, DIRECTED_EDGE_INDEX], ids=["undirected", "directed"]
)
def test_dense_gcn_matches_gcnconv_on_the_block_diagonal_batch(
    edge_index: Tensor,
) -> None:
    torch.manual_seed(0)
    encoder = GCNEncoder(IN_CHANNELS, hidden=8, layers=2, dropout=0.0).eval()
    x = windows(5)

    dense = encoder(x, dense_adjacency(edge_index, WINDOW, x.dtype))

    batch = x.size(0)
    shift = torch.arange(batch).repeat_interleave(edge_index.size(1)) * WINDOW
    block_edge_index = edge_index.repeat(1, batch) + shift
    h = x.reshape(batch * WINDOW, IN_CHANNELS)
    for layer in encoder.layers:
        conv = GCNConv(layer.conv.in_channels, layer.conv.out_channels)
        conv.lin.weight.data.copy_(layer.conv.lin.weight)
        conv.bias.data.copy_(layer.conv.bias)
        h = torch.relu(conv(h, block_edge_index))
    torch.testing.assert_close(dense, h.view(batch, WINDOW, -1))


def test_dense_adjacency_rows_receive_and_repeated_edges_count_twice() -> None:
    edge_index = torch.tensor([[0, 2, 2], [1, 0, 0]])

    adj = dense_adjacency(edge_index, 3, torch.float32)

    expected = torch.tensor([[0.0, 0.0, 2.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(adj, expected)


def test_readout_puts_the_last_node_beside_the_mean_over_nodes() -> None:
    h = torch.tensor([[[1.0, 10.0], [2.0, 20.0], [6.0, 0.0]]])

    assert readout(h).tolist() == [[6.0, 0.0, 3.0, 10.0]]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_checkpoint_round_trip_gives_identical_outputs(
    name: str, tmp_path: Path
) -> None:
    trained = tiny_model(name, seed=0).eval()
    path = tmp_path / "model.pt"
    torch.save(trained.state_dict(), path)

    fresh = tiny_model(name, seed=1)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    fresh.eval()

    x = windows(3)
    for before, after in zip(trained(x), fresh(x), strict=True):
        assert torch.equal(before, after)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_the_window_graph_is_saved_with_the_weights(name: str) -> None:
    state = tiny_model(name).state_dict()

    assert torch.equal(state["edge_index"], EDGE_INDEX)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_models_built_with_the_same_seed_are_identical(name: str) -> None:
    first = tiny_model(name, seed=7).state_dict()
    again = tiny_model(name, seed=7).state_dict()
    other = tiny_model(name, seed=8).state_dict()

    assert list(first) == list(again)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not all(torch.equal(first[key], other[key]) for key in first)


def test_count_parameters_of_hard_sharing_adds_up_its_layers() -> None:
    model = tiny_model("hardsharing")

    # GCN layers: (3*8 + 8) + (8*8 + 8); towers read the readout (16) and
    # the summary (6 x 2): 3 x ((28*4 + 4) + (4 + 1)).
    assert count_parameters(model) == 104 + NUM_TASKS * 121


def test_window_summary_by_hand() -> None:
    # One window of four steps; the second channel is constant.
    x = torch.tensor([[[1.0, 5.0], [2.0, 5.0], [4.0, 5.0], [3.0, 5.0]]])

    summary = window_summary(x)

    # Per statistic, both channels: last, mean - last, population std,
    # range, slope (steps -1.5..1.5: sum t*x / sum t^2 = 4 / 5), last change.
    expected = [3, 5, -0.5, 0, 1.25**0.5, 0, 3, 0, 0.8, 0, -1, 0]
    assert summary.tolist() == [pytest.approx(expected)]


def test_the_slope_of_a_two_step_window_is_its_change() -> None:
    summary = window_summary(torch.tensor([[[0.0], [1.0]]]))

    # Statistic 4 is the slope: one step, a change of 1.
    assert summary[0, 4].item() == pytest.approx(1.0)


def test_window_summary_of_a_one_step_window_is_finite() -> None:
    summary = window_summary(torch.tensor([[[2.0]]]))

    assert summary.tolist() == [[2.0, 0.0, 0.0, 0.0, 0.0, 0.0]]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_towers_read_the_summary_of_the_named_channels(name: str) -> None:
    with_summary = tiny_model(name)
    without = tiny_model(name, summary_channels=())
    x = windows(4)

    torch.testing.assert_close(
        with_summary.summary(x), window_summary(x[..., list(SUMMARY_CHANNELS)])
    )
    assert without.summary(x).shape == (4, 0)
    # Each tower's first layer has 6 inputs per summary channel more.
    extra = NUM_TASKS * 6 * len(SUMMARY_CHANNELS) * tiny_config(name).tower_hidden
    assert count_parameters(with_summary) == count_parameters(without) + extra


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_tower_reads_the_window_summary_last(name: str) -> None:
    model = tiny_model(name).eval()
    x = windows(3)
    seen: list[Tensor] = []
    for tower in towers_of(model):
        tower.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0]))

    model(x)

    summary = window_summary(x[..., list(SUMMARY_CHANNELS)])
    assert len(seen) == NUM_TASKS
    for features in seen:
        torch.testing.assert_close(features[:, -summary.size(1) :], summary)


def towers_of(model: MultiTaskModel) -> list[torch.nn.Module]:
    if hasattr(model, "towers"):
        return list(model.towers)
    return [network.tower for network in model.tasks]


@pytest.mark.parametrize("channels", [(0, 3), (0, -1)])
def test_summary_channels_outside_the_input_are_an_error(
    channels: tuple[int, int],
) -> None:
    with pytest.raises(MtlnetError, match=r"summary_channels .* must lie in \[0, 3\)"):
        tiny_model("hardsharing", summary_channels=channels)


def test_the_summary_reads_the_named_channels_in_their_order() -> None:
    model = tiny_model("hardsharing", summary_channels=(2, 0))
    x = windows(3)
    other = x.clone()
    other[..., 1] += 5.0

    torch.testing.assert_close(model.summary(x), window_summary(x[..., [2, 0]]))
    assert torch.equal(model.summary(other), model.summary(x))


def test_unknown_architecture_is_an_error_naming_the_allowed_ones() -> None:
    with pytest.raises(MtlnetError, match=r"'moe'.*allowed: stl, hardsharing, mmoe"):
        build_model(
            "moe",
            MMoEConfig(),
            in_channels=IN_CHANNELS,
            window=WINDOW,
            edge_index=EDGE_INDEX,
            num_targets=NUM_TARGETS,
        )


@pytest.mark.parametrize(
    ("name", "config"),
    [("mmoe", STLConfig()), ("ple", CrossStitchConfig()), ("stl", PLEConfig())],
)
def test_a_config_of_another_architecture_is_an_error(
    name: str, config: BackboneConfig
) -> None:
    with pytest.raises(
        MtlnetError, match=f"needs a {MODELS[name].config_type.__name__}, got"
    ):
        build_model(
            name,
            config,
            in_channels=IN_CHANNELS,
            window=WINDOW,
            edge_index=EDGE_INDEX,
            num_targets=NUM_TARGETS,
        )


@pytest.mark.parametrize(
    ("edge_index", "message"),
    [
        (torch.tensor([[0, 6], [1, 0]]), "nodes 0..6 but a window has nodes 0..5"),
        (torch.tensor([[0, 3], [1, 3]]), "self-loop"),
        (torch.tensor([0, 1]), r"shape \[2, E\]"),
        (torch.tensor([[0.0], [1.0]]), "integers"),
    ],
)
def test_an_edge_index_that_does_not_fit_the_window_is_an_error(
    edge_index: Tensor, message: str
) -> None:
    with pytest.raises(MtlnetError, match=message):
        build_model(
            "hardsharing",
            tiny_config("hardsharing"),
            in_channels=IN_CHANNELS,
            window=WINDOW,
            edge_index=edge_index,
            num_targets=NUM_TARGETS,
        )


def test_windows_of_another_length_are_refused() -> None:
    model = tiny_model("hardsharing")

    with pytest.raises(ValueError, match=r"x must be \[batch, 6, 3\], got \[2, 5, 3\]"):
        model(torch.zeros(2, WINDOW - 1, IN_CHANNELS))
