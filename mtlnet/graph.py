"""The edge set that every window graph shares."""

from __future__ import annotations

import numpy as np

from mtlnet.config import GraphConfig


def window_edges(window: int, graph: GraphConfig) -> np.ndarray:
    """Edges joining time steps of one window, as ``[2, num_edges]``.

    Node ``t`` is the ``t``-th step of the window. Each offset ``o`` joins
    step ``t`` to step ``t + o``. A directed graph points from past to
    future, so a step aggregates only what came before it (message passing
    runs from ``edge_index[0]`` to ``edge_index[1]``); an undirected one
    adds the reverse edges. Self-loops are left to the GCN layer.
    """
    sources: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for offset in sorted(graph.offsets):
        if offset >= window:
            continue
        past = np.arange(window - offset)
        sources.append(past)
        targets.append(past + offset)
        if not graph.directed:
            sources.append(past + offset)
            targets.append(past)
    if not sources:
        return np.zeros((2, 0), dtype=np.int64)
    return np.stack([np.concatenate(sources), np.concatenate(targets)]).astype(np.int64)
