"""Typed user-facing errors.

Every error a user can cause is one of these; the CLI turns each into a single line on stderr
and a non-zero exit code: 2 for a bad argument (:class:`InputError`), 4 for a training run
that diverged (:class:`TrainingDivergedError`), 1 for everything else (130: interrupted).
Library code raises them and never prints.
"""

from __future__ import annotations


class VimssError(Exception):
    """Base class of every error caused by the user's inputs or environment."""

    exit_code: int = 1


class InputError(VimssError):
    """A command-line value or API argument is not acceptable."""

    exit_code = 2


class MediaError(VimssError):
    """A media file cannot be read or decoded; carries ffmpeg's own message when there is one."""

    def __init__(self, message: str, ffmpeg_message: str | None = None) -> None:
        if ffmpeg_message:
            message = f"{message} (ffmpeg: {ffmpeg_message})"
        super().__init__(message)
        self.ffmpeg_message = ffmpeg_message


class NoAudioStreamError(MediaError):
    """The file has no audio stream."""


class EmptyAudioError(MediaError):
    """The audio stream holds no samples."""


class TruncatedMediaError(MediaError):
    """The file ends before its header says it should."""


class NonFiniteAudioError(MediaError):
    """The decoded audio holds NaN or infinite samples."""


class OutputError(VimssError):
    """Outputs cannot be written (unwritable directory, existing files without --force)."""


class OutputsExistError(OutputError):
    """Outputs exist and ``force`` was not given."""


class CheckpointError(VimssError):
    """A checkpoint cannot be found, verified or loaded."""


class UnknownModelError(InputError, CheckpointError):
    """``--model`` names no bundled model, file or hub reference: a bad argument (exit 2)."""


class DeviceError(VimssError):
    """The requested device or precision is not available here."""


class MissingDependencyError(VimssError):
    """A system package the command needs (a program or data files) is not installed."""


class TrainingDivergedError(VimssError):
    """The training loss became NaN or infinite: the settings, not an argument, are at fault."""

    exit_code = 4


class NonFiniteOutputError(VimssError):
    """The network returned NaN or infinite values: its weights or the precision are at
    fault, not the input (which was checked)."""
