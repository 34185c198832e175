"""Files published whole: written under a temporary name of their own, then renamed.

Two processes writing the same file never share a temporary (the name holds the process id
and a random part), and a failure removes the temporary, so readers only ever see a previous
complete file or the new complete one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path`` (same suffix, so writers that go by it
    still work); rename it onto ``path`` when the block succeeds, remove it otherwise."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:12]}{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)
