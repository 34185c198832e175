"""``python -m vimss_cli`` runs the ``vimss`` command."""

from vimss_cli.cli import main

if __name__ == "__main__":
    main()
