"""Single-task learning: one network per task, nothing shared.

The reference point of the comparison (``delta_m`` of every multi-task
architecture is measured against it): each task gets its own GCN encoder,
readout and tower, so no task can help or hurt another.

Shapes:
    x: [batch, window, in_channels]
    -> (regression: [batch, num_targets], interference logits: [batch])
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mtlnet.config import STLConfig
from mtlnet.models.backbone import GCNEncoder, MultiTaskModel, Tower, readout


class SingleTaskNetwork(nn.Module):
    """A GCN encoder, the readout and a tower for one task.

    Shapes:
        x: [batch, window, in_channels], adj: [window, window] -> [batch]
    """

    def __init__(self, config: STLConfig, in_channels: int) -> None:
        super().__init__()
        self.encoder = GCNEncoder(
            in_channels, config.hidden, config.layers, config.dropout
        )
        self.tower = Tower(2 * config.hidden, config.tower_hidden, config.dropout)

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        return self.tower(readout(self.encoder(x, adj)))


class STL(MultiTaskModel):
    """One :class:`SingleTaskNetwork` per task, ``T`` in all.

    ``tasks[t]`` holds every parameter task ``t`` uses and no other.

    Shapes:
        x: [batch, window, in_channels]
        -> (regression: [batch, num_targets], interference logits: [batch])
    """

    config_type = STLConfig

    def __init__(
        self,
        config: STLConfig,
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
        self.tasks = nn.ModuleList(
            SingleTaskNetwork(config, in_channels) for _ in range(self.num_tasks)
        )

    def task_outputs(
        self, x: Tensor, adj: Tensor
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        return [network(x, adj) for network in self.tasks], {}
