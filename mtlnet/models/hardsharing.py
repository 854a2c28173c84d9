"""Hard parameter sharing: one GCN encoder for all tasks, a tower each.

The classic multi-task network (Caruana, 1997): every task reads the same
representation, so the encoder is trained by the sum of all task losses.

Shapes:
    x: [batch, window, in_channels]
    -> (regression: [batch, num_targets], interference logits: [batch])
"""

from __future__ import annotations

from torch import Tensor

from mtlnet.config import HardSharingConfig
from mtlnet.models.backbone import (
    GCNEncoder,
    ModelInputs,
    MultiTaskModel,
    tower_input,
)


class HardSharing(MultiTaskModel):
    """A shared :class:`GCNEncoder`, its readout, and one tower per task.

    Shapes:
        x: [batch, window, in_channels]
        -> (regression: [batch, num_targets], interference logits: [batch])
    """

    config_type = HardSharingConfig

    def __init__(self, config: HardSharingConfig, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        self.encoder = GCNEncoder(
            self.in_channels, config.hidden, config.layers, config.gcn_dropout
        )
        self.towers = self.make_towers(config)

    def task_outputs(
        self, x: Tensor, adj: Tensor
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        shared = tower_input(self.encoder(x, adj), self.summary(x))
        return [tower(shared) for tower in self.towers], {}
