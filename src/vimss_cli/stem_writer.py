"""Writing stems as WAV, FLAC or MP3 files block by block, atomically.

Each stem is written to a hidden temporary file beside its final path and renamed into place
only when every stem of the input is complete, so an error, Ctrl-C, SIGTERM or SIGHUP never
leaves a partial stem and never damages a file the user already had. While it writes, a
writer holds an exclusive lock on its folder, so two runs never write into one folder at once;
temporary files left by a killed run (``kill -9``) are removed by the next run in that folder.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import numpy as np
import soundfile

from vimss_cli.atomic import AtomicFiles, temporary_owner
from vimss_cli.errors import InputError, MissingDependencyError, OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: writers do not lock their folder
    fcntl = None  # type: ignore[assignment]

#: ``--format`` value -> libsndfile subtype (``flac`` is ``flac16``).
WAV_FORMATS: dict[str, str] = {
    "wav16": "PCM_16",
    "wav24": "PCM_24",
    "float32": "FLOAT",
    "flac": "PCM_16",
    "flac16": "PCM_16",
    "flac24": "PCM_24",
    "mp3": "MPEG_LAYER_III",
}

#: libsndfile's integer subtypes -> their bits (the formats that round to steps and clip).
INTEGER_BITS: dict[str, int] = {"PCM_16": 16, "PCM_24": 24}

#: The sample rates MPEG-1, 2 and 2.5 Layer III can hold, in Hz.
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)

#: libsndfile's encoder settings of the MP3 stems: LAME's best variable bit rate (about V0).
_MP3_ENCODING = {"compression_level": 0.0, "bitrate_mode": "VARIABLE"}


def stem_extension(wav_format: str) -> str:
    """The file extension of a ``--format``: ``.flac``, ``.mp3`` or ``.wav``."""
    if wav_format.startswith("flac"):
        return ".flac"
    return ".mp3" if wav_format == "mp3" else ".wav"


#: A stem's file name (the temporaries in a folder that are stems' are cleaned up).
_STEM_FILE = re.compile(r".+\.(?:wav|flac|mp3)")

#: Less free space than this after a libsndfile "System error." means the disk is full.
_FULL_DISK_BYTES = 1 << 20


def check_wav_format(name: str) -> str:
    """Return the libsndfile subtype for a ``--format`` value, or raise :class:`InputError`
    (:class:`MissingDependencyError` for ``mp3`` with a libsndfile that cannot write MP3)."""
    if name not in WAV_FORMATS:
        raise InputError(f"unknown --format {name!r}; choose one of {', '.join(WAV_FORMATS)}")
    if name == "mp3" and not _can_write_mp3():
        raise MissingDependencyError(
            f"this soundfile ({soundfile.__version__}, libsndfile "
            f"{soundfile.__libsndfile_version__}) cannot write MP3 stems; soundfile 0.13 or "
            "later can"
        )
    return WAV_FORMATS[name]


def _can_write_mp3() -> bool:
    """Whether libsndfile has an MP3 encoder and soundfile takes its settings (0.13+)."""
    takes_settings = "compression_level" in inspect.signature(soundfile.SoundFile).parameters
    return takes_settings and "MP3" in soundfile.available_formats()


#: The most channels a stem file of a ``--format`` can hold (libsndfile's limits).
MAX_CHANNELS = {"mp3": 2, "flac": 8, "flac16": 8, "flac24": 8}


def check_format_channels(wav_format: str, channels: int) -> None:
    """Refuse stems of more channels than the format holds (:class:`InputError`), before any
    work: MP3 holds two, FLAC eight."""
    limit = MAX_CHANNELS.get(wav_format)
    if limit is not None and channels > limit:
        raise InputError(
            f"{wav_format.upper()} holds at most {limit} channels, not the stems' {channels}; "
            "choose --format wav24 (or float32), or add --sample-rate model for mono stems"
        )


def check_format_rate(wav_format: str, rate: int) -> None:
    """Refuse a stem rate the format cannot hold (:class:`InputError`): MP3 has nine rates."""
    if wav_format == "mp3" and rate not in MP3_RATES:
        suggested = min(MP3_RATES, key=lambda r: (abs(r - rate), -r))
        raise InputError(
            f"MP3 holds {', '.join(map(str, MP3_RATES))} Hz only, not the stems' {rate} Hz; "
            f"use --sample-rate {suggested} (or choose another --format)"
        )


def check_no_broken_link(directory: Path) -> None:
    """Refuse an output folder that is, or lies below, a broken symbolic link (making it
    would fail with a puzzling "File exists")."""
    for path in (directory, *directory.parents):
        if path.is_symlink() and not path.exists():
            raise OutputError(
                f"cannot write into {directory}: {path} is a broken symbolic link (to "
                f"{os.readlink(path)})"
            )


def check_output_folder(directory: Path) -> None:
    """Refuse, before any work, an output folder that cannot be made: it, or the nearest of
    its parents that exists, is not a folder, or is a broken symbolic link."""
    check_no_broken_link(directory)
    for path in (directory, *directory.parents):
        if path.exists():
            if not path.is_dir():
                where = "" if path == directory else f" ({path} is a file)"
                raise OutputError(f"cannot write into {directory}: it is not a folder{where}")
            return


def ensure_writable_directory(directory: Path) -> None:
    """Create ``directory`` if needed and prove a file can be created in it."""
    check_no_broken_link(directory)
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


def check_stem_folder(folder: Path) -> None:
    """Raise :class:`OutputError` when ``folder`` exists but is not a directory."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"cannot write stems into {folder}: it exists and is not a directory")


def existing_outputs(paths: list[Path], is_stem: Callable[[str], bool] | None = None) -> list[Path]:
    """Which of ``paths`` exist, plus the files of ``paths``' folder that ``is_stem`` names
    (the stems of an earlier run that a new set would sit beside)."""
    existing = [p for p in paths if p.exists()]
    folders = {p.parent for p in paths}
    if is_stem is not None:
        for folder in sorted(folders):
            if not folder.is_dir():
                continue
            with contextlib.suppress(OSError):  # an unlistable folder fails when written to
                existing += sorted(
                    p
                    for p in folder.iterdir()
                    if is_stem(p.name) and p not in paths and p.is_file()
                )
    return existing


def describe_paths(paths: list[Path], shown: int = 3) -> str:
    """``a, b, c and 2 more``."""
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(str(p) for p in paths[:shown]) + more


def remove_stale_partials(folder: Path) -> list[Path]:
    """Delete the temporary stem files in ``folder`` whose writing process no longer runs
    (left by a run killed with ``kill -9``); return what was removed."""
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            owner = temporary_owner(entry.name)
            if owner is None or not _STEM_FILE.fullmatch(owner[0]):
                continue
            if not entry.is_file(follow_symlinks=False) or _process_alive(owner[1]):
                continue
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


#: Start of the name of the scratch folder that a separation channel by channel keeps its
#: per-channel stems in (in the output folder), followed by ``<pid>@<host>-`` and a random part.
SCRATCH_PREFIX = ".vimss-channels-"
_SCRATCH = re.compile(re.escape(SCRATCH_PREFIX) + r"(\d+)@([^/]+)-[^-]+")


def _host() -> str:
    """This machine's name as a scratch folder carries it (no ``-``, so the name parses)."""
    return socket.gethostname().replace("-", "_") or "localhost"


def scratch_prefix() -> str:
    """This process's scratch folder prefix: ``.vimss-channels-<pid>@<host>-``."""
    return f"{SCRATCH_PREFIX}{os.getpid()}@{_host()}-"


def remove_stale_scratch(folder: Path) -> list[Path]:
    """Delete the scratch folders in ``folder`` whose process no longer runs (left by a run
    killed with ``kill -9``, stereo stems of minutes); return what was removed. Only this
    machine's are judged (a run on another host sharing the folder keeps its own), and
    none on Windows, where no signal tests a process without stopping it."""
    removed: list[Path] = []
    if os.name == "nt":
        return removed
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _SCRATCH.fullmatch(entry.name)
            if match is None or not entry.is_dir(follow_symlinks=False):
                continue
            if match.group(2) != _host() or _process_alive(int(match.group(1))):
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, ValueError):  # not a possible process id
        return False
    except OSError:  # EPERM: it runs, as another user
        return True
    return True


def _disk_full(error: BaseException, folder: Path) -> bool:
    """Whether a write failed because the device (or the user's quota) is full.

    libsndfile reports a failed ``write(2)`` only as "System error.", without the errno, so
    its errors are judged by the free space left.
    """
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    missing = missing_folders(folder)  # not made yet: the device of the nearest that is
    folder = missing[0].parent if missing else folder
    try:
        return shutil.disk_usage(folder).free < _FULL_DISK_BYTES
    except OSError:
        return False


def missing_folders(directory: Path) -> list[Path]:
    """The folders that making ``directory`` would create, outermost first."""
    missing = []
    while not directory.exists() and not directory.is_symlink():
        missing.append(directory)
        directory = directory.parent
    return missing[::-1]


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove those of ``folders`` (outermost first) that are empty, innermost first."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):  # rmdir only removes an empty folder
            folder.rmdir()


def write_error(doing: str, error: BaseException, folder: Path) -> OutputError:
    """The one-line :class:`OutputError` for a failed write of stems in ``folder``: "no space
    left on device" when it is full, else ``doing`` and the system's reason."""
    if _disk_full(error, folder):
        return OutputError(
            f"no space left on device while writing stems in {folder}; nothing was "
            "published and existing files are untouched"
        )
    reason = error.strerror if isinstance(error, OSError) and error.strerror else error
    return OutputError(f"{doing} {folder}: {reason}")


@contextlib.contextmanager
def scratch_writes(folder: Path) -> Iterator[None]:
    """Turn a failed write of scratch files in ``folder`` (a full disk, no permission) into
    the one-line :class:`OutputError` the stem writer gives."""
    try:
        yield
    except (OSError, soundfile.SoundFileError) as error:
        raise write_error("cannot write stems in", error, folder) from None


class FolderBusyError(OutputError):
    """Another run holds the folder's :class:`FolderLock`."""


class FolderLock:
    """An exclusive lock on a folder of stems for one run, from before its separation starts
    until its stems are published or discarded, so that a second run into the folder is
    refused then (not after it did all its work). The folder and its missing parents are
    made; on failure those left empty are removed again. Nothing is locked on a file system
    without locks, or where ``fcntl`` does not exist. An error is one line, an
    :class:`OutputError` (:class:`FolderBusyError` when another run holds the lock)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._descriptor: int | None = None
        self._created: list[Path] = []

    def __enter__(self) -> FolderLock:
        check_no_broken_link(self.folder)
        check_stem_folder(self.folder)
        try:
            for folder in missing_folders(self.folder):
                folder.mkdir(exist_ok=True)  # another run may make it meanwhile
                self._created.append(folder)
            if fcntl is not None:
                self._lock()
        except OSError as error:
            remove_empty_folders(self._created)
            raise write_error("cannot write stems in", error, self.folder) from None
        except BaseException:
            remove_empty_folders(self._created)
            raise
        return self

    def _lock(self) -> None:
        descriptor = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            self._created = []  # the other run writes into them
            raise FolderBusyError(
                f"another vimss run is writing stems into {self.folder}; "
                "wait for it to finish or choose another --out"
            ) from None
        except OSError:  # no locks on this file system: go on without
            os.close(descriptor)
            return
        self._descriptor = descriptor

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:  # before letting go: no other run locks a folder removed
            remove_empty_folders(self._created)
        self.release()

    def release(self) -> None:
        """Let go of the lock (closing the descriptor releases it)."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


class StemSetWriter:
    """Write K stems of equal length into one folder, block by block, and publish them
    together.

    ``write(block)`` takes an array of shape ``(K, samples)``, or ``(K, samples, channels)``
    for stems of several channels. On a clean exit from the
    ``with`` block the temporary files are renamed to ``paths``; on any exception (including
    ``KeyboardInterrupt``) they are deleted and ``paths`` are left as they were.

    Args:
        paths: the stems' final paths, all in one folder.
        sample_rate: samples per second.
        wav_format: a ``--format`` value (:data:`WAV_FORMATS`). All but ``float32`` clip
            samples beyond full scale; :attr:`clipped_samples` and :attr:`peak` tell how many
            and how loud. ``mp3`` takes the rates of :data:`MP3_RATES` only.
        overwrite: replace existing files. Without it, existing ``paths`` (or files that
            ``is_stem`` names) are refused when writing starts and again when publishing,
            so a run that finished meanwhile is never replaced.
        is_stem: names the files of the folder that belong to a stem set of this tool; with
            ``overwrite``, those not in ``paths`` are removed when the new set is published.
        channels: channels per stem file.
        locked: the caller holds the folder's :class:`FolderLock` (for its whole run); else
            the writer takes one while it writes.
    """

    def __init__(
        self,
        paths: list[Path],
        sample_rate: int,
        wav_format: str = "wav16",
        *,
        overwrite: bool = False,
        is_stem: Callable[[str], bool] | None = None,
        channels: int = 1,
        locked: bool = False,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.channels = channels
        folders = {p.parent for p in self.paths}
        if len(folders) != 1:
            raise ValueError(f"stems of one set go into one folder, got {len(folders)}")
        self.folder = folders.pop()
        self.sample_rate = sample_rate
        self.wav_format = wav_format
        self.subtype = check_wav_format(wav_format)
        check_format_rate(wav_format, sample_rate)
        self.clip = self.subtype != "FLOAT"
        self.overwrite = overwrite
        self.is_stem = is_stem
        #: samples beyond full scale clipped by an integer format, and the largest magnitude
        self.clipped_samples = 0
        self.peak = 0.0
        self._atomic = AtomicFiles(self.paths)
        self._files: list[soundfile.SoundFile] = []
        self._owns_temporary = False  # set once the checks passed and the files are ours
        self._created_dirs: list[Path] = []
        self._lock: FolderLock | None = None if locked else FolderLock(self.folder)

    @contextlib.contextmanager
    def _discard_on_failure(self, action: str) -> Iterator[None]:
        """Remove this set's temporary files if the body fails; a disk error (full, no
        permission) becomes one :class:`OutputError` saying ``action`` and the folder."""
        try:
            yield
        except BaseException as error:
            self._discard()
            disk = isinstance(error, OSError | soundfile.SoundFileError)
            if disk and not isinstance(error, OutputError):
                raise self._error(action, error) from None
            raise

    def __enter__(self) -> StemSetWriter:
        with self._discard_on_failure("cannot write stems in"):
            self._make_parents(self.folder)
            check_stem_folder(self.folder)
            if self._lock is not None:
                try:
                    self._lock.__enter__()
                except FolderBusyError:
                    self._created_dirs = []  # the other run writes into them
                    raise
            remove_stale_partials(self.folder)
            if not self.overwrite:
                existing = existing_outputs(self.paths, self.is_stem)
                if existing:
                    raise OutputError(
                        f"outputs already exist: {describe_paths(existing)} "
                        "(use --force to replace them)"
                    )
            self._owns_temporary = True
            for temporary in self._atomic.temporaries:
                self._files.append(
                    soundfile.SoundFile(
                        # bytes: libsndfile takes any file name, UTF-8 or not
                        os.fsencode(temporary),
                        "w",
                        self.sample_rate,
                        self.channels,
                        self.subtype,
                        format=stem_extension(self.wav_format)[1:].upper(),
                        **(_MP3_ENCODING if self.wav_format == "mp3" else {}),
                    )
                )
        return self

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` of shape ``(K, samples)``, one row per stem."""
        if block.shape[0] != len(self._files):
            raise ValueError(f"expected {len(self._files)} stems, got {block.shape[0]}")
        if block.size:
            self.peak = max(self.peak, float(np.abs(block).max()))
        if self.clip and self.peak > 1.0:
            beyond = int(np.count_nonzero(np.abs(block) > 1.0))
            if beyond:
                self.clipped_samples += beyond
                block = np.clip(block, -1.0, 1.0)
        try:
            for handle, samples in zip(self._files, block, strict=True):
                handle.write(np.ascontiguousarray(samples, dtype=np.float32))
        except (OSError, soundfile.SoundFileError) as error:
            raise self._error("cannot write stems in", error) from None

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
            with self._discard_on_failure("cannot publish stems in"):
                self._publish()
        finally:
            self._unlock()

    def _publish(self) -> None:
        for handle in self._files:
            handle.close()
        if not self.overwrite:
            # another run (one that takes no lock) may have published meanwhile
            existing = existing_outputs(self.paths, self.is_stem)
            if existing:
                raise OutputError(
                    f"outputs appeared while this run was writing: {describe_paths(existing)} "
                    "(another run?); nothing was replaced (use --force to replace them)"
                )
        earlier = existing_outputs(self.paths, self.is_stem) if self.is_stem else []
        self._atomic.publish()
        for path in earlier:  # the rest of an earlier set: its players differ from this one's
            if path not in self.paths:
                with contextlib.suppress(OSError):
                    path.unlink()

    def _error(self, doing: str, error: BaseException) -> OutputError:
        return write_error(doing, error, self.folder)

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def _make_parents(self, directory: Path) -> None:
        """Create ``directory`` (and parents), remembering which ones this writer made."""
        for folder in missing_folders(directory):
            folder.mkdir()
            self._created_dirs.append(folder)

    def _discard(self) -> None:
        # cleaning up must not mask the original error
        for handle in self._files:
            with contextlib.suppress(Exception):
                handle.close()
        if self._owns_temporary:
            self._atomic.discard()
        remove_empty_folders(self._created_dirs)
        self._unlock()
