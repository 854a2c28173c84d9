"""The multi-task architectures compared, by name, and how to build one.

Every model maps ``x: [batch, window, in_channels]`` to
``(regression: [batch, num_targets], interference logits: [batch])`` on a
GCN backbone over one shared window graph (see
:mod:`mtlnet.models.backbone`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torch import Tensor

from mtlnet.config import BackboneConfig, require_architecture
from mtlnet.models.attention import TaskAttention
from mtlnet.models.backbone import ModelInputs, MultiTaskModel, count_parameters
from mtlnet.models.crossstitch import CrossStitch
from mtlnet.models.hardsharing import HardSharing
from mtlnet.models.mmoe import MMoE
from mtlnet.models.ple import PLE
from mtlnet.models.stl import STL

__all__ = ["MODELS", "MultiTaskModel", "build_model", "count_parameters"]

logger = logging.getLogger(__name__)

MODELS: dict[str, type[MultiTaskModel]] = {
    "stl": STL,
    "hardsharing": HardSharing,
    "mmoe": MMoE,
    "crossstitch": CrossStitch,
    "ple": PLE,
    "attention": TaskAttention,
}


def build_model(
    name: str,
    config: BackboneConfig,
    *,
    in_channels: int,
    window: int,
    edge_index: Tensor,
    num_targets: int,
    last_value_channels: Sequence[int] = (),
    summary_channels: Sequence[int] = (),
) -> MultiTaskModel:
    """The architecture ``name`` built from its config.

    ``config`` must be that architecture's config class (e.g.
    :class:`~mtlnet.config.MMoEConfig` for ``"mmoe"``); an unknown name or
    a config of another class raises :class:`~mtlnet.errors.MtlnetError`.
    With ``last_value_channels`` (the input channel of each target), the
    regression outputs are the last observed values plus what the towers
    add: a forecast of the change. With ``summary_channels``, every tower
    also reads those channels' window summary. Parameters are drawn from
    torch's global generator: seed it first.
    """
    require_architecture(name)
    inputs = ModelInputs(
        in_channels=in_channels,
        window=window,
        edge_index=edge_index,
        num_targets=num_targets,
        last_value_channels=tuple(last_value_channels),
        summary_channels=tuple(summary_channels),
    )
    model = MODELS[name](config, inputs)
    logger.info("built %s: %d parameters", name, count_parameters(model))
    return model
