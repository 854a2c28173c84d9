"""Task-specific attention over a shared GCN's node embeddings.

One GCN encoder is shared; each task reads its node embeddings through its
own attention: a learned query per task attends over the window's nodes
with scaled dot-product, multi-head attention (Vaswani et al., NeurIPS
2017, eq. 1 and Sec. 3.2.2), keys and values projected from the node
embeddings. Learned queries as a pooling of a set follow Lee et al.'s
pooling by multi-head attention (Set Transformer, ICML 2019). Each task
thus chooses which time steps to read. Attention pools without regard to
order, so each tower also gets the last node's embedding: where the window
ends.

The key and value projections are shared by the tasks; what makes the
attention task-specific is the query. This keeps the model's size near
hard sharing's.

Shapes:
    x: [batch, window, in_channels]
    -> (regression: [batch, num_targets], interference logits: [batch])
    gate_weights(x): {task name: [batch, heads, window]}
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mtlnet.config import AttentionConfig
from mtlnet.models.backbone import GCNEncoder, ModelInputs, MultiTaskModel


class MultiHeadTaskAttention(nn.Module):
    """One learned query per task, attending over the nodes with ``heads``.

    Shapes:
        h: [batch, window, channels]
        -> (attended: [batch, tasks, channels],
            weights: [batch, tasks, heads, window], summing to 1 over window)
    """

    def __init__(self, channels: int, heads: int, num_tasks: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_channels = channels // heads
        self.query = nn.Parameter(torch.randn(num_tasks, channels))
        self.key = nn.Linear(channels, channels)
        self.value = nn.Linear(channels, channels)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        batch, window, channels = h.shape
        num_tasks = self.query.size(0)
        per_head = (self.heads, self.head_channels)

        query = self.query.view(num_tasks, *per_head)
        key = self.key(h).view(batch, window, *per_head)
        value = self.value(h).view(batch, window, *per_head)

        scores = torch.einsum("thc,bnhc->bthn", query, key)
        weights = torch.softmax(scores / math.sqrt(self.head_channels), dim=-1)
        attended = torch.einsum("bthn,bnhc->bthc", weights, value)
        return attended.reshape(batch, num_tasks, channels), weights


class TaskAttention(MultiTaskModel):
    """A shared :class:`GCNEncoder`, task attention, one tower per task.

    Tower ``t`` reads task ``t``'s attended vector beside the last node's
    embedding and the window summary.

    Shapes:
        x: [batch, window, in_channels]
        -> (regression: [batch, num_targets], interference logits: [batch])
        gate_weights(x): {task name: [batch, heads, window]}
    """

    config_type = AttentionConfig

    def __init__(self, config: AttentionConfig, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        self.encoder = GCNEncoder(
            self.in_channels, config.hidden, config.layers, config.gcn_dropout
        )
        self.attention = MultiHeadTaskAttention(
            config.hidden, config.heads, self.num_tasks
        )
        self.towers = self.make_towers(config)

    def task_outputs(
        self, x: Tensor, adj: Tensor
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        h = self.encoder(x, adj)
        attended, weights = self.attention(h)

        last, summary = h[:, -1], self.summary(x)
        outputs = [
            tower(torch.cat([attended[:, t], last, summary], dim=-1))
            for t, tower in enumerate(self.towers)
        ]
        gates = {name: weights[:, t] for t, name in enumerate(self.task_names)}
        return outputs, gates
