"""The command line: one thin command per pipeline stage.

Each command reads ``params.yaml`` into typed configs and calls one
keyword-only function of the library. A user's mistake (an
:class:`MtlnetError`) ends in one line on standard error and exit code 1.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from mtlnet.config import Params, load_params, require_architecture
from mtlnet.errors import MtlnetError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Multi-task GCN models for 5G interference detection and KPI forecasting.",
)

ParamsOption = Annotated[
    Path, typer.Option("--params", help="The parameter file.", dir_okay=False)
]

P = ParamSpec("P")
R = TypeVar("R")


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn an MtlnetError into one line on stderr and exit code 1."""

    @wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except MtlnetError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None

    return run


@app.callback()
def configure(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logging.")
    ] = False,
) -> None:
    """Multi-task GCN models for 5G interference detection and KPI forecasting."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


@app.command()
@user_errors
def check(params: ParamsOption = Path("params.yaml")) -> None:
    """Validate params.yaml in full and write the resolved params to stages/check/."""
    from mtlnet.config import to_mapping
    from mtlnet.io import write_json

    config = load_params(params)
    write_json(Path("stages/check/params.json"), to_mapping(config))


@app.command()
@user_errors
def prepare(params: ParamsOption = Path("params.yaml")) -> None:
    """Read the recordings under data.dir into stages/prepare/ and metrics/data.json."""
    from mtlnet.prepare import prepare as run_prepare

    config = load_params(params)
    run_prepare(
        data=config.data,
        graph=config.graph,
        output_dir=Path("stages/prepare"),
        metrics_path=Path("metrics/data.json"),
    )


ModelOption = Annotated[
    str, typer.Option("--model", "-m", help="Architecture name (see params models).")
]


def _architecture(config: Params, model: str) -> str:
    require_architecture(model)
    if model not in config.models:
        raise MtlnetError(
            f"--model: {model!r} is not in params models; allowed: "
            f"{', '.join(config.models)}"
        )
    return model


@app.command()
@user_errors
def train(model: ModelOption, params: ParamsOption = Path("params.yaml")) -> None:
    """Train one architecture once per seed: stages/train/<m>/, metrics/train/."""
    from mtlnet.train import run_train_stage

    config = load_params(params)
    name = _architecture(config, model)
    with epoch_progress(config, name) as on_epoch:
        run_train_stage(
            params=config,
            architecture=name,
            prepared_dir=Path("stages/prepare"),
            train_dir=Path("stages/train"),
            metrics_path=Path(f"metrics/train/{name}.json"),
            plot_path=Path(f"plots/train/{name}.csv"),
            on_epoch=on_epoch,
        )


@app.command()
@user_errors
def evaluate(model: ModelOption, params: ParamsOption = Path("params.yaml")) -> None:
    """Score one architecture's checkpoints on the test split: metrics/eval/<m>.json."""
    from mtlnet.evaluate import run_evaluate_stage

    config = load_params(params)
    name = _architecture(config, model)
    run_evaluate_stage(
        params=config,
        architecture=name,
        prepared_dir=Path("stages/prepare"),
        train_dir=Path("stages/train"),
        metrics_path=Path(f"metrics/eval/{name}.json"),
        plot_dir=Path(f"plots/eval/{name}"),
    )


@app.command()
@user_errors
def profile(model: ModelOption, params: ParamsOption = Path("params.yaml")) -> None:
    """Count parameters and FLOPs, time latency and throughput: metrics/profile/."""
    from mtlnet.profiling import run_profile_stage

    config = load_params(params)
    name = _architecture(config, model)
    run_profile_stage(
        params=config,
        architecture=name,
        train_dir=Path("stages/train"),
        train_metrics_path=Path(f"metrics/train/{name}.json"),
        metrics_path=Path(f"metrics/profile/{name}.json"),
    )


@app.command()
@user_errors
def baselines(params: ParamsOption = Path("params.yaml")) -> None:
    """Score majority, SINR-threshold, gradient-boosting and persistence baselines."""
    from mtlnet.baselines import run_baselines_stage

    run_baselines_stage(
        params=load_params(params),
        prepared_dir=Path("stages/prepare"),
        metrics_path=Path("metrics/baselines.json"),
    )


@app.command()
@user_errors
def compare(params: ParamsOption = Path("params.yaml")) -> None:
    """Put every architecture side by side: metrics/compare.json, plots/compare/."""
    from mtlnet.compare import compare as run_compare

    config = load_params(params)
    run_compare(
        models=config.models,
        targets=config.data.targets,
        eval_dir=Path("metrics/eval"),
        profile_dir=Path("metrics/profile"),
        baselines_path=Path("metrics/baselines.json"),
        metrics_path=Path("metrics/compare.json"),
        plot_dir=Path("plots/compare"),
    )


@app.command()
@user_errors
def export(params: ParamsOption = Path("params.yaml")) -> None:
    """Promote the architecture named by the model param to stages/export/."""
    from mtlnet.export import export as run_export

    run_export(
        params=load_params(params),
        prepared_dir=Path("stages/prepare"),
        train_dir=Path("stages/train"),
        eval_dir=Path("metrics/eval"),
        profile_dir=Path("metrics/profile"),
        export_dir=Path("stages/export"),
        metrics_path=Path("metrics/model.json"),
    )


@contextmanager
def epoch_progress(
    config: Params, name: str
) -> Iterator[Callable[[int, dict[str, float]], None] | None]:
    """A progress bar over epochs when stderr is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        tasks: dict[int, Any] = {}

        def on_epoch(seed: int, record: dict[str, float]) -> None:
            if seed not in tasks:
                tasks[seed] = progress.add_task(
                    f"{name} seed {seed}", total=config.train.epochs
                )
            progress.update(tasks[seed], completed=record["epoch"])

        yield on_epoch


@app.command()
@user_errors
def predict(
    input_path: Annotated[
        Path | None,
        typer.Argument(
            metavar="INPUT.csv",
            help="A recording of the training schema; label columns optional.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write; parquet if it ends in .parquet. Default: stdout.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    model_dir: Annotated[
        Path,
        typer.Option("--model-dir", help="The export directory.", file_okay=False),
    ] = Path("stages/export"),
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", help="Read CSV lines from stdin and predict as they arrive."
        ),
    ] = False,
) -> None:
    """Detect interference and forecast the next KPIs with the exported model.

    Writes one row per input row that ends a full window (time, probability,
    decision, forecast_<KPI>), as CSV, or parquet when --output ends in
    .parquet. Rows missing a KPI are reported and skipped; a time gap over
    the training's data.max_gap_s restarts the window. With --follow, reads
    standard input, header first, and prints each prediction as soon as its
    row ends a window; a bad line is reported and skipped.
    """
    from mtlnet.predict import follow as run_follow
    from mtlnet.predict import load_predictor, predict_recording, write_predictions

    if follow and (input_path not in (None, Path("-")) or output is not None):
        raise MtlnetError(
            "--follow reads standard input and prints to standard output; "
            "drop INPUT.csv and --output"
        )
    if not follow and input_path is None:
        raise MtlnetError("name INPUT.csv, or pass --follow to read standard input")
    predictor = load_predictor(model_dir)
    if follow:
        try:
            run_follow(
                iter(sys.stdin.readline, ""), predictor=predictor, out=sys.stdout
            )
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        return
    assert input_path is not None
    frame = predict_recording(input_path, predictor=predictor)
    write_predictions(frame, output=output, stdout=sys.stdout)


def main() -> None:
    app()
