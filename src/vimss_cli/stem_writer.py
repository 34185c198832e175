"""Writing stems as WAV files block by block, atomically.

Each stem is written to a hidden temporary file beside its final path and renamed into place
only when every stem of the input is complete, so an error or Ctrl-C never leaves a partial
stem and never damages a file the user already had.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType

import numpy as np
import soundfile

from vimss_cli.errors import InputError, OutputError

#: ``--format`` value -> libsndfile subtype.
WAV_FORMATS: dict[str, str] = {"wav16": "PCM_16", "wav24": "PCM_24", "float32": "FLOAT"}


def check_wav_format(name: str) -> str:
    """Return the libsndfile subtype for a ``--format`` value, or raise :class:`InputError`."""
    if name not in WAV_FORMATS:
        raise InputError(f"unknown --format {name!r}; choose one of {', '.join(WAV_FORMATS)}")
    return WAV_FORMATS[name]


def ensure_writable_directory(directory: Path) -> None:
    """Create ``directory`` if needed and prove a file can be created in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create output directory {directory}: {error.strerror}") from None
    if not directory.is_dir():
        raise OutputError(f"output path exists and is not a directory: {directory}")
    probe = directory / f".vimss-write-test-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise OutputError(
            f"output directory is not writable: {directory} ({error.strerror})"
        ) from None


class StemSetWriter:
    """Write K mono stems of equal length, block by block, and publish them together.

    ``write(block)`` takes an array of shape ``(K, samples)``. On a clean exit from the
    ``with`` block the temporary files are renamed to ``paths``; on any exception (including
    ``KeyboardInterrupt``) they are deleted and ``paths`` are left as they were.
    """

    def __init__(self, paths: list[Path], sample_rate: int, wav_format: str = "wav16") -> None:
        self.paths = [Path(p) for p in paths]
        self.sample_rate = sample_rate
        self.subtype = check_wav_format(wav_format)
        self.clip = self.subtype != "FLOAT"
        self.frames_written = 0
        self._temporary = [p.with_name(f".{p.name}.partial-{os.getpid()}") for p in self.paths]
        self._files: list[soundfile.SoundFile] = []
        self._created_dirs: list[Path] = []

    def __enter__(self) -> StemSetWriter:
        try:
            for temporary in self._temporary:
                self._make_parents(temporary.parent)
                self._files.append(
                    soundfile.SoundFile(
                        str(temporary), "w", self.sample_rate, 1, self.subtype, format="WAV"
                    )
                )
        except (OSError, soundfile.LibsndfileError) as error:
            self._discard()
            raise OutputError(f"cannot write stems in {self.paths[0].parent}: {error}") from None
        return self

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` of shape ``(K, samples)``, one row per stem."""
        if block.shape[0] != len(self._files):
            raise ValueError(f"expected {len(self._files)} stems, got {block.shape[0]}")
        if self.clip:
            block = np.clip(block, -1.0, 1.0)
        for handle, samples in zip(self._files, block, strict=True):
            handle.write(np.ascontiguousarray(samples, dtype=np.float32))
        self.frames_written += block.shape[1]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            for handle in self._files:
                handle.close()
            for temporary, final in zip(self._temporary, self.paths, strict=True):
                os.replace(temporary, final)
        except OSError as error:
            self._discard()
            raise OutputError(f"cannot publish stems in {self.paths[0].parent}: {error}") from None

    def _make_parents(self, directory: Path) -> None:
        """Create ``directory`` (and parents), remembering which ones this writer made."""
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for folder in reversed(missing):
            folder.mkdir()
            self._created_dirs.append(folder)

    def _discard(self) -> None:
        for handle in self._files:
            # closing a half-written file must not mask the original error
            with contextlib.suppress(Exception):
                handle.close()
        for temporary in self._temporary:
            temporary.unlink(missing_ok=True)
        for folder in reversed(self._created_dirs):
            with contextlib.suppress(OSError):  # rmdir only removes an empty folder
                folder.rmdir()
