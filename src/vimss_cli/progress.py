"""The library's progress callback: it never prints, it calls ``progress(event)`` with a dict.

The CLI draws the events (rich); a Python user passes any callable. What each caller sends:

* :meth:`vimss_cli.api.Separator.separate_file`: ``{"input", "done_seconds", "total_seconds"}``,
  after ``"stage": "level"`` events of the same keys while a first pass finds the input's peak.
* :func:`vimss_cli.eval.run.evaluate`: ``{"stage", "piece", "system", "done", "total"}``.
* :func:`vimss_cli.synth.dataset.synthesize` and :func:`vimss_cli.datacheck.check_dataset`:
  ``{"done", "total", "piece"}``.
* :func:`vimss_cli.training.loop.run_training`: ``{"stage", ...}`` while it prepares, then the
  step records (``{"step", "max_steps", ...}``).

The engine's per-window count is another signature (:data:`vimss_cli.engine.WindowProgress`).

A batch of separations (:mod:`vimss_cli.batch`) tells more than progress: its warnings, notes,
failures and phases go to a :class:`BatchEvents`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from vimss_cli.errors import VimssError

ProgressCallback = Callable[[dict[str, Any]], None]


class BatchEvents:
    """What a batch tells as it goes. These defaults tell nothing: override the methods."""

    def warning(self, text: str) -> None:
        """Something to check: how sure the players are, the level of the stems..."""

    def note(self, text: str) -> None:
        """How an input was handled: skipped, its players found or named, a report written."""

    def failed(self, error: VimssError) -> None:
        """An input failed and was left out (``keep_going``)."""

    def phase(self, text: str) -> AbstractContextManager[object]:
        """The phase ``text`` (``"finding the players"``, ``"loading model X"``...) runs in
        this block."""
        return nullcontext()

    def separating(self) -> AbstractContextManager[ProgressCallback | None]:
        """The inputs are separated in this block; the callback it gives gets their progress
        (:meth:`~vimss_cli.api.Separator.separate_file`'s events)."""
        return nullcontext()
