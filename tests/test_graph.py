import pytest

from mtlnet.config import GraphConfig
from mtlnet.graph import window_edges


def edge_set(window, offsets, directed):
    edges = window_edges(window, GraphConfig(offsets=offsets, directed=directed))
    assert edges.shape[0] == 2
    assert edges.dtype.name == "int64"
    pairs = list(zip(edges[0].tolist(), edges[1].tolist(), strict=True))
    assert len(pairs) == len(set(pairs)), "an edge is listed twice"
    return set(pairs)


def test_directed_edges_point_from_past_to_future():
    assert edge_set(4, (1, 2), directed=True) == {
        (0, 1),
        (1, 2),
        (2, 3),
        (0, 2),
        (1, 3),
    }


def test_undirected_edges_add_each_reverse():
    forward = edge_set(4, (1, 2), directed=True)

    assert edge_set(4, (1, 2), directed=False) == forward | {(t, s) for s, t in forward}


@pytest.mark.parametrize("window", [2, 5, 35])
def test_the_edge_count_is_one_per_step_pair_and_offset(window):
    edges = window_edges(window, GraphConfig(offsets=(1, 2, 3), directed=False))

    expected = sum(2 * (window - o) for o in (1, 2, 3) if o < window)
    assert edges.shape == (2, expected)
    assert edges.min() >= 0
    assert edges.max() == window - 1
    assert not (edges[0] == edges[1]).any()


def test_an_offset_as_long_as_the_window_adds_no_edge():
    assert edge_set(3, (1, 3), directed=True) == {(0, 1), (1, 2)}
    assert window_edges(3, GraphConfig(offsets=(3, 4))).shape == (2, 0)
