"""The library's progress callback: it never prints, it calls ``progress(event)`` with a dict.

The CLI draws the events (rich); a Python user passes any callable. What each caller sends:

* :meth:`vimss_cli.api.Separator.separate_file`: ``{"input", "done_seconds", "total_seconds"}``.
* :func:`vimss_cli.eval.run.evaluate`: ``{"stage", "piece", "system", "done", "total"}``.
* :func:`vimss_cli.synth.dataset.synthesize` and :func:`vimss_cli.datacheck.check_dataset`:
  ``{"done", "total", "piece"}``.
* :func:`vimss_cli.training.loop.run_training`: ``{"stage", ...}`` while it prepares, then the
  step records (``{"step", "max_steps", ...}``).

The engine's per-window count is another signature (:data:`vimss_cli.engine.WindowProgress`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ProgressCallback = Callable[[dict[str, Any]], None]
