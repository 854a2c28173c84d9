"""Hard parameter sharing: one GCN encoder for all tasks, a tower each.

The classic multi-task network (Caruana, 1997): every task reads the same
representation, so the encoder is trained by the sum of all task losses.

Shapes:
    x: [batch, window, in_channels]
    -> (regression: [batch, num_targets], interference logits: [batch])
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mtlnet.config import HardSharingConfig
from mtlnet.models.backbone import GCNEncoder, MultiTaskModel, Tower, readout


class HardSharing(MultiTaskModel):
    """A shared :class:`GCNEncoder`, its readout, and one tower per task.

    Shapes:
        x: [batch, window, in_channels]
        -> (regression: [batch, num_targets], interference logits: [batch])
    """

    config_type = HardSharingConfig

    def __init__(
        self,
        config: HardSharingConfig,
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
        self.encoder = GCNEncoder(
            in_channels, config.hidden, config.layers, config.dropout
        )
        self.towers = nn.ModuleList(
            Tower(2 * config.hidden, config.tower_hidden, config.dropout)
            for _ in range(self.num_tasks)
        )

    def task_outputs(
        self, x: Tensor, adj: Tensor
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        shared = readout(self.encoder(x, adj))
        return [tower(shared) for tower in self.towers], {}
