"""The command line: one thin command per pipeline stage.

Each command reads ``params.yaml`` into typed configs and calls one
keyword-only function of the library. A user's mistake (an
:class:`MtlnetError`) ends in one line on standard error and exit code 1.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from mtlnet.config import Params, load_params
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


def _params(path: Path) -> Params:
    return load_params(path)


@app.command()
@user_errors
def prepare(params: ParamsOption = Path("params.yaml")) -> None:
    """Read the recordings under data.dir into stages/prepare/ and metrics/data.json."""
    from mtlnet.prepare import prepare as run_prepare

    config = _params(params)
    run_prepare(
        data=config.data,
        graph=config.graph,
        output_dir=Path("stages/prepare"),
        metrics_path=Path("metrics/data.json"),
    )


def main() -> None:
    app()
