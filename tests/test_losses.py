"""Per-task losses and the weightings that combine them."""

from __future__ import annotations

import math

import pytest
import torch

from mtlnet.losses import (
    DynamicWeightAverage,
    EqualWeighting,
    UncertaintyWeighting,
    make_weighting,
    persistence_mse,
    positive_weight,
    task_losses,
)

REGRESSION = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
TARGET = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
# sigmoid(0) = 1/2, sigmoid(log 3) = 3/4.
LOGITS = torch.tensor([0.0, math.log(3.0)])
LABEL = torch.tensor([1.0, 0.0])


def test_task_losses_are_one_mse_per_target_then_the_cross_entropy():
    losses = task_losses(REGRESSION, LOGITS, TARGET, LABEL, None)

    # MSEs (1 + 4) / 2 and (0 + 9) / 2; BCE (-log 1/2 - log 1/4) / 2.
    expected = [2.5, 4.5, (math.log(2) + math.log(4)) / 2]
    assert losses.tolist() == pytest.approx(expected)


def test_a_regression_scale_divides_each_targets_mse_and_not_the_detection():
    scale = torch.tensor([0.5, 9.0])

    losses = task_losses(REGRESSION, LOGITS, TARGET, LABEL, None, scale)

    expected = [2.5 / 0.5, 4.5 / 9.0, (math.log(2) + math.log(4)) / 2]
    assert losses.tolist() == pytest.approx(expected)


def test_persistence_mse_is_the_mse_of_the_last_value_forecast():
    target = torch.tensor([[1.0, 5.0, 2.0], [3.0, 5.0, 2.0]])
    last = torch.tensor([[0.0, 5.0, 2.0], [6.0, 5.0, 2.0]])

    # (1 + 9) / 2 for the first target; the others never change: 1.
    assert persistence_mse(target, last).tolist() == [5.0, 1.0, 1.0]


def test_relative_losses_of_persistence_itself_are_one():
    target = torch.tensor([[1.0, -2.0], [3.0, 0.5], [0.0, 1.0]])
    last = torch.tensor([[0.5, -1.0], [3.5, 0.0], [1.0, 1.5]])

    losses = task_losses(
        last,
        LOGITS[:1].expand(3),
        target,
        LABEL[:1].expand(3),
        None,
        persistence_mse(target, last),
    )

    assert losses[:2].tolist() == pytest.approx([1.0, 1.0])


def test_pos_weight_scales_the_positive_terms_of_the_cross_entropy():
    losses = task_losses(REGRESSION, LOGITS, TARGET, LABEL, torch.tensor(2.0))

    # -(w * y * log p + (1 - y) * log(1 - p)), averaged over the batch.
    expected = (2.0 * -math.log(1 / 2) + -math.log(1 - 3 / 4)) / 2
    assert losses[-1].item() == pytest.approx(expected)
    assert losses[:2].tolist() == pytest.approx([2.5, 4.5])


def test_equal_weighting_is_the_plain_sum():
    losses = torch.tensor([1.0, 2.0, 3.0, 4.5])

    weighting = EqualWeighting(4)

    assert weighting(losses).item() == 10.5
    assert weighting.weights().tolist() == [1.0, 1.0, 1.0, 1.0]
    assert list(weighting.parameters()) == []


def test_uncertainty_weighting_matches_kendall_by_hand():
    weighting = UncertaintyWeighting(4)
    with torch.no_grad():
        weighting.log_variance.copy_(torch.tensor([0.0, math.log(2), -math.log(2), 1]))
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])

    total = weighting(losses)

    # 1/2 e^-s L for the three regressions, e^-s L for detection, plus s / 2.
    regression = 0.5 * 1 * 1 + 0.5 * 0.5 * 2 + 0.5 * 2 * 3
    detection = math.exp(-1) * 4
    assert total.item() == pytest.approx(regression + detection + 1 / 2)
    assert weighting.weights().tolist() == pytest.approx([0.5, 0.25, 1.0, math.exp(-1)])


def test_uncertainty_log_variance_receives_the_hand_gradient():
    weighting = UncertaintyWeighting(4)
    with torch.no_grad():
        weighting.log_variance.copy_(torch.tensor([0.0, math.log(2), -math.log(2), 1]))
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])

    weighting(losses).backward()

    # d/ds (c e^-s L + s / 2) = -c e^-s L + 1/2.
    gradient = weighting.log_variance.grad
    assert gradient is not None
    assert gradient.tolist() == pytest.approx(
        [0.0, 0.0, -0.5 * 2 * 3 + 0.5, -math.exp(-1) * 4 + 0.5]
    )
    assert [p is weighting.log_variance for p in weighting.parameters()] == [True]


def test_dwa_weighs_every_task_one_for_the_first_two_epochs():
    weighting = DynamicWeightAverage(4, temperature=2.0)
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])

    assert weighting(losses).item() == 10.0
    weighting.end_epoch(torch.tensor([1.0, 2.0, 4.0, 1.0]))

    assert weighting.weights().tolist() == [1.0, 1.0, 1.0, 1.0]
    assert weighting(losses).item() == 10.0


def test_dwa_weights_after_two_epochs_are_k_times_softmax_of_loss_ratios():
    weighting = DynamicWeightAverage(4, temperature=2.0)
    weighting.end_epoch(torch.tensor([1.0, 2.0, 4.0, 1.0]))
    weighting.end_epoch(torch.tensor([0.5, 2.0, 2.0, 1.5]))

    weights = weighting.weights()

    ratio = [0.5, 1.0, 0.5, 1.5]
    exps = [math.exp(r / 2.0) for r in ratio]
    expected = [4 * e / sum(exps) for e in exps]
    assert weights.tolist() == pytest.approx(expected)
    assert weights.sum().item() == pytest.approx(4.0)
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert weighting(losses).item() == pytest.approx(
        sum(w * v for w, v in zip(expected, [1, 2, 3, 4], strict=True))
    )


def test_dwa_uses_only_the_last_two_epochs():
    weighting = DynamicWeightAverage(2, temperature=1.0)
    for epoch_losses in ([8.0, 1.0], [4.0, 1.0], [4.0, 2.0]):
        weighting.end_epoch(torch.tensor(epoch_losses))

    # Ratios of the third to the second epoch: 1 and 2.
    e1, e2 = math.exp(1.0), math.exp(2.0)
    assert weighting.weights().tolist() == pytest.approx(
        [2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)]
    )


def test_make_weighting_builds_the_named_weighting():
    assert type(make_weighting("equal", 4, 2.0)) is EqualWeighting
    assert type(make_weighting("uncertainty", 4, 2.0)) is UncertaintyWeighting
    dwa = make_weighting("dwa", 4, 3.0)
    assert isinstance(dwa, DynamicWeightAverage)
    assert dwa.temperature == 3.0
    with pytest.raises(ValueError, match="'gradnorm'"):
        make_weighting("gradnorm", 4, 2.0)


def test_positive_weight_is_negatives_per_positive():
    assert positive_weight(torch.tensor([1.0, 0, 0, 0, 1, 0])).item() == 2.0
    assert positive_weight(torch.tensor([1.0, 1, 1, 0])).item() == pytest.approx(1 / 3)


@pytest.mark.parametrize("label", [[0.0, 0.0, 0.0], [1.0, 1.0], []])
def test_positive_weight_is_one_when_a_class_is_absent(label):
    assert positive_weight(torch.tensor(label)).item() == 1.0
