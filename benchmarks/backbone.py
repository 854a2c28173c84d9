"""Time three ways to run one GCN over a batch of window graphs.

Every window graph has the same nodes (one per time step) and the same
edges, so a batch can be convolved in three equivalent ways:

- shared ``edge_index``: ``GCNConv`` on ``x: [batch, window, channels]``,
  propagating along the node dimension (``node_dim=-2``) with one
  ``edge_index: [2, E]`` for every window;
- dense adjacency: ``DenseGCNConv`` with one ``adj: [window, window]``
  broadcast over the batch;
- block-diagonal batch: ``GCNConv`` on ``x: [batch * window, channels]``
  with ``edge_index`` repeated once per window, offset by ``window``.

Each is timed for a forward and backward step of a two-layer GCN, side by
side in one run (the formulations take turns within every repeat, so a
slow spell of the machine hits them alike), and the median is printed with
its ratio to the fastest. The window graph is the project's own
(``mtlnet.graph.window_edges``, offsets 1 and 2, undirected) and the dense
adjacency is built as the models build it. Run it from the project root
with the package installed (``scripts/dev.sh setup``)::

    .venv/bin/python benchmarks/backbone.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from itertools import pairwise

import torch
from torch import Tensor, nn
from torch_geometric.nn import DenseGCNConv, GCNConv

from mtlnet.config import GraphConfig
from mtlnet.graph import window_edges
from mtlnet.models.backbone import dense_adjacency

BATCH = 64
WINDOW = 35
IN_CHANNELS = 4
HIDDEN = 64
LAYERS = 2
OFFSETS = (1, 2)
THREADS = 2
WARMUP = 20
REPEATS = 15
STEPS_PER_REPEAT = 20


class SharedEdgeIndexGCN(nn.Module):
    """``GCNConv`` layers on ``x: [batch, window, channels]``, one edge set."""

    def __init__(self, edge_index: Tensor, *, cached: bool) -> None:
        super().__init__()
        sizes = [IN_CHANNELS] + [HIDDEN] * LAYERS
        self.convs = nn.ModuleList(
            GCNConv(a, b, cached=cached) for a, b in pairwise(sizes)
        )
        self.register_buffer("edge_index", edge_index)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = torch.relu(conv(x, self.edge_index))
        return x


class DenseAdjacencyGCN(nn.Module):
    """``DenseGCNConv`` layers with one ``adj: [window, window]``."""

    def __init__(self, edge_index: Tensor) -> None:
        super().__init__()
        sizes = [IN_CHANNELS] + [HIDDEN] * LAYERS
        self.convs = nn.ModuleList(DenseGCNConv(a, b) for a, b in pairwise(sizes))
        self.register_buffer("edge_index", edge_index)

    def forward(self, x: Tensor) -> Tensor:
        # Built per call from edge_index, as mtlnet.models does, so that the
        # comparison includes its cost.
        adj = dense_adjacency(self.edge_index, WINDOW, x.dtype)
        for conv in self.convs:
            x = torch.relu(conv(x, adj))
        return x


class BlockDiagonalGCN(nn.Module):
    """``GCNConv`` layers on the batch flattened into one disjoint graph."""

    def __init__(self, edge_index: Tensor) -> None:
        super().__init__()
        sizes = [IN_CHANNELS] + [HIDDEN] * LAYERS
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in pairwise(sizes))
        self.register_buffer("edge_index", edge_index)

    def forward(self, x: Tensor) -> Tensor:
        batch, window, channels = x.shape
        # The block edge set depends on the batch size, so it is rebuilt per
        # call, as a model would have to for the last, shorter batch.
        offsets = torch.arange(batch).repeat_interleave(self.edge_index.size(1))
        edge_index = self.edge_index.repeat(1, batch) + offsets * window
        h = x.reshape(batch * window, channels)
        for conv in self.convs:
            h = torch.relu(conv(h, edge_index))
        return h.view(batch, window, -1)


def step_timer(model: nn.Module, x: Tensor) -> Callable[[], float]:
    """A function that runs ``STEPS_PER_REPEAT`` steps and returns ms/step."""

    def run() -> float:
        start = time.perf_counter()
        for _ in range(STEPS_PER_REPEAT):
            model.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
        return (time.perf_counter() - start) * 1000 / STEPS_PER_REPEAT

    return run


def main() -> None:
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    graph = GraphConfig(offsets=OFFSETS, directed=False)
    edge_index = torch.from_numpy(window_edges(WINDOW, graph))
    x = torch.randn(BATCH, WINDOW, IN_CHANNELS)
    models: dict[str, nn.Module] = {
        "shared edge_index, GCNConv": SharedEdgeIndexGCN(edge_index, cached=False),
        "shared edge_index, GCNConv cached": SharedEdgeIndexGCN(
            edge_index, cached=True
        ),
        "dense adjacency, DenseGCNConv": DenseAdjacencyGCN(edge_index),
        "block-diagonal batch, GCNConv": BlockDiagonalGCN(edge_index),
    }
    timers = {name: step_timer(model, x) for name, model in models.items()}

    for timer in timers.values():
        for _ in range(WARMUP // STEPS_PER_REPEAT + 1):
            timer()
    samples: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(REPEATS):
        for name, timer in timers.items():
            samples[name].append(timer())

    medians = {name: statistics.median(times) for name, times in samples.items()}
    fastest = min(medians.values())
    print(
        f"batch {BATCH}, window {WINDOW}, hidden {HIDDEN}, {LAYERS} layers, "
        f"{THREADS} threads, median of {REPEATS} x {STEPS_PER_REPEAT} steps"
    )
    width = max(len(name) for name in medians)
    print(f"{'formulation':<{width}}  ms/step  ratio")
    for name, median in sorted(medians.items(), key=lambda item: item[1]):
        print(f"{name:<{width}}  {median:7.3f}  {median / fastest:5.2f}")


if __name__ == "__main__":
    main()
