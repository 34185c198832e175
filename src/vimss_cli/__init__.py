"""vimss: visually-informed music source separation.

The library API lives in :mod:`vimss_cli.api`; the ``vimss`` command in :mod:`vimss_cli.cli`
is a thin layer above it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
