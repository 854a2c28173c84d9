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

from torch import Tensor, nn

from mtlnet.config import MMoEConfig
from mtlnet.models.backbone import (
    Experts,
    Gate,
    ModelInputs,
    MultiTaskModel,
    mix_experts,
    tower_input,
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

    def __init__(self, config: MMoEConfig, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        self.experts = Experts(
            self.in_channels,
            config.hidden,
            config.layers,
            config.experts,
            config.gcn_dropout,
        )
        self.gates = nn.ModuleList(
            Gate(self.in_channels, config.experts) for _ in range(self.num_tasks)
        )
        self.towers = self.make_towers(config)

    def task_outputs(
        self, x: Tensor, adj: Tensor
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        experts = self.experts(x, adj)
        summary = self.summary(x)

        outputs = []
        gates = {}
        for name, gate, tower in zip(
            self.task_names, self.gates, self.towers, strict=True
        ):
            weights = gate(x)
            gates[name] = weights
            mixed = mix_experts(weights, experts)
            outputs.append(tower(tower_input(mixed, summary)))
        return outputs, gates
