"""The ``vimss`` command: a thin Typer layer over the library, one module per command.

Every known error becomes one line on stderr and a non-zero exit code (no traceback unless
``--debug`` or ``VIMSS_DEBUG=1``). Progress is drawn with rich on a terminal only.

The command modules import what they share from :mod:`vimss_cli.cli.common`, never from
this package, so that it can import them to register their commands without an import cycle.
"""

from __future__ import annotations

from typing import Annotated

import typer

from vimss_cli import __version__
from vimss_cli.cli.data import data_app
from vimss_cli.cli.eval import eval_command
from vimss_cli.cli.inspect import inspect_command
from vimss_cli.cli.models import models_app
from vimss_cli.cli.report import report_command
from vimss_cli.cli.separate import separate_command
from vimss_cli.cli.train import train_command

app = typer.Typer(
    name="vimss",
    help="Visually-informed music source separation: one WAV per player.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    suggest_commands=False,  # click already says "Did you mean ...?"; Typer would repeat it
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"vimss {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show version."),
    ] = False,
) -> None:
    """Visually-informed music source separation."""


# in this order, so `vimss --help` lists the commands in the order a user meets them
app.command("separate")(separate_command)
app.command("inspect")(inspect_command)
app.command("report")(report_command)
app.command("eval")(eval_command)
app.command("train")(train_command)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="vimss")
