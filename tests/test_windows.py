from fractions import Fraction
from math import floor

import numpy as np
import pandas as pd
import pytest
from conftest import fcciq_times

from mtlnet.config import DataConfig
from mtlnet.windows import segment_ids, split_ends, split_of_rows, window_starts


@pytest.mark.parametrize("num_rows", [*range(0, 60), 2327, 2031, 2156, 2222])
def test_split_ends_floor_eighty_and_ninety_percent(num_rows):
    assert split_ends(num_rows, DataConfig()) == (
        floor(num_rows * Fraction(8, 10)),
        floor(num_rows * Fraction(9, 10)),
    )


def test_split_ends_of_the_fcciq_recordings():
    assert split_ends(2327, DataConfig()) == (1861, 2094)
    assert split_ends(10, DataConfig()) == (8, 9)


@pytest.mark.parametrize(
    ("train", "val", "test"), [(0.7, 0.2, 0.1), (0.6, 0.2, 0.2), (0.7, 0.15, 0.15)]
)
def test_split_ends_follow_other_fractions_exactly(train, val, test):
    data = DataConfig(train_fraction=train, val_fraction=val, test_fraction=test)
    exact_train, exact_val = Fraction(str(train)), Fraction(str(val))

    for num_rows in range(0, 400):
        assert split_ends(num_rows, data) == (
            floor(num_rows * exact_train),
            floor(num_rows * (exact_train + exact_val)),
        )


def test_split_of_rows_names_train_then_val_then_test():
    split = split_of_rows(10, DataConfig())

    assert split.tolist() == ["train"] * 8 + ["val", "test"]


def test_a_gap_of_exactly_max_gap_s_keeps_one_segment():
    times = pd.Series(fcciq_times(4, gaps={2: 5.0}))

    assert segment_ids(times, 5.0).tolist() == [0, 0, 0, 0]


def test_a_gap_over_max_gap_s_starts_a_segment():
    times = pd.Series(fcciq_times(6, gaps={2: 5.001, 5: 60.0}))

    assert segment_ids(times, 5.0).tolist() == [0, 0, 1, 1, 1, 2]


def test_a_change_of_split_starts_a_segment():
    times = pd.Series(fcciq_times(10))

    segments = segment_ids(times, 5.0, split_of_rows(10, DataConfig()))

    assert segments.tolist() == [0] * 8 + [1, 2]


def test_window_starts_keep_rows_and_target_in_one_segment():
    segments = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])

    # window 3, horizon 1: rows s..s+2 and target s+3 share a segment.
    assert window_starts(segments, 3, 1).tolist() == [0, 1, 5, 6, 7]
    assert window_starts(segments, 3, 2).tolist() == [0, 5, 6]
    assert window_starts(segments, 5, 1).tolist() == [5]
    assert window_starts(segments, 6, 1).tolist() == []


def test_window_starts_of_too_few_rows_are_empty():
    assert window_starts(np.zeros(4, dtype=np.int64), 4, 1).tolist() == []
    assert window_starts(np.zeros(5, dtype=np.int64), 4, 1).tolist() == [0]
    assert window_starts(np.zeros(0, dtype=np.int64), 4, 1).dtype == np.int64
