"""``python -m vimss_cli`` and the ``vimss`` script run the ``vimss`` command.

This module imports nothing heavy before it can catch Ctrl-C, so an interrupt while the
command is still loading ends with one line instead of a traceback.
"""

import sys


def main() -> None:
    """Console-script entry point: :func:`vimss_cli.cli.main`, quiet on an early Ctrl-C."""
    try:
        from vimss_cli.cli import main as cli_main

        cli_main()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: nothing was written\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
