"""Per-task losses and the ways of weighting them into one.

The tasks are the regression targets (one each, a mean squared error on the
scaled values, divided by the persistence forecast's on the training split
when ``train.regression_loss`` is ``relative``) and interference detection
(binary cross-entropy on logits, with the positive class weighted by the
training negatives-to-positives ratio when ``train.class_weight`` is
``balanced``).

Why relative. The scaled KPIs change little from one step to the next, so
the persistence error is small (a mean squared error of 0.03 for RSRP and
SINR, 0.15 for RSRQ, on FccIQ's training split) beside the detection loss
(about 0.3): in plain scaled units detection drives the shared layers and
the regression towers stop learning early. Divided by persistence, each
regression loss starts near 1 and ``1 - sqrt(loss)`` is its skill.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def task_losses(
    regression: torch.Tensor,
    logits: torch.Tensor,
    target: torch.Tensor,
    label: torch.Tensor,
    pos_weight: torch.Tensor | None,
    regression_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """One loss per task, regression targets first, detection last.

    Each target's mean squared error is divided by its ``regression_scale``
    when one is given (see :func:`persistence_mse`).

    Shapes:
        regression, target: ``[batch, targets]``; logits, label: ``[batch]``;
        regression_scale: ``[targets]``. Returns ``[targets + 1]``.
    """
    mse = ((regression - target) ** 2).mean(dim=0)
    if regression_scale is not None:
        mse = mse / regression_scale
    bce = F.binary_cross_entropy_with_logits(logits, label, pos_weight=pos_weight)
    return torch.cat([mse, bce[None]])


class EqualWeighting(nn.Module):
    """The plain sum of the task losses."""

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        self.num_tasks = num_tasks

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return losses.sum()

    def end_epoch(self, epoch_losses: torch.Tensor) -> None:
        """Called with the epoch's mean training loss per task."""

    def weights(self) -> torch.Tensor:
        return torch.ones(self.num_tasks)


class UncertaintyWeighting(EqualWeighting):
    """Homoscedastic uncertainty weighting (Kendall et al., CVPR 2018).

    Learns ``s_i = log(sigma_i^2)`` per task and minimises
    ``sum_i c_i * exp(-s_i) * L_i + s_i / 2``, with ``c_i = 1/2`` for a
    regression task (Gaussian likelihood) and ``c_i = 1`` for the
    classification task (the paper's eq. 10 approximation).
    """

    factor: torch.Tensor

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)
        self.log_variance = nn.Parameter(torch.zeros(num_tasks))
        factor = torch.full((num_tasks,), 0.5)
        factor[-1] = 1.0
        self.register_buffer("factor", factor)

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        precision = torch.exp(-self.log_variance)
        return (self.factor * precision * losses + 0.5 * self.log_variance).sum()

    def weights(self) -> torch.Tensor:
        return (self.factor * torch.exp(-self.log_variance)).detach()


class DynamicWeightAverage(EqualWeighting):
    """Dynamic weight average (Liu et al., CVPR 2019, eq. 1).

    ``w_i(t) = K * softmax_i(r_i(t-1) / T)`` with the loss ratio
    ``r_i(t-1) = L_i(t-1) / L_i(t-2)`` of epoch-mean training losses; the
    first two epochs weigh every task 1.
    """

    current: torch.Tensor

    def __init__(self, num_tasks: int, temperature: float) -> None:
        super().__init__(num_tasks)
        self.temperature = temperature
        self.history: list[torch.Tensor] = []
        self.register_buffer("current", torch.ones(num_tasks))

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return (self.current * losses).sum()

    def end_epoch(self, epoch_losses: torch.Tensor) -> None:
        self.history = [*self.history[-1:], epoch_losses.detach().clone()]
        if len(self.history) < 2:
            return
        ratio = self.history[1] / self.history[0].clamp_min(1e-12)
        self.current = self.num_tasks * torch.softmax(ratio / self.temperature, dim=0)

    def weights(self) -> torch.Tensor:
        return self.current.clone()


def make_weighting(name: str, num_tasks: int, dwa_temperature: float) -> EqualWeighting:
    """The weighting named by ``train.weighting``."""
    if name == "equal":
        return EqualWeighting(num_tasks)
    if name == "uncertainty":
        return UncertaintyWeighting(num_tasks)
    if name == "dwa":
        return DynamicWeightAverage(num_tasks, dwa_temperature)
    raise ValueError(f"unknown weighting {name!r}")


def persistence_mse(target: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Each target's mean squared error of the persistence forecast.

    A target that never changes (an error of 0) gets 1, so that its loss
    stays the plain squared error.

    Shapes:
        target, last: ``[windows, targets]`` -> ``[targets]``
    """
    mse = ((target - last) ** 2).mean(dim=0)
    return torch.where(mse > 0, mse, torch.ones_like(mse))


def positive_weight(label: torch.Tensor) -> torch.Tensor:
    """Negatives per positive in ``label``; 1 when a class is absent."""
    positives = float(label.sum())
    negatives = float(len(label)) - positives
    if positives == 0 or negatives == 0:
        return torch.tensor(1.0)
    return torch.tensor(negatives / positives)
