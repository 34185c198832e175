"""The optional dependency groups of ``pyproject.toml`` (``pip install 'vimss-cli[GROUP]'``).

``data``: music21 (the score corpus, about 114 MB with its own dependencies) and mido (MIDI
files), which only ``vimss data synth`` and the score check of ``vimss data check`` use.
``separate``, ``inspect``, ``eval`` and ``train`` need none of them.
"""

from __future__ import annotations

import importlib.util

from vimss_cli.errors import MissingDependencyError

#: the distribution name that ``pip install`` takes (the command is ``vimss``)
DISTRIBUTION = "vimss-cli"


def require_extra(group: str, *modules: str, purpose: str) -> None:
    """Raise :class:`MissingDependencyError` naming the ``pip install`` of ``group`` when
    any of ``modules`` cannot be imported (found without importing it)."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(
            f"{purpose} needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed; install the optional "
            f"'{group}' dependencies with: pip install '{DISTRIBUTION}[{group}]'"
        )
