"""Hard parameter sharing: one GCN encoder for all tasks, a tower each.

The classic multi-task network (Caruana, 1997): every task reads the same
representation, so the encoder is trained by the sum of all task losses.

Shapes:
    x: [batch, window, in_channels]
    -> (regression: [batch, num_targets], interference logits: [batch])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtlnet.config import HardSharingConfig
from mtlnet.models.backbone import GCNEncoder, ModelInputs, MultiTaskModel, readout


class HardSharing(MultiTaskModel):
    """A shared :class:`GCNEncoder`, its readout, and one tower per task.

    Shapes:
        x: [batch, window, in_channels]
        -> (regression: [batch, num_targets], interference logits: [batch])
    """

    config_type = HardSharingConfig

    def __init__(self, config: HardSharingConfig, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        in_channels = inputs.in_channels
        self.encoder = GCNEncoder(
            in_channels, config.hidden, config.layers, config.gcn_dropout
        )
        self.towers = nn.ModuleList(
            self.tower(config, 2 * config.hidden) for _ in range(self.num_tasks)
        )

    def task_outputs(
        self, x: Tensor, adj: Tensor
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        shared = torch.cat([readout(self.encoder(x, adj)), self.summary(x)], dim=-1)
        return [tower(shared) for tower in self.towers], {}
