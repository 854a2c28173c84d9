"""Cross-stitch networks (Misra et al., CVPR 2016).

Each task has its own column, a GCN encoder of ``layers`` layers. After
each layer index in ``stitch_after``, a cross-stitch unit replaces every
column's activation by a learned linear mix of all columns' activations,
``h~_t = sum_s alpha_ts h_s`` (eq. 1 of the paper, there for two tasks,
here for ``T``). The network learns how much to share at each depth: an
identity ``alpha`` gives single-task columns, equal entries one shared
network.

As in the paper, ``alpha`` starts as a convex mix that favours a column's
own task: ``stitch_self`` on the diagonal and ``(1 - stitch_self) / (T -
1)`` elsewhere, so each row sums to one and the activations keep their
scale.

Shapes:
    x: [batch, window, in_channels]
    -> (regression: [batch, num_targets], interference logits: [batch])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtlnet.config import CrossStitchConfig
from mtlnet.models.backbone import (
    GCNLayer,
    ModelInputs,
    MultiTaskModel,
    tower_input,
)


class CrossStitchUnit(nn.Module):
    """A learned ``T x T`` mix of the task columns' activations.

    ``weight[t, s]`` is how much column ``t`` takes from column ``s``.

    Shapes:
        h: [tasks, batch, window, channels] -> [tasks, batch, window, channels]
    """

    def __init__(self, num_tasks: int, stitch_self: float) -> None:
        super().__init__()
        other = (1.0 - stitch_self) / (num_tasks - 1)
        weight = torch.full((num_tasks, num_tasks), other)
        weight.fill_diagonal_(stitch_self)
        self.weight = nn.Parameter(weight)

    def forward(self, h: Tensor) -> Tensor:
        return torch.einsum("ts,sbnc->tbnc", self.weight, h)


class ColumnLayer(nn.Module):
    """Layer ``depth`` of every task's column, each on its own column.

    Shapes:
        h: [tasks, batch, window, in_channels], adj: [window, window]
        -> [tasks, batch, window, out_channels]
    """

    def __init__(
        self, num_tasks: int, in_channels: int, out_channels: int, dropout: float
    ) -> None:
        super().__init__()
        self.columns = nn.ModuleList(
            GCNLayer(in_channels, out_channels, dropout) for _ in range(num_tasks)
        )

    def forward(self, h: Tensor, adj: Tensor) -> Tensor:
        return torch.stack(
            [layer(h_t, adj) for layer, h_t in zip(self.columns, h, strict=True)]
        )


class CrossStitch(MultiTaskModel):
    """One GCN column per task, cross-stitched after the chosen layers.

    ``stitches[str(depth)]`` is the unit after layer ``depth``.

    Shapes:
        x: [batch, window, in_channels]
        -> (regression: [batch, num_targets], interference logits: [batch])
    """

    config_type = CrossStitchConfig

    def __init__(self, config: CrossStitchConfig, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        widths = [self.in_channels] + [config.hidden] * config.layers
        self.layers = nn.ModuleList(
            ColumnLayer(
                self.num_tasks, widths[depth], widths[depth + 1], config.gcn_dropout
            )
            for depth in range(config.layers)
        )
        self.stitches = nn.ModuleDict(
            {
                str(depth): CrossStitchUnit(self.num_tasks, config.stitch_self)
                for depth in sorted(set(config.stitch_after))
            }
        )
        self.towers = self.make_towers(config)

    def task_outputs(
        self, x: Tensor, adj: Tensor
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        h = x.expand(self.num_tasks, *x.shape)
        for depth, layer in enumerate(self.layers):
            h = layer(h, adj)
            if str(depth) in self.stitches:
                h = self.stitches[str(depth)](h)

        summary = self.summary(x)
        outputs = [
            tower(tower_input(h_t, summary))
            for tower, h_t in zip(self.towers, h, strict=True)
        ]
        return outputs, {}
