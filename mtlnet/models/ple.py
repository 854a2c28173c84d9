"""Progressive layered extraction (Tang et al., RecSys 2020).

PLE stacks ``levels`` extraction levels (the paper's customized gate
control, CGC, at every level). Each level has ``task_experts`` experts of
its own per task and ``shared_experts`` experts for all tasks. Task ``t``'s
gate weighs task ``t``'s experts and the shared experts; every level but
the last also has a shared gate over all experts, whose mix is the shared
input of the next level. At each level, task ``t``'s experts and gate read
task ``t``'s output of the level below, the shared experts and gate read
the shared output of the level below, and at the first level all read the
input window. After the last level, each task has the readout and a tower.

Experts are single GCN layers over the nodes, so a level is one step of
depth: PLE's depth is ``levels``, and ``layers`` does not apply to it.

Shapes:
    x: [batch, window, in_channels]
    -> (regression: [batch, num_targets], interference logits: [batch])
    gate_weights(x):
        "level{l}/{task name}": [batch, task_experts + shared_experts]
        (task experts first), for every level l;
        "level{l}/shared": [batch, tasks * task_experts + shared_experts]
        (task 0's experts, task 1's, ..., then shared), for l < levels - 1
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from mtlnet.config import PLEConfig
from mtlnet.models.backbone import (
    Experts,
    Gate,
    ModelInputs,
    MultiTaskModel,
    mix_experts,
    tower_input,
)


class LevelOutput(NamedTuple):
    """What an extraction level hands to the next one."""

    tasks: list[Tensor]
    shared: Tensor | None
    task_weights: list[Tensor]
    shared_weights: Tensor | None


class ExtractionLevel(nn.Module):
    """One PLE level: task and shared experts, task gates, a shared gate.

    ``shared_gate`` is ``None`` at the last level, whose shared mix nothing
    would read.

    Shapes:
        tasks: tasks x [batch, window, in_channels],
        shared: [batch, window, in_channels], adj: [window, window]
        -> LevelOutput(tasks: tasks x [batch, window, hidden],
                       shared: [batch, window, hidden] or None,
                       task_weights: tasks x [batch, task_experts + shared_experts],
                       shared_weights: [batch, all experts] or None)
    """

    def __init__(
        self,
        config: PLEConfig,
        num_tasks: int,
        in_channels: int,
        *,
        shared_gate: bool,
    ) -> None:
        super().__init__()
        hidden, dropout = config.hidden, config.gcn_dropout
        self.task_experts = nn.ModuleList(
            Experts(in_channels, hidden, 1, config.task_experts, dropout)
            for _ in range(num_tasks)
        )
        self.shared_experts = Experts(
            in_channels, hidden, 1, config.shared_experts, dropout
        )
        self.task_gates = nn.ModuleList(
            Gate(in_channels, config.task_experts + config.shared_experts)
            for _ in range(num_tasks)
        )
        all_experts = num_tasks * config.task_experts + config.shared_experts
        self.shared_gate = Gate(in_channels, all_experts) if shared_gate else None

    def forward(self, tasks: list[Tensor], shared: Tensor, adj: Tensor) -> LevelOutput:
        task_experts = [
            experts(h, adj) for experts, h in zip(self.task_experts, tasks, strict=True)
        ]
        shared_experts = self.shared_experts(shared, adj)

        outputs = []
        task_weights = []
        for gate, h, own in zip(self.task_gates, tasks, task_experts, strict=True):
            weights = gate(h)
            candidates = torch.cat([own, shared_experts], dim=1)
            outputs.append(mix_experts(weights, candidates))
            task_weights.append(weights)

        if self.shared_gate is None:
            return LevelOutput(outputs, None, task_weights, None)
        shared_weights = self.shared_gate(shared)
        candidates = torch.cat([*task_experts, shared_experts], dim=1)
        shared_output = mix_experts(shared_weights, candidates)
        return LevelOutput(outputs, shared_output, task_weights, shared_weights)


class PLE(MultiTaskModel):
    """``levels`` extraction levels, then a readout and tower per task.

    Shapes:
        x: [batch, window, in_channels]
        -> (regression: [batch, num_targets], interference logits: [batch])
        gate_weights(x): see the module docstring
    """

    config_type = PLEConfig

    def __init__(self, config: PLEConfig, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        self.levels = nn.ModuleList(
            ExtractionLevel(
                config,
                self.num_tasks,
                self.in_channels if level == 0 else config.hidden,
                shared_gate=level < config.levels - 1,
            )
            for level in range(config.levels)
        )
        self.towers = self.make_towers(config)

    def task_outputs(
        self, x: Tensor, adj: Tensor
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        tasks = [x] * self.num_tasks
        shared = x
        gates = {}
        for level, extraction in enumerate(self.levels):
            output = extraction(tasks, shared, adj)
            tasks, shared = output.tasks, output.shared
            for name, weights in zip(self.task_names, output.task_weights, strict=True):
                gates[f"level{level}/{name}"] = weights
            if output.shared_weights is not None:
                gates[f"level{level}/shared"] = output.shared_weights

        summary = self.summary(x)
        outputs = [
            tower(tower_input(h, summary))
            for tower, h in zip(self.towers, tasks, strict=True)
        ]
        return outputs, gates
