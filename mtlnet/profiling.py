"""The ``profile`` stage: size, FLOPs, latency and throughput of a model.

FLOPs are counted for one window (batch 1) in eval mode with thop, which
hooks leaf ``nn.Module`` s such as ``nn.Linear`` and sees nothing else. The
work it does not see is added through ``custom_ops``, one count per module
class that does it:

- ``DenseGCNConv``: its weight (a torch_geometric ``Linear``, unknown to
  thop) and the propagation ``adj @ (x W)``, counted dense as executed:
  ``window * window * out_channels`` per window, zeros of ``adj`` included.
  Adding self-loops and the ``D^-1/2 (A + I) D^-1/2`` normalisation are
  element-wise on a ``[window, window]`` matrix and the bias add is
  element-wise too; like every element-wise op they are not counted (a few
  thousand operations beside hundreds of thousands of MACs).
- ``CrossStitchUnit``: the ``T x T`` mix of the task columns.
- ``MultiHeadTaskAttention``: the key and value projections, the query-key
  scores and the weighted sum of the values.
- ``ExtractionLevel`` (PLE) and ``MMoE``: the gate-weighted sums of expert
  outputs (:func:`mtlnet.models.backbone.mix_experts`), ``experts`` MACs
  per mixed entry. With a single expert torch runs that einsum as an
  element-wise product, which ``FlopCounterMode`` leaves out; it is still
  counted here, so the two differ for ``arch.mmoe.experts: 1`` alone.

Convention: ``macs`` are multiply-accumulates (what thop counts), and
``flops = 2 * macs``, the convention of ``torch.utils.flop_counter`` (one
multiply and one add per MAC). Softmax, ReLU, means, bias adds and other
element-wise ops are counted by neither, so ``flops`` is the matrix-product
work of a forward pass; ``tests/test_profiling.py`` checks it against
``FlopCounterMode`` for every architecture.

Timings are wall-clock medians and tails of ``time.perf_counter`` on this
machine and vary with it; they are reported, never asserted.
"""

from __future__ import annotations

import copy
import io
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import thop
import torch
from torch import Tensor, nn
from torch_geometric.nn import DenseGCNConv

from mtlnet.checkpoint import checkpoint_path, load_checkpoint
from mtlnet.config import Params
from mtlnet.errors import MtlnetError
from mtlnet.io import read_metrics, write_json
from mtlnet.models import MultiTaskModel, count_parameters
from mtlnet.models.attention import MultiHeadTaskAttention
from mtlnet.models.crossstitch import CrossStitchUnit
from mtlnet.models.mmoe import MMoE
from mtlnet.models.ple import ExtractionLevel, LevelOutput

logger = logging.getLogger(__name__)

MIB = 2**20
TRAIN_TIMES = ("train_time_s", "epoch_time_s")


def _add_macs(module: nn.Module, macs: int) -> None:
    # thop registers ``total_ops`` (float64, [1]) on every module it hooks.
    module.get_buffer("total_ops").add_(float(macs))


def _linear_macs(linear: nn.Linear, rows: int) -> int:
    """What thop counts for ``nn.Linear``: ``rows * in * out``, bias left out."""
    return rows * linear.in_features * linear.out_features


def _gcn_conv_macs(conv: DenseGCNConv, rows: int, num_nodes: int) -> int:
    """The weight ``x W`` and the dense propagation ``adj @ (x W)``.

    ``rows`` is ``batch * num_nodes``: every node is transformed, then every
    node sums over all ``num_nodes`` columns of its row of ``adj``.
    """
    transform = rows * conv.in_channels * conv.out_channels
    propagate = rows * num_nodes * conv.out_channels
    return transform + propagate


def _count_gcn_conv(
    conv: DenseGCNConv, inputs: tuple[Tensor, Tensor], output: Tensor
) -> None:
    _, adj = inputs
    rows = output.numel() // conv.out_channels
    _add_macs(conv, _gcn_conv_macs(conv, rows, adj.size(-1)))


def _count_cross_stitch(
    unit: CrossStitchUnit, inputs: tuple[Tensor], output: Tensor
) -> None:
    (h,) = inputs
    # Each of the T output columns is a weighted sum of all T input columns.
    _add_macs(unit, unit.weight.size(0) * h.numel())


def _count_task_attention(
    attention: MultiHeadTaskAttention,
    inputs: tuple[Tensor],
    output: tuple[Tensor, Tensor],
) -> None:
    (h,) = inputs
    _, weights = output
    batch, window, _ = h.shape

    # thop does not descend below a module with a custom op, so the key and
    # value projections are counted here.
    projections = _linear_macs(attention.key, batch * window) + _linear_macs(
        attention.value, batch * window
    )
    # weights: [batch, tasks, heads, window]; a score and a weighted value
    # each take head_channels MACs per entry.
    scores = weights.numel() * attention.head_channels
    values = weights.numel() * attention.head_channels
    _add_macs(attention, projections + scores + values)


def _count_extraction_level(
    level: ExtractionLevel,
    inputs: tuple[list[Tensor], Tensor, Tensor],
    output: LevelOutput,
) -> None:
    _, shared, _ = inputs
    batch, window, _ = shared.shape

    # thop does not descend below a module with a custom op, so the experts'
    # convolutions and the gates' linears of the level are counted here.
    convs = sum(
        _gcn_conv_macs(module, batch * window, window)
        for module in level.modules()
        if isinstance(module, DenseGCNConv)
    )
    # Gates read the readout of their input: one row per window.
    gates = sum(
        _linear_macs(module, batch)
        for module in level.modules()
        if isinstance(module, nn.Linear)
    )
    mixes = [
        *zip(output.task_weights, output.tasks, strict=True),
        *(
            []
            if output.shared_weights is None or output.shared is None
            else [(output.shared_weights, output.shared)]
        ),
    ]
    # weights: [batch, experts], mix: [batch, window, hidden]: every entry of
    # the mix sums over the experts.
    mixing = sum(weights.size(-1) * mix.numel() for weights, mix in mixes)
    _add_macs(level, convs + gates + mixing)


def _count_mmoe(model: MMoE, inputs: tuple[Tensor], output: object) -> None:
    (x,) = inputs
    experts = len(model.experts.experts)
    convs = [m for m in model.experts.modules() if isinstance(m, DenseGCNConv)]
    hidden = convs[-1].out_channels
    # Only the mixing, done in MMoE's own forward: thop adds the root
    # module's own count to the counts of its children, which it recurses
    # into as usual. count_flops always profiles the model as the root.
    per_task = x.size(0) * experts * model.window * hidden
    _add_macs(model, model.num_tasks * per_task)


CUSTOM_OPS: dict[type[nn.Module], Callable[..., None]] = {
    DenseGCNConv: _count_gcn_conv,
    CrossStitchUnit: _count_cross_stitch,
    MultiHeadTaskAttention: _count_task_attention,
    ExtractionLevel: _count_extraction_level,
    MMoE: _count_mmoe,
}


def count_flops(model: MultiTaskModel) -> dict[str, int]:
    """MACs and FLOPs of one forward pass on one window (batch 1, eval).

    ``macs`` are multiply-accumulates of every matrix product, the graph
    convolution's message passing included; ``flops = 2 * macs``.
    Element-wise ops are not counted (see the module docstring). The model
    is profiled on a deep copy, so thop's hooks and buffers never touch it.
    """
    probe = copy.deepcopy(model).eval()
    x = torch.zeros(1, model.window, model.in_channels)
    # One window's products are too small to gain from threads, and waking a
    # thread pool on a busy machine costs milliseconds per product.
    with torch_threads(1):
        macs, _ = thop.profile(probe, inputs=(x,), custom_ops=CUSTOM_OPS, verbose=False)
    macs = round(macs)
    return {"macs": macs, "flops": 2 * macs}


def size_mb(model: nn.Module) -> float:
    """The size of the serialised state dict, in MiB (``2**20`` bytes).

    What ``torch.save(model.state_dict())`` writes: the parameters and the
    buffers (the window's ``edge_index``), plus the archive's own overhead.
    """
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / MIB


def trainable_parameters(model: nn.Module) -> int:
    """The number of scalars in parameters that take gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def measure_latency(
    model: nn.Module,
    window: int,
    in_channels: int,
    *,
    warmup: int,
    runs: int,
    threads: int,
) -> dict[str, float]:
    """Inference latency on one window (batch 1), in milliseconds.

    ``warmup`` untimed forward passes, then ``runs`` timed one by one with
    ``time.perf_counter``, under ``torch.inference_mode`` in eval mode on
    ``threads`` intra-op threads. The model's mode and torch's thread count
    are restored afterwards.

    Returns:
        ``latency_ms_p50``, ``latency_ms_p99`` (percentiles over the runs)
        and ``threads``.
    """
    if warmup < 0 or runs < 1:
        raise ValueError(f"need warmup >= 0 and runs >= 1, got {warmup}, {runs}")
    x = torch.randn(1, window, in_channels, generator=torch.Generator().manual_seed(0))

    def one_pass() -> None:
        model(x)

    times_s, used = _timed(model, one_pass, warmup=warmup, runs=runs, threads=threads)
    p50, p99 = np.percentile(np.asarray(times_s) * 1e3, [50, 99])
    return {"latency_ms_p50": float(p50), "latency_ms_p99": float(p99), "threads": used}


def measure_throughput(
    model: nn.Module,
    window: int,
    in_channels: int,
    *,
    batch: int,
    runs: int,
    threads: int,
) -> float:
    """Windows per second on batches of ``batch`` windows.

    One untimed pass, then ``runs`` timed ones under ``torch.inference_mode``
    in eval mode on ``threads`` threads; ``batch`` over the median pass
    time, which a single slow pass does not move. The model's mode and
    torch's thread count are restored afterwards.
    """
    if batch < 1 or runs < 1:
        raise ValueError(f"need batch >= 1 and runs >= 1, got {batch}, {runs}")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, window, in_channels, generator=generator)

    def one_pass() -> None:
        model(x)

    times_s, _ = _timed(model, one_pass, warmup=1, runs=runs, threads=threads)
    return batch / float(np.median(times_s))


def _timed(
    model: nn.Module,
    one_pass: Callable[[], None],
    *,
    warmup: int,
    runs: int,
    threads: int,
) -> tuple[list[float], int]:
    """Seconds of each timed pass, and the thread count they ran on."""
    was_training = model.training
    model.eval()
    try:
        with torch_threads(threads), torch.inference_mode():
            for _ in range(warmup):
                one_pass()
            times_s = []
            for _ in range(runs):
                started = time.perf_counter()
                one_pass()
                times_s.append(time.perf_counter() - started)
            used = torch.get_num_threads()
    finally:
        model.train(was_training)
    return times_s, used


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block on ``threads`` intra-op threads, then restore the count."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_profile_stage(
    *,
    params: Params,
    architecture: str,
    train_dir: Path,
    train_metrics_path: Path,
    metrics_path: Path,
) -> dict[str, Any]:
    """Profile the first seed's checkpoint and write ``metrics/profile/<m>.json``.

    Sizes and FLOPs are those of the checkpoint's model; ``train_time_s``
    and ``epoch_time_s`` are the train stage's means over seeds, with their
    standard deviations under ``std``.

    Raises:
        MtlnetError: when the checkpoint or the train metrics are missing
            or lack a figure.
    """
    path = checkpoint_path(train_dir, architecture, params.seed)
    model = load_checkpoint(path, architecture=architecture).model
    train_metrics = read_metrics(train_metrics_path)
    settings = params.profile

    counts = count_flops(model)
    latency = measure_latency(
        model,
        model.window,
        model.in_channels,
        warmup=settings.warmup,
        runs=settings.runs,
        threads=settings.threads,
    )
    throughput = measure_throughput(
        model,
        model.window,
        model.in_channels,
        batch=settings.throughput_batch,
        runs=settings.throughput_runs,
        threads=settings.threads,
    )

    figures: dict[str, Any] = {
        "params": count_parameters(model),
        "trainable_params": trainable_parameters(model),
        "flops": counts["flops"],
        "macs": counts["macs"],
        "size_mb": size_mb(model),
        **latency,
        "throughput_windows_s": throughput,
        **{key: _figure(train_metrics, key, train_metrics_path) for key in TRAIN_TIMES},
        "std": {
            key: _figure(train_metrics.get("std", {}), key, train_metrics_path, "std.")
            for key in TRAIN_TIMES
        },
    }
    write_json(metrics_path, figures)
    logger.info(
        "profile %s: %d params, %.3f MFLOPs, %.3f MiB, latency p50 %.3f ms "
        "p99 %.3f ms, %.0f windows/s, %d threads",
        architecture,
        figures["params"],
        figures["flops"] / 1e6,
        figures["size_mb"],
        figures["latency_ms_p50"],
        figures["latency_ms_p99"],
        figures["throughput_windows_s"],
        figures["threads"],
    )
    return figures


def _figure(tree: Mapping[str, Any], key: str, path: Path, prefix: str = "") -> float:
    value = tree.get(key) if isinstance(tree, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MtlnetError(f"{path}: no number at {prefix}{key}; rerun the train stage")
    return float(value)
