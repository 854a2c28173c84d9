"""Multi-gate mixture of experts (Ma et al., KDD 2018).

``experts`` GCN encoders read the input window; each task has a gate that
reads the same input and weighs the experts with a softmax, and the task's
tower reads that mixture: ``f_t(x) = sum_e g_t(x)_e f_e(x)``. Tasks share
the experts but choose, per window, how much of each to use.

Shapes:
    x: [batch, window, in_channels]
    -> (regression: [batch, num_targets], interference logits: [batch])
    gate_weights(x): {task name: [batch, experts]}
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mtlnet.config import MMoEConfig
from mtlnet.models.backbone import (
    Experts,
    Gate,
    MultiTaskModel,
    Tower,
    mix_experts,
    readout,
)


class MMoE(MultiTaskModel):
    """Shared GCN experts, one softmax gate and one tower per task.

    Each expert is a :class:`GCNEncoder` of ``layers`` layers; gate ``t``
    reads the raw window (its last step and mean).

    Shapes:
        x: [batch, window, in_channels]
        -> (regression: [batch, num_targets], interference logits: [batch])
        gate_weights(x): {task name: [batch, experts]}
    """

    config_type = MMoEConfig

    def __init__(
        self,
        config: MMoEConfig,
        *,
        in_channels: int,
        window: int,
        edge_index: Tensor,
        num_targets: int,
        last_value_channels: Sequence[int] = (),
    ) -> None:
        super().__init__(
            config,
            in_channels=in_channels,
            window=window,
            edge_index=edge_index,
            num_targets=num_targets,
            last_value_channels=last_value_channels,
        )
        self.experts = Experts(
            in_channels, config.hidden, config.layers, config.experts, config.dropout
        )
        self.gates = nn.ModuleList(
            Gate(in_channels, config.experts) for _ in range(self.num_tasks)
        )
        self.towers = nn.ModuleList(
            Tower(2 * config.hidden, config.tower_hidden, config.dropout)
            for _ in range(self.num_tasks)
        )

    def task_outputs(
        self, x: Tensor, adj: Tensor
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        experts = self.experts(x, adj)

        outputs = []
        gates = {}
        for name, gate, tower in zip(
            self.task_names, self.gates, self.towers, strict=True
        ):
            weights = gate(x)
            gates[name] = weights
            outputs.append(tower(readout(mix_experts(weights, experts))))
        return outputs, gates
