"""Single-task learning: one network per task, nothing shared.

The reference point of the comparison (``delta_m`` of every multi-task
architecture is measured against it): each task gets its own GCN encoder,
readout and tower, so no task can help or hurt another.

Shapes:
    x: [batch, window, in_channels]
    -> (regression: [batch, num_targets], interference logits: [batch])
"""

from __future__ import annotations

from torch import Tensor, nn

from mtlnet.config import STLConfig
from mtlnet.models.backbone import (
    GCNEncoder,
    ModelInputs,
    MultiTaskModel,
    Tower,
    tower_input,
)


class SingleTaskNetwork(nn.Module):
    """A GCN encoder, the readout and a tower for one task.

    The tower reads the readout beside the window summary of the model.

    Shapes:
        x: [batch, window, in_channels], adj: [window, window],
        summary: [batch, summary_size] -> [batch]
    """

    def __init__(self, config: STLConfig, in_channels: int, tower: Tower) -> None:
        super().__init__()
        self.encoder = GCNEncoder(
            in_channels, config.hidden, config.layers, config.gcn_dropout
        )
        self.tower = tower

    def forward(self, x: Tensor, adj: Tensor, summary: Tensor) -> Tensor:
        return self.tower(tower_input(self.encoder(x, adj), summary))


class STL(MultiTaskModel):
    """One :class:`SingleTaskNetwork` per task, ``T`` in all.

    ``tasks[t]`` holds every parameter task ``t`` uses and no other.

    Shapes:
        x: [batch, window, in_channels]
        -> (regression: [batch, num_targets], interference logits: [batch])
    """

    config_type = STLConfig

    def __init__(self, config: STLConfig, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        self.tasks = nn.ModuleList(
            SingleTaskNetwork(config, self.in_channels, self.tower(config))
            for _ in range(self.num_tasks)
        )

    def task_outputs(
        self, x: Tensor, adj: Tensor
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        summary = self.summary(x)
        return [network(x, adj, summary) for network in self.tasks], {}
