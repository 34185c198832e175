"""The ``vimss`` command: a thin Typer layer over the library, one module per command.

Every known error becomes one line on stderr and a non-zero exit code (no traceback unless
``--debug`` or ``VIMSS_DEBUG=1``). Progress is drawn with rich on a terminal only.

The command modules import what they share from :mod:`vimss_cli.cli.common`, never from
this package, so that it can import them to register their commands without an import cycle.
"""

from __future__ import annotations

from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from vimss_cli import __version__
from vimss_cli.cli.data import data_app
from vimss_cli.cli.eval import eval_app
from vimss_cli.cli.inspect import inspect_command
from vimss_cli.cli.models import models_app
from vimss_cli.cli.report import report_command
from vimss_cli.cli.separate import separate_command
from vimss_cli.cli.train import train_command

#: The order `vimss --help` lists the commands in: the order a user meets them.
COMMAND_ORDER = ("separate", "inspect", "report", "eval", "train", "data", "models")


class _InOrder(TyperGroup):
    """The root group, listing its commands in :data:`COMMAND_ORDER` (Typer would list the
    groups, ``eval``, ``data`` and ``models``, after the plain commands)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        listed = [name for name in COMMAND_ORDER if name in self.commands]
        return listed + [name for name in self.commands if name not in listed]


app = typer.Typer(
    cls=_InOrder,
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


app.command("separate")(separate_command)
app.command("inspect")(inspect_command)
app.command("report")(report_command)
app.add_typer(eval_app, name="eval")
app.command("train")(train_command)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="vimss")
