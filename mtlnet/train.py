"""The training loop every architecture shares, and the ``train`` stage.

One loop for all six architectures: Adam with weight decay, mini-batches
of shuffled training windows, the per-task losses of :mod:`mtlnet.losses`
combined by ``train.weighting``, early stopping on the validation split.

The checkpoint kept is the one with the lowest validation loss, the
unweighted sum of the four task losses (the MSE of each KPI, relative to
persistence on the training split by default, plus the class-weighted
cross-entropy). It does not depend on the weighting scheme,
so runs with different weightings are selected by the same rule. The
decision threshold is then chosen on the validation split to maximise F1.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import multiprocessing
import queue
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mtlnet.checkpoint import model_for, save_checkpoint
from mtlnet.config import BackboneConfig, DataConfig, GraphConfig, Params, TrainConfig
from mtlnet.dataset import PreparedData, WindowTensors
from mtlnet.errors import MtlnetError
from mtlnet.io import atomic_dir, write_csv, write_json
from mtlnet.losses import (
    make_weighting,
    persistence_mse,
    positive_weight,
    task_losses,
)
from mtlnet.metrics import best_f1_threshold, classification_metrics, mean_and_std
from mtlnet.models import MultiTaskModel
from mtlnet.models.backbone import INTERFERENCE_TASK

logger = logging.getLogger(__name__)


def task_names(data: DataConfig) -> list[str]:
    """Regression targets first, detection last: the order of the losses."""
    return [*data.targets, INTERFERENCE_TASK]


@dataclass
class TrainResult:
    """A finished run: the best model and how training went."""

    model: MultiTaskModel
    history: list[dict[str, float]]
    best_epoch: int
    threshold: float
    train_time_s: float
    best_val: dict[str, float] = field(default_factory=dict)

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    @property
    def epoch_time_s(self) -> float:
        return self.train_time_s / max(self.epochs_run, 1)


EpochCallback = Callable[[dict[str, float]], None]


@torch.no_grad()
def predict(
    model: MultiTaskModel, x: torch.Tensor, batch_size: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled forecasts ``[windows, targets]`` and probabilities ``[windows]``."""
    model.eval()
    regression, logits = [], []
    for start in range(0, len(x), batch_size):
        r, c = model(x[start : start + batch_size])
        regression.append(r)
        logits.append(c)
    if not regression:
        return torch.zeros(0, model.num_targets), torch.zeros(0)
    return torch.cat(regression), torch.sigmoid(torch.cat(logits))


@torch.no_grad()
def evaluate_losses(
    model: MultiTaskModel,
    split: WindowTensors,
    pos_weight: torch.Tensor | None,
    regression_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-task losses on a split and its detection probabilities."""
    model.eval()
    regression, logits = model(split.x)
    losses = task_losses(
        regression, logits, split.target, split.label, pos_weight, regression_scale
    )
    return losses, torch.sigmoid(logits)


def train_model(
    *,
    architecture: str,
    arch_config: BackboneConfig,
    train: TrainConfig,
    data: DataConfig,
    graph: GraphConfig,
    train_set: WindowTensors,
    val_set: WindowTensors,
    seed: int,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train one architecture with one seed; deterministic on CPU."""
    if len(train_set) == 0 or len(val_set) == 0:
        raise MtlnetError(
            f"training needs windows in both train and val splits "
            f"(found {len(train_set)} and {len(val_set)}); check data.* params"
        )
    torch.manual_seed(seed)
    model = model_for(architecture, arch_config, data, graph)
    names = task_names(data)
    weighting = make_weighting(train.weighting, len(names), train.dwa_temperature)
    optimizer = torch.optim.Adam(
        [*model.parameters(), *weighting.parameters()],
        lr=train.lr,
        weight_decay=train.weight_decay,
    )
    pos_weight = (
        positive_weight(train_set.label) if train.class_weight == "balanced" else None
    )
    regression_scale = (
        persistence_mse(train_set.target, train_set.last)
        if train.regression_loss == "relative"
        else None
    )
    shuffle = torch.Generator().manual_seed(seed)

    history: list[dict[str, float]] = []
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(model.state_dict())
    best_losses: torch.Tensor | None = None
    best_probability: torch.Tensor | None = None
    started = time.perf_counter()
    for epoch in range(1, train.epochs + 1):
        epoch_started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_set), generator=shuffle)
        totals = torch.zeros(len(names))
        for start in range(0, len(order), train.batch_size):
            batch = order[start : start + train.batch_size]
            regression, logits = model(train_set.x[batch])
            losses = task_losses(
                regression,
                logits,
                train_set.target[batch],
                train_set.label[batch],
                pos_weight,
                regression_scale,
            )
            check_finite(losses, names, epoch)
            optimizer.zero_grad(set_to_none=True)
            weighting(losses).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
            optimizer.step()
            totals += losses.detach() * len(batch)
        train_losses = totals / len(order)
        weighting.end_epoch(train_losses)

        val_losses, val_probability = evaluate_losses(
            model, val_set, pos_weight, regression_scale
        )
        check_finite(val_losses, names, epoch, split="validation")
        val_loss = float(val_losses.sum())
        val_f1 = classification_metrics(
            val_set.label.numpy(), val_probability.numpy(), 0.5
        )["f1"]
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
            # The kept checkpoint's validation figures, so that they need
            # no second pass once it is loaded back.
            best_losses, best_probability = val_losses, val_probability
        record = {
            "epoch": epoch,
            **{
                f"train_loss_{n}": float(v)
                for n, v in zip(names, train_losses, strict=True)
            },
            **{
                f"val_loss_{n}": float(v)
                for n, v in zip(names, val_losses, strict=True)
            },
            "train_loss": float(train_losses.sum()),
            "val_loss": val_loss,
            "val_f1": val_f1,
            "best_epoch": best_epoch,
            "epoch_time_s": time.perf_counter() - epoch_started,
        }
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if epoch - best_epoch >= train.patience:
            break
    train_time_s = time.perf_counter() - started

    model.load_state_dict(best_state)
    # Epoch 1 always improves on an infinite loss, so these are set.
    assert best_losses is not None and best_probability is not None
    threshold = best_f1_threshold(val_set.label.numpy(), best_probability.numpy())
    scores = classification_metrics(
        val_set.label.numpy(), best_probability.numpy(), threshold
    )
    best_val = {
        "loss": float(best_losses.sum()),
        "threshold": threshold,
        "f1": scores["f1"],
        "auroc": scores["auroc"],
        **{f"loss_{n}": float(v) for n, v in zip(names, best_losses, strict=True)},
    }
    return TrainResult(model, history, best_epoch, threshold, train_time_s, best_val)


def log_epoch(architecture: str, seed: int, record: dict[str, float]) -> None:
    """The one fixed-format line per epoch."""
    logger.info(
        "%s seed %d  epoch %4d  train %.4f  val %.4f  val_f1 %.3f  best %4d  %.2fs",
        architecture,
        seed,
        record["epoch"],
        record["train_loss"],
        record["val_loss"],
        record["val_f1"],
        record["best_epoch"],
        record["epoch_time_s"],
    )


def check_finite(
    losses: torch.Tensor, names: list[str], epoch: int, split: str = "training"
) -> None:
    """Stop with a clear message instead of training on (or saving) NaNs."""
    bad = ~torch.isfinite(losses)
    if bad.any():
        index = int(torch.nonzero(bad)[0])
        value = float(losses[index].detach())
        raise MtlnetError(
            f"epoch {epoch}: the {split} loss of task {names[index]!r} is "
            f"{value}; training stopped, no checkpoint written "
            "(try a lower train.lr)"
        )


@dataclass(frozen=True)
class TrainJob:
    """One architecture and one seed to train."""

    architecture: str
    arch_config: BackboneConfig
    train: TrainConfig
    data: DataConfig
    graph: GraphConfig
    seed: int

    def run(
        self,
        train_set: WindowTensors,
        val_set: WindowTensors,
        on_epoch: EpochCallback | None,
    ) -> TrainResult:
        torch.set_num_threads(self.train.threads)
        return train_model(
            architecture=self.architecture,
            arch_config=self.arch_config,
            train=self.train,
            data=self.data,
            graph=self.graph,
            train_set=train_set,
            val_set=val_set,
            seed=self.seed,
            on_epoch=on_epoch,
        )


def train_jobs(
    jobs: list[TrainJob],
    train_set: WindowTensors,
    val_set: WindowTensors,
    on_epoch: Callable[[int, dict[str, float]], None],
) -> list[TrainResult]:
    """Run the jobs, ``train.workers`` at a time, in order of their seeds.

    Small GCNs use one core poorly, so two one-thread processes train two
    seeds in about the time one two-thread process trains one. Each job is
    seeded by itself, so the results do not depend on the number of
    workers. Workers report epochs through a queue; this process logs them.
    """
    workers = min(jobs[0].train.workers, len(jobs)) if jobs else 1
    if workers <= 1:
        return [
            job.run(train_set, val_set, functools.partial(on_epoch, job.seed))
            for job in jobs
        ]
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        epochs = manager.Queue()
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [
                pool.submit(_run_in_worker, job, train_set, val_set, epochs)
                for job in jobs
            ]
            while not all(f.done() for f in futures) or not epochs.empty():
                try:
                    seed, record = epochs.get(timeout=0.2)
                except queue.Empty:
                    continue
                on_epoch(seed, record)
            return [f.result() for f in futures]


def _run_in_worker(
    job: TrainJob,
    train_set: WindowTensors,
    val_set: WindowTensors,
    epochs: queue.Queue[tuple[int, dict[str, float]]],
) -> TrainResult:
    return job.run(train_set, val_set, lambda record: epochs.put((job.seed, record)))


def run_train_stage(
    *,
    params: Params,
    architecture: str,
    prepared_dir: Path,
    train_dir: Path,
    metrics_path: Path,
    plot_path: Path,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train ``architecture`` once per seed and write the stage outputs.

    ``plots/train/<m>.csv`` holds the epochs of the first seed; every
    seed's epochs are kept beside its checkpoint.
    """
    arch_config = params.arch.get(architecture)
    prepared = PreparedData.load(prepared_dir, params.data)
    train_set, val_set = prepared.split("train"), prepared.split("val")

    def report(seed: int, record: dict[str, float]) -> None:
        log_epoch(architecture, seed, record)
        if on_epoch is not None:
            on_epoch(seed, record)

    jobs = [
        TrainJob(
            architecture, arch_config, params.train, params.data, params.graph, seed
        )
        for seed in params.seed_list()
    ]
    results = train_jobs(jobs, train_set, val_set, report)

    with atomic_dir(train_dir / architecture) as tmp:
        for seed, result in zip(params.seed_list(), results, strict=True):
            save_checkpoint(
                tmp / f"seed_{seed}.pt",
                model=result.model,
                architecture=architecture,
                arch_config=arch_config,
                data=params.data,
                graph=params.graph,
                threshold=result.threshold,
                seed=seed,
                extra={
                    "best_epoch": result.best_epoch,
                    "val_loss": result.best_val["loss"],
                },
            )
            write_csv(tmp / f"seed_{seed}_history.csv", pd.DataFrame(result.history))

    runs = [run_metrics(result) for result in results]
    summary = mean_and_std(runs)
    write_json(metrics_path, summary)
    write_csv(plot_path, plot_frame(results[0].history))
    return summary


def run_metrics(result: TrainResult) -> dict[str, Any]:
    """The figures of one run, as written to ``metrics/train/<m>.json``."""
    return {
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "train_time_s": result.train_time_s,
        "epoch_time_s": result.epoch_time_s,
        "val": result.best_val,
    }


def plot_frame(history: list[dict[str, float]]) -> pd.DataFrame:
    """Per-epoch losses and validation F1, without timings (stable diffs)."""
    frame = pd.DataFrame(history)
    keep = [c for c in frame.columns if c != "epoch_time_s" and c != "best_epoch"]
    return frame[keep].astype({"epoch": np.int64})
