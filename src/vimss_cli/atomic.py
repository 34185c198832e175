"""Files published whole: written under a temporary name of their own, then renamed.

Every file the library writes goes through here (stems, checkpoints, caches, manifests,
reports, pictures). A temporary sits beside its file as
``.<name>.partial-<pid>-<random><suffix>`` (the name shortened when it is near the file
system's 255-byte limit): two processes (or two runs in one process) never
share one, the writing process can be told from the name (:func:`temporary_owner`, so a
later run can remove what a killed one left), and the suffix stays, for writers that go by
it. A failure removes the temporary, so readers only ever see a previous complete file or
the new complete one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

#: ``.<name>.partial-<pid>``, then ``-<random><suffix>`` (without it: an older vimss's name).
_TEMPORARY = re.compile(r"\.(.+)\.partial-(\d+)(?:-[0-9a-f]{12}(\.[^.]*)?)?")


#: The longest file name most file systems take (bytes): ext4, XFS, btrfs, APFS, NTFS.
NAME_MAX = 255


def temporary_path(path: Path) -> Path:
    """A fresh temporary name beside ``path``, holding this process's id.

    A name the file system takes may be too long once the temporary's 30 or so characters
    are added: the file's own name is then shortened inside it (its start, ``~``, its
    suffix), so that a stem named near the limit can still be written.
    """
    path = Path(path)
    token = uuid.uuid4().hex[:12]
    tail = f".partial-{os.getpid()}-{token}{path.suffix}"
    name = path.name
    room = NAME_MAX - len(os.fsencode(tail)) - 1  # bytes left for the name, after the dot
    if len(os.fsencode(name)) > room:
        keep = max(0, room - len(os.fsencode(f"~{path.suffix}")))
        # whole UTF-8 characters only (bytes of a name that is not UTF-8 are left out)
        start = os.fsencode(name)[:keep].decode(errors="ignore")
        name = f"{start}~{path.suffix}"
    return path.with_name(f".{name}{tail}")


def temporary_owner(name: str) -> tuple[str, int] | None:
    """``(file name, writing process id)`` of a temporary's name, or ``None`` for any other
    name. The file name is as the temporary holds it: shortened (``start~.wav``) for a name
    near the file system's limit (:func:`temporary_path`)."""
    match = _TEMPORARY.fullmatch(name)
    if match is None:
        return None
    target, pid, suffix = match.groups()
    if suffix is not None and suffix != Path(target).suffix:
        return None
    return target, int(pid)


class AtomicFiles:
    """Temporaries for several files that appear together: write each
    :attr:`temporaries` entry, then :meth:`publish`; :meth:`discard` removes what is left.

    The streaming form (a writer that holds its files open across calls, and checks before
    it publishes); for one file written in one block, :func:`atomic_path`.
    """

    def __init__(self, paths: Iterable[Path]) -> None:
        self.paths = [Path(p) for p in paths]
        self.temporaries = [temporary_path(p) for p in self.paths]

    def publish(self) -> None:
        """Rename every temporary onto its file, in order, once none of the files is found
        to be a folder (a rename onto one would fail part-way through the set).

        Raises:
            IsADirectoryError: one of :attr:`paths` is a folder; nothing was renamed.
        """
        for path in self.paths:
            if path.is_dir():
                raise IsADirectoryError(errno.EISDIR, "a folder is in the way", str(path))
        for temporary, path in zip(self.temporaries, self.paths, strict=True):
            os.replace(temporary, path)

    def discard(self) -> None:
        """Remove the temporaries not published; never raises (it runs while failing)."""
        for temporary in self.temporaries:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path`` (same suffix, so writers that go by it
    still work); rename it onto ``path`` when the block succeeds, remove it otherwise."""
    files = AtomicFiles([path])
    try:
        yield files.temporaries[0]
        files.publish()
    finally:
        files.discard()


def current_umask() -> int:
    """This process's umask: from ``/proc/self/status`` where there is one (Linux), else by
    setting it and putting it back (for that instant process-wide, so not the first way)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)
