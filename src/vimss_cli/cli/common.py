"""What every ``vimss`` command shares: option aliases and the error boundary.

Command modules import from here (not from :mod:`vimss_cli.cli`) so that the package can
import them to register their commands without an import cycle.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner

from vimss_cli.errors import OutputError, VimssError

T = TypeVar("T")

DebugOption = Annotated[
    bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
QuietOption = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Only results, warnings and errors: no notes, no progress."),
]
ModelOption = Annotated[
    str,
    typer.Option(
        "--model", "-m", help="Bundled name, 'default', a .safetensors path or hf:OWNER/REPO."
    ),
]

#: Signals that stop a command the way Ctrl-C does when it asks for it (``guarded``).
TERMINATION_SIGNALS = ("SIGTERM", "SIGHUP")


def import_torch() -> None:
    """Import torch with Ctrl-C held until the import is done, then honoured.

    A ``KeyboardInterrupt`` raised while torch's C++ extensions initialise escapes through
    pybind11 and aborts the process (``terminate called ... KeyboardInterrupt``, exit 134)
    instead of unwinding to the one-line message. Commands that load a model call this first.
    """
    held = threading.current_thread() is threading.main_thread()  # only there can it be
    received: list[int] = []
    if held:
        previous = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        import torch  # noqa: F401
    finally:
        if held:
            signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so that cleanup runs as for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


@contextmanager
def status(
    message: str, enabled: bool = True, console: Console | None = None
) -> Iterator[Callable[[str | None], None]]:
    """A rich spinner saying ``message`` on stderr while a phase runs, when ``enabled`` and
    stderr is a terminal (nothing otherwise).

    Yields ``update(text)``: the spinner says ``text`` from then on, or, given ``None``, goes
    away before the block ends (when the phase gives way to lines of output). Lines printed
    meanwhile go above the spinner when they are printed through ``console``, the one it
    draws on (by default a new :func:`stderr_console`).
    """
    console = console or stderr_console()
    if not enabled or not console.is_terminal:
        yield lambda text: None
        return
    spinner = Spinner("dots", escape(f"{message}..."), style="status.spinner")
    with Live(spinner, console=console, transient=True, refresh_per_second=12.5) as live:

        def update(text: str | None) -> None:
            if text is None:
                live.stop()
                return
            spinner.update(text=escape(f"{text}..."))
            live.start()  # again, after a stop
            live.refresh()  # now: a step may end before the next tick

        yield update


def printable(text: str) -> str:
    """``text`` with the bytes of non-UTF-8 file names shown as ``\\xff`` escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _debug_enabled(debug: bool) -> bool:
    return debug or os.environ.get("VIMSS_DEBUG", "") not in ("", "0")


@contextmanager
def _termination_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` while the block runs."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    previous = {}
    for name in TERMINATION_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def system_error_line(error: BaseException) -> str:
    """One line for an error no check of the command foresaw: an operating-system error (a
    read-only or full disk, a file where a folder goes) or memory the settings ask too much
    of, on the CPU or the GPU. A worker process's error carries its whole traceback in its
    message: only the first line is kept."""
    first = (str(error).strip().splitlines() or [""])[0].strip()
    if isinstance(error, OSError) and error.strerror:
        names = [str(n) for n in (error.filename, error.filename2) if n is not None]
        first = f"{error.strerror}: {' -> '.join(names)}" if names else error.strerror
    if is_out_of_memory(error):
        detail = f": {first}" if first else ""
        return f"out of memory{detail} (smaller settings may fit; --debug for the traceback)"
    return f"{first or type(error).__name__} (--debug for the traceback)"


def is_out_of_memory(error: BaseException) -> bool:
    """CPU ``MemoryError`` or torch's GPU ``OutOfMemoryError`` (told by name: torch is not
    imported here)."""
    return isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"


def ending(error: BaseException) -> tuple[str, int] | None:
    """The one line and the exit code a command ends with on ``error``: a known error, an
    operating-system error or memory no check foresaw, Ctrl-C or SIGTERM/SIGHUP; ``None``
    for anything else (a bug: its traceback is shown)."""
    if isinstance(error, VimssError):
        return f"error: {printable(' '.join(str(error).split()))}", error.exit_code
    if isinstance(error, OSError) or is_out_of_memory(error):
        return f"error: {printable(system_error_line(error))}", OutputError.exit_code
    if isinstance(error, Terminated):
        name = signal.Signals(error.signum).name
        return f"interrupted by {name}: nothing half-written was left behind", 128 + error.signum
    if isinstance(error, KeyboardInterrupt):
        return "interrupted: nothing half-written was left behind", 130
    return None


def json_error(action: Callable[[], T], as_json: bool) -> T:
    """Run ``action``; with ``as_json``, whatever ends it as :func:`guarded` tells (an error,
    an interrupt) also prints one JSON object on stdout, ``{"error": line, "exit_code":
    code}``, before :func:`guarded` prints the line on stderr and exits."""
    try:
        return action()
    except BaseException as error:
        told = ending(error) if as_json else None
        if told is not None:
            line, code = told
            typer.echo(json.dumps({"error": line.removeprefix("error: "), "exit_code": code}))
        raise


def guarded(debug: bool, action: Callable[[], T], *, terminate_cleanly: bool = False) -> T:
    """Run ``action``; turn known errors and Ctrl-C into one line and an exit code
    (:func:`ending`).

    With ``terminate_cleanly``, SIGTERM and SIGHUP interrupt ``action`` as Ctrl-C does (so
    its cleanup runs) and exit with 128 + the signal's number.
    """
    try:
        if terminate_cleanly:
            with _termination_as_interrupt():
                return action()
        return action()
    except (VimssError, OSError, MemoryError, RuntimeError, KeyboardInterrupt) as error:
        told = ending(error)
        if _debug_enabled(debug) or told is None:
            raise
        line, code = told
        typer.echo(line, err=True)
        raise typer.Exit(code) from None
