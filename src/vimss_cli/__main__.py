"""``python -m vimss_cli`` and the ``vimss`` script run the ``vimss`` command.

This module imports nothing heavy before it can catch Ctrl-C, so an interrupt while the
command is still loading ends with one line instead of a traceback.
"""

import sys


def _interrupted(error: BaseException) -> bool:
    """Whether ``error`` is a Ctrl-C or was raised because of one.

    Python 3.11 wraps an exception raised inside ``__set_name__`` (a dataclass being made
    while a module loads) in a ``RuntimeError`` whose cause is the ``KeyboardInterrupt``,
    so the interrupt has to be looked for along the chain of causes.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def main() -> None:
    """Console-script entry point: :func:`vimss_cli.cli.main`, quiet on an early Ctrl-C."""
    try:
        from vimss_cli.cli import main as cli_main

        cli_main()
    except SystemExit:
        raise
    except BaseException as error:
        if not _interrupted(error):
            raise
        sys.stderr.write("interrupted: nothing was written\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
