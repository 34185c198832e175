"""What every ``vimss`` command shares: option aliases and the error boundary.

Command modules import from here (not from :mod:`vimss_cli.cli`) so that ``cli.py`` can
import them to register their commands without an import cycle.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from vimss_cli.errors import VimssError

T = TypeVar("T")

DebugOption = Annotated[
    bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
ModelOption = Annotated[
    str,
    typer.Option(
        "--model", "-m", help="Bundled name, 'default', a .safetensors path or hf:OWNER/REPO."
    ),
]


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _debug_enabled(debug: bool) -> bool:
    return debug or os.environ.get("VIMSS_DEBUG", "") not in ("", "0")


def guarded(debug: bool, action: Callable[[], T]) -> T:
    """Run ``action``; turn known errors and Ctrl-C into one line and an exit code."""
    try:
        return action()
    except VimssError as error:
        if _debug_enabled(debug):
            raise
        typer.echo(f"error: {' '.join(str(error).split())}", err=True)
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        if _debug_enabled(debug):
            raise
        typer.echo("interrupted: nothing half-written was left behind", err=True)
        raise typer.Exit(130) from None
