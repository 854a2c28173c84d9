"""The GCN backbone and the pieces every architecture shares.

A window of ``window`` time steps is a graph with one node per step; every
window has the same edges, given once as ``edge_index: [2, E]`` (node ids
in ``[0, window)``, messages flow from ``edge_index[0]`` to
``edge_index[1]``, as in torch_geometric). The graph convolution is the
GCN of Kipf & Welling (ICLR 2017, eq. 2): ``H' = D^-1/2 (A + I) D^-1/2 H W``.

Formulation. Because all windows share one graph, the batch is convolved
with ``DenseGCNConv`` and one dense ``adj: [window, window]`` broadcast over
``x: [batch, window, channels]``. ``benchmarks/backbone.py`` measured it
against the two sparse ways of running ``GCNConv`` (batch 64, window 35,
hidden 64, two layers, forward + backward, 2 threads, median): over four
runs the dense form took 2.2-2.8 ms a step, the block-diagonal batch was
2.2-3.1x slower, and ``GCNConv`` on ``[batch, window, channels]`` with the
shared ``edge_index`` 3.8-4.8x slower, with or without ``cached=True``. The
three give the same outputs to float tolerance; ``tests/test_models.py``
checks the dense form against the block-diagonal batch, on an undirected
and on a directed graph.

Normalisation. ``DenseGCNConv`` has no cache: every call adds self-loops to
``adj`` and normalises it, a few element-wise operations on a
``[window, window]`` matrix (tens of microseconds), small beside the
``[batch, window, hidden]`` products. The raw ``adj`` is rebuilt from the
``edge_index`` buffer once per forward, so it always follows the buffer,
its device and dtype, also after ``load_state_dict``.

Window summary. Beside the GCN readout, every tower reads a few summary
statistics of the raw input window (:func:`window_summary`). A GCN layer
averages a node with its neighbours through one shared weight matrix, so
it smooths the window: the embeddings can no longer tell the last value
from the ones before it, which is what a next-step forecast turns on.
The statistics hand the towers those exact values. They are the same
statistics the gradient-boosting baseline reads; on the validation split
they raised every KPI's forecast skill (see the README).

Tasks. A model has ``num_targets`` regression tasks (one per forecast KPI,
in the order of the targets) and one interference task, always last:
``T = num_targets + 1`` tasks, each with its own tower.

Shapes (every :class:`MultiTaskModel`):
    x: [batch, window, in_channels]
    -> (regression: [batch, num_targets], interference logits: [batch])
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch_geometric.nn import DenseGCNConv

from mtlnet.config import BackboneConfig
from mtlnet.errors import MtlnetError

logger = logging.getLogger(__name__)

INTERFERENCE_TASK = "interference"
_INTEGER_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)


def dense_adjacency(edge_index: Tensor, num_nodes: int, dtype: torch.dtype) -> Tensor:
    """The adjacency ``adj[i, j]`` = number of edges ``j -> i``.

    Rows are receivers, so ``adj @ h`` sums what each node receives, the
    same direction as ``GCNConv``'s default ``source_to_target`` flow; for
    an undirected edge set ``adj`` is symmetric.

    Shapes:
        edge_index: [2, E] -> adj: [num_nodes, num_nodes]
    """
    adj = torch.zeros(num_nodes, num_nodes, dtype=dtype, device=edge_index.device)
    ones = torch.ones(edge_index.size(1), dtype=dtype, device=edge_index.device)
    # Accumulating keeps a repeated edge a double edge, as GCNConv counts it.
    adj.index_put_((edge_index[1], edge_index[0]), ones, accumulate=True)
    return adj


def readout(h: Tensor) -> Tensor:
    """The last node's embedding beside the mean over all nodes.

    The last step is where the window ends, so it carries the most for a
    next-step forecast and for the label at the last step; the mean adds
    the window's context.

    Shapes:
        h: [batch, window, channels] -> [batch, 2 * channels]
    """
    return torch.cat([h[:, -1], h.mean(dim=1)], dim=-1)


SUMMARY_STATISTICS = 6


def window_summary(x: Tensor) -> Tensor:
    """Six statistics per channel of a window, relative to its last value.

    Per channel: the last value, the mean minus the last value, the
    standard deviation, the range, the least-squares slope per step and the
    last step's change. Only element-wise operations and sums, so the
    figure profiling counts is the towers' and the GCN's alone.

    Shapes:
        x: [batch, window, channels] -> [batch, 6 * channels], statistic-major
    """
    window = x.size(1)
    last = x[:, -1]
    mean = x.mean(dim=1)
    steps = torch.arange(window, dtype=x.dtype, device=x.device)
    steps = steps - steps.mean()
    # One step has no slope: its numerator is 0, kept 0 by a tiny divisor.
    spread = (steps**2).sum().clamp_min(torch.finfo(x.dtype).tiny)
    slope = (x * steps[:, None]).sum(dim=1) / spread
    previous = x[:, -2] if window > 1 else last
    return torch.cat(
        [
            last,
            mean - last,
            x.std(dim=1, correction=0),
            x.amax(dim=1) - x.amin(dim=1),
            slope,
            last - previous,
        ],
        dim=-1,
    )


def tower_input(h: Tensor, summary: Tensor) -> Tensor:
    """A tower's features: the :func:`readout` of ``h`` beside the summary.

    Shapes:
        h: [batch, window, channels], summary: [batch, summary_size]
        -> [batch, 2 * channels + summary_size]
    """
    return torch.cat([readout(h), summary], dim=-1)


def mix_experts(weights: Tensor, experts: Tensor) -> Tensor:
    """The gate-weighted sum of expert outputs.

    Shapes:
        weights: [batch, experts], experts: [batch, experts, window, channels]
        -> [batch, window, channels]
    """
    return torch.einsum("be,benc->bnc", weights, experts)


def count_parameters(model: nn.Module) -> int:
    """The number of scalars in the model's parameters (buffers excluded)."""
    return sum(parameter.numel() for parameter in model.parameters())


class GCNLayer(nn.Module):
    """One GCN convolution, then ReLU and dropout.

    Kipf & Welling (ICLR 2017), eq. 2, through torch_geometric's
    ``DenseGCNConv`` with one adjacency for the whole batch.

    Shapes:
        x: [batch, window, in_channels], adj: [window, window]
        -> [batch, window, out_channels]
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.conv = DenseGCNConv(in_channels, out_channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        return self.dropout(torch.relu(self.conv(x, adj)))


class GCNEncoder(nn.Module):
    """A stack of ``layers`` GCN layers, ``hidden`` channels wide.

    Shapes:
        x: [batch, window, in_channels], adj: [window, window]
        -> [batch, window, hidden]
    """

    def __init__(
        self, in_channels: int, hidden: int, layers: int, dropout: float
    ) -> None:
        super().__init__()
        widths = [in_channels] + [hidden] * layers
        self.layers = nn.ModuleList(
            GCNLayer(a, b, dropout) for a, b in pairwise(widths)
        )

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, adj)
        return x


class Experts(nn.Module):
    """``count`` GCN encoders that read the same input.

    The experts of a mixture of experts (Jacobs et al., 1991; as used by
    MMoE and PLE), each a :class:`GCNEncoder` of its own.

    Shapes:
        x: [batch, window, in_channels], adj: [window, window]
        -> [batch, count, window, hidden]
    """

    def __init__(
        self, in_channels: int, hidden: int, layers: int, count: int, dropout: float
    ) -> None:
        super().__init__()
        self.experts = nn.ModuleList(
            GCNEncoder(in_channels, hidden, layers, dropout) for _ in range(count)
        )

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        return torch.stack([expert(x, adj) for expert in self.experts], dim=1)


class Gate(nn.Module):
    """A softmax over experts, computed from what the gate reads.

    The MMoE gate ``g(x) = softmax(W x)`` (Ma et al., KDD 2018), applied to
    the :func:`readout` of its input (last step and mean over the window),
    so it costs ``2 * channels * experts`` weights at any depth.

    Shapes:
        x: [batch, window, channels] -> [batch, experts], rows sum to 1
    """

    def __init__(self, channels: int, experts: int) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * channels, experts)

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.linear(readout(x)), dim=-1)


class Tower(nn.Module):
    """A task's head: one hidden layer, then one output.

    Shapes:
        x: [batch, in_features] -> [batch]
    """

    def __init__(self, in_features: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


@dataclass(frozen=True)
class ModelInputs:
    """What a model is built for: the input window, its graph, the targets.

    ``last_value_channels`` names the input channel of each target; with it
    the regression outputs are the last observed values plus what the
    towers add (a forecast of the change). ``summary_channels`` names the
    input channels whose :func:`window_summary` every tower reads.
    """

    in_channels: int
    window: int
    edge_index: Tensor
    num_targets: int
    last_value_channels: Sequence[int] = ()
    summary_channels: Sequence[int] = ()


class MultiTaskModel(nn.Module, ABC):
    """What every architecture shares: inputs, the window graph, the tasks.

    Subclasses build their networks in ``__init__`` (their towers with
    :meth:`tower` or :meth:`make_towers`) and implement
    :meth:`task_outputs`, where each tower reads its readout beside
    :meth:`summary`. The shared ``edge_index`` is a persistent buffer, so
    a checkpoint carries the graph it was trained on.

    Shapes:
        x: [batch, window, in_channels]
        -> (regression: [batch, num_targets], interference logits: [batch])
    """

    config_type: ClassVar[type[BackboneConfig]] = BackboneConfig
    edge_index: Tensor
    last_value_channels: Tensor
    summary_channels: Tensor

    def __init__(self, config: BackboneConfig, inputs: ModelInputs) -> None:
        super().__init__()
        in_channels, window = inputs.in_channels, inputs.window
        num_targets, edge_index = inputs.num_targets, inputs.edge_index
        last_value_channels = list(inputs.last_value_channels)
        summary_channels = list(inputs.summary_channels)
        if not isinstance(config, self.config_type):
            raise MtlnetError(
                f"{type(self).__name__} needs a {self.config_type.__name__}, "
                f"got a {type(config).__name__}"
            )
        if in_channels < 1:
            raise MtlnetError(f"in_channels must be at least 1, got {in_channels}")
        if num_targets < 1:
            raise MtlnetError(f"num_targets must be at least 1, got {num_targets}")
        _check_edge_index(edge_index, window)

        self.in_channels = in_channels
        self.window = window
        self.num_targets = num_targets
        self.num_tasks = num_targets + 1
        self.task_names: tuple[str, ...] = (
            *(f"target{i}" for i in range(num_targets)),
            INTERFERENCE_TASK,
        )
        self.register_buffer("edge_index", edge_index.to(torch.long).clone())
        if last_value_channels and len(last_value_channels) != num_targets:
            raise MtlnetError(
                f"last_value_channels names {len(last_value_channels)} channels "
                f"for {num_targets} targets"
            )
        for name, channels in [
            ("last_value_channels", last_value_channels),
            ("summary_channels", summary_channels),
        ]:
            if any(not 0 <= c < in_channels for c in channels):
                raise MtlnetError(f"{name} {channels} must lie in [0, {in_channels})")
            # Derived from the data settings, so not part of the state dict.
            self.register_buffer(
                name, torch.tensor(channels, dtype=torch.long), persistent=False
            )
        self.summary_size = SUMMARY_STATISTICS * len(summary_channels)

    def summary(self, x: Tensor) -> Tensor:
        """The :func:`window_summary` of the summary channels.

        Shapes:
            x: [batch, window, in_channels] -> [batch, summary_size]
        """
        if not self.summary_size:
            return x.new_zeros(x.size(0), 0)
        return window_summary(x[..., self.summary_channels])

    def tower(self, config: BackboneConfig) -> Tower:
        """A task tower: it reads ``2 * hidden`` features beside the summary.

        Those are :func:`readout`'s last node and mean, or attention's
        attended vector and last node.
        """
        return Tower(
            2 * config.hidden + self.summary_size, config.tower_hidden, config.dropout
        )

    def make_towers(self, config: BackboneConfig) -> nn.ModuleList:
        """One :meth:`tower` per task, in ``task_names`` order."""
        return nn.ModuleList(self.tower(config) for _ in range(self.num_tasks))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        outputs, _ = self.task_outputs(x, self._adjacency(x))
        regression = torch.stack(outputs[:-1], dim=1)
        if self.last_value_channels.numel():
            # The towers forecast the change from the last observed value:
            # persistence is the starting point, and the model learns what
            # it adds to it.
            regression = regression + x[:, -1, self.last_value_channels]
        return regression, outputs[-1]

    def gate_weights(self, x: Tensor) -> dict[str, Tensor]:
        """The softmax weights of the model's input-dependent gates.

        Keys and shapes are the architecture's (see its docstring); each
        tensor sums to one over its last dimension. Architectures without
        such gates return an empty dict. Gates that read hidden activations
        see dropout in training mode: call it in eval mode to inspect them.
        """
        _, gates = self.task_outputs(x, self._adjacency(x))
        return gates

    @abstractmethod
    def task_outputs(
        self, x: Tensor, adj: Tensor
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Each task's output, in ``task_names`` order, and the gate weights.

        Shapes:
            x: [batch, window, in_channels], adj: [window, window]
            -> ([batch] per task, {name: [batch, ..., experts]})
        """

    def _adjacency(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[1:] != (self.window, self.in_channels):
            raise ValueError(
                f"x must be [batch, {self.window}, {self.in_channels}], "
                f"got {list(x.shape)}"
            )
        return dense_adjacency(self.edge_index, self.window, x.dtype)


def _check_edge_index(edge_index: Tensor, window: int) -> None:
    if window < 1:
        raise MtlnetError(f"window must be at least 1, got {window}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise MtlnetError(
            f"edge_index must have shape [2, E], got {list(edge_index.shape)}"
        )
    if edge_index.dtype not in _INTEGER_DTYPES:
        raise MtlnetError(f"edge_index must hold integers, got {edge_index.dtype}")
    if edge_index.numel() == 0:
        return
    if edge_index.min() < 0 or edge_index.max() >= window:
        raise MtlnetError(
            f"edge_index names nodes {int(edge_index.min())}..{int(edge_index.max())}"
            f" but a window has nodes 0..{window - 1}"
        )
    if (edge_index[0] == edge_index[1]).any():
        raise MtlnetError(
            "edge_index holds a self-loop; the GCN adds one to every node itself"
        )
