"""Reading audio: probe a file, stream its audio in blocks, read short files whole.

Any file ffmpeg reads is accepted (wav, flac, mp3, ogg, m4a, and the audio of mp4/mov/mkv/webm).
Running ffmpeg (which binary, its errors, the one probe per file) is :mod:`vimss_cli.ffmpeg_io`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from vimss_cli import ffmpeg_io
from vimss_cli.errors import (
    EmptyAudioError,
    InputError,
    MediaError,
    NoAudioStreamError,
    NonFiniteAudioError,
    TruncatedMediaError,
)

#: Samples per block handed out by :class:`AudioStream` (about 3 s at 22.05 kHz).
DEFAULT_BLOCK_FRAMES = 65536


@dataclass(frozen=True)
class MediaInfo:
    """What ``ffmpeg -i`` says about a file.

    ``duration`` is in seconds (``None`` when unknown); ``duration_is_estimate`` is set when
    ffmpeg guessed it from the bit rate, so it cannot be used to detect truncation.
    """

    path: Path
    duration: float | None
    duration_is_estimate: bool
    has_audio: bool
    has_video: bool
    audio_sample_rate: int | None
    #: Exact frame count of the first audio stream when libsndfile can read the header.
    audio_frames: int | None
    #: ffmpeg's sample format of the audio stream separated (``s16``, ``fltp``...), if stated.
    audio_sample_format: str | None = None
    #: Channels of the audio stream separated (:attr:`audio_index`), if stated.
    audio_channels: int | None = None
    #: How many audio streams the file holds (only one is separated).
    audio_streams: int = 1
    #: The audio stream described and decoded (``a:N``): the first, or the one marked
    #: default when the first is not.
    audio_index: int = 0
    #: That stream's channels have no names (``9 channels``): ffmpeg cannot downmix them
    #: (they are averaged, as every stream's channels are).
    audio_channels_unnamed: bool = False
    #: When the file's clock starts (s), if stated: its streams' times are on that clock.
    start: float | None = None
    #: A still picture (a PNG, a JPEG...), not a video.
    still_image: bool = False

    @property
    def may_exceed_full_scale(self) -> bool:
        """Whether the samples can lie beyond ±1 (float formats can; integer ones cannot)."""
        return self.audio_sample_format is None or self.audio_sample_format.startswith(
            ("flt", "dbl")
        )


def check_input_path(path: Path) -> Path:
    """Raise a clear :class:`InputError` unless ``path`` names a readable regular file.

    Named pipes, devices and sockets are refused: probing a pipe would consume what the
    decoder then waits for in vain.
    """
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        raise InputError(f"input is a directory, not a media file: {path}")
    if not path.is_file():
        mode = path.stat().st_mode
        kind = "a device"
        if stat.S_ISFIFO(mode):
            kind = "a named pipe"
        elif stat.S_ISSOCK(mode):
            kind = "a socket"
        raise InputError(f"input is {kind}, not a regular file: {path}")
    if not os.access(path, os.R_OK):
        raise InputError(f"input is not readable: {path}")
    return path


def probe(path: Path) -> MediaInfo:
    """Describe a media file from one ``ffmpeg -i`` (no ffprobe is needed) and, for the
    formats libsndfile reads, its header's exact frame count.

    Raises :class:`InputError` for a path that is not a readable regular file and
    :class:`MediaError` with ffmpeg's message when ffmpeg cannot open the file.
    """
    check_input_path(path)
    found = ffmpeg_io.probe(path)
    audio = found.audio[found.audio_index] if found.audio else None
    return MediaInfo(
        path=path,
        duration=found.duration,
        duration_is_estimate=found.duration_is_estimate,
        has_audio=audio is not None,
        has_video=bool(found.video),
        audio_sample_rate=audio.sample_rate if audio else None,
        audio_frames=_exact_frames(path, audio.sample_rate if audio else None),
        audio_sample_format=audio.sample_format if audio else None,
        audio_channels=audio.channels if audio else None,
        audio_streams=len(found.audio),
        audio_channels_unnamed=audio.unnamed_channels if audio else False,
        audio_index=found.audio_index,
        start=found.start,
        still_image=found.still_image,
    )


#: How the files whose headers state their exact length begin: RIFF and RF64 WAV, Wave64,
#: AIFF, CAF, FLAC and Ogg. An MP3's length as libsndfile tells it is an estimate without a
#: Xing header (for a VBR file a third of the truth), so MP3 is counted by decoding.
_EXACT_MAGIC = (b"RIFF", b"RF64", b"riff", b"FORM", b"caff", b"fLaC", b"OggS")


def _exact_frames(path: Path, rate: int | None) -> int | None:
    """Frame count from the header when it states it (wav, flac, ogg...) at ``rate``, the
    rate ffmpeg decodes at; else ``None``. Opus is always decoded at 48 kHz, but libsndfile
    counts it at its source's rate (8 to 48 kHz): such a count is not used."""
    try:
        with path.open("rb") as handle:
            if not handle.read(4).startswith(_EXACT_MAGIC):
                return None  # not even asked: libsndfile's MP3 reader prints on a bad file
        if _wav_is_streamed(path):
            return None  # written into a pipe: no length in the header
        info = soundfile.info(str(path))
    except Exception:  # libsndfile does not know the format: fall back to ffmpeg's count
        return None
    if info.frames <= 0 or info.samplerate != rate:
        return None
    return int(info.frames)


def count_frames(path: Path, sample_rate: int) -> int:
    """How many samples the file decodes to at ``sample_rate`` (one decoding pass)."""
    with AudioStream(path, sample_rate) as stream:
        return sum(block.size for block in stream)


def expected_output_frames(info: MediaInfo, sample_rate: int) -> int | None:
    """Exact number of samples the input lasts at ``sample_rate``, when the header tells it."""
    if info.audio_frames is None or not info.audio_sample_rate:
        return None
    return round(info.audio_frames * sample_rate / info.audio_sample_rate)


def _decode_command(
    path: Path,
    sample_rate: int,
    channel: int | None = None,
    average: int | None = None,
    stream: int = 0,
) -> list[str]:
    """ffmpeg arguments that write audio stream ``stream`` as mono float32 to stdout: the
    mean of its first ``average`` channels, or only ``channel`` (0-based), or with neither
    ffmpeg's mono downmix (a mono file, or one whose channels cannot be counted).

    Any decoding error stops ffmpeg (``-xerror``), except in a streamed WAV, whose last packet
    ffmpeg calls corrupt only because the header could not say where the data ends.
    """
    strict = {} if _wav_is_streamed(path) else {"xerror": None}
    audio = ffmpeg_io.input_file(v="error", nostdin=None, hide_banner=None, **strict)[f"a:{stream}"]
    if channel is not None:
        audio = audio.filter("channelmap", map=str(channel), channel_layout="mono")
    elif average:
        # in float (pan would otherwise mix 16-bit samples in 16 bits, rounding the mean to
        # half a step); "<": pan scales the gains to sum to one
        audio = audio.filter("aformat", sample_fmts="flt")
        audio = audio.filter("pan", "mono|c0<" + "+".join(f"c{c}" for c in range(average)))
    graph = audio.output("pipe:1", format="f32le", ac=1, ar=sample_rate)
    return ffmpeg_io.command(graph, path)


class AudioStream(ffmpeg_io.FfmpegProcess):
    """Decode a file's first audio stream to mono float32 at ``sample_rate``, block by block:
    the mean of its channels ((L + R) / 2 for stereo: never beyond full scale when each
    channel is within it, the level of what both channels share kept, as
    :meth:`vimss_cli.api.Separator.separate_array` downmixes), or only ``channel``, 0-based.

    Iterating yields 1-D ``np.float32`` arrays of at most ``block_frames`` samples. When the
    file's header states its exact length, the stream is padded or trimmed to exactly that
    many samples at ``sample_rate`` (resamplers may differ by a sample or two). Errors are
    raised as typed :class:`MediaError` subclasses carrying ffmpeg's message; a stream that
    ends before the header says it should raises :class:`TruncatedMediaError` at its end.

    Use as a context manager so the ffmpeg process is always reaped::

        with AudioStream(path, 22050) as stream:
            for block in stream:
                ...
    """

    def __init__(
        self,
        path: Path,
        sample_rate: int,
        block_frames: int = DEFAULT_BLOCK_FRAMES,
        channel: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.channel = channel
        self.block_frames = block_frames
        self.info = probe(self.path)
        if not self.info.has_audio:
            if self.info.still_image:
                raise NoAudioStreamError(f"{self.path} is a picture with no sound")
            kind = "a video" if self.info.has_video else "a file"
            raise NoAudioStreamError(f"{self.path} is {kind} with no audio stream")
        self.expected_frames = expected_output_frames(self.info, sample_rate)
        self.frames_read = 0
        super().__init__()  # after probing: a file that cannot be read leaves nothing open

    @property
    def duration_hint(self) -> float | None:
        """Best known duration in seconds before decoding (for progress bars)."""
        if self.expected_frames is not None:
            return self.expected_frames / self.sample_rate
        return self.info.duration

    def __iter__(self) -> Iterator[np.ndarray]:
        info = self.info
        channels = info.audio_channels or 1
        average = channels if channels > 1 else None  # the mean, whatever the layout
        stdout = self._start(
            _decode_command(self.path, self.sample_rate, self.channel, average, info.audio_index)
        )
        limit = self.expected_frames
        pending = b""
        block_bytes = 4 * self.block_frames
        while True:
            chunk = stdout.read(block_bytes - len(pending))
            if not chunk:
                break
            pending += chunk
            if len(pending) < block_bytes:
                continue
            block, pending = np.frombuffer(pending, dtype="<f4"), b""
            yield from self._emit(block, limit)
        self._finish_process()
        usable = len(pending) - len(pending) % 4
        if usable:
            yield from self._emit(np.frombuffer(pending[:usable], dtype="<f4"), limit)
        self._check_length()
        if limit is not None and self.frames_read < limit:
            missing = limit - self.frames_read
            for start in range(0, missing, self.block_frames):
                count = min(self.block_frames, missing - start)
                self.frames_read += count
                yield np.zeros(count, dtype=np.float32)

    def _emit(self, block: np.ndarray, limit: int | None) -> Iterator[np.ndarray]:
        """Check a decoded block for NaN/Inf, apply the exact-length limit, count it."""
        if limit is not None:
            block = block[: max(0, limit - self.frames_read)]
        if block.size == 0:
            return
        finite = np.isfinite(block)
        if not finite.all():
            first = self.frames_read + int(np.argmin(finite))
            raise NonFiniteAudioError(
                f"{self.path} holds NaN or infinite samples "
                f"(first at {first / self.sample_rate:.3f} s)"
            )
        self.frames_read += block.size
        yield block.astype(np.float32, copy=True)

    def _finish_process(self) -> None:
        returncode, stderr = self._wait()
        if returncode == 0:
            return
        message = ffmpeg_io.ffmpeg_message(stderr)
        if "matches no streams" in stderr:
            raise NoAudioStreamError(f"{self.path} has no audio stream", message)
        if "corrupt" in stderr.lower() or "Invalid data" in stderr:
            raise TruncatedMediaError(f"{self.path} is truncated or corrupt", message)
        raise MediaError(f"cannot decode the audio of {self.path}", message)

    def _check_length(self) -> None:
        expected = self.expected_frames
        if (self.frames_read == 0 and expected is None) or expected == 0:
            native = self.info.audio_sample_rate
            if native and native != self.sample_rate:  # ffmpeg's resampler gives nothing
                raise EmptyAudioError(  # for a millisecond or so
                    f"{self.path} holds no audio samples, or too few to resample from {native} "
                    f"to {self.sample_rate} Hz (a few milliseconds)"
                )
            raise EmptyAudioError(f"{self.path} holds no audio samples")
        decoded_seconds = self.frames_read / self.sample_rate
        stated = self.info.duration
        # a container's duration is its longest stream's: only files of one stream compare
        if (
            stated is None
            or self.info.duration_is_estimate
            or self.info.has_video
            or self.info.audio_streams > 1
        ):
            return
        if decoded_seconds < 0.98 * stated - 0.2:
            raise TruncatedMediaError(
                f"{self.path} is truncated: its header states {stated:.2f} s "
                f"but only {decoded_seconds:.2f} s decode"
            )


def channel_peaks(
    path: Path,
    sample_rate: int,
    channels: int | None = None,
    progress: Callable[[float], None] | None = None,
    observe: Callable[[int, np.ndarray], None] | None = None,
) -> tuple[list[float], int]:
    """Largest magnitude of the file's samples at ``sample_rate``: ``[peak]`` of its mono
    downmix (the mean of its channels), or with ``channels`` one per channel of the first
    ``channels`` (a pass per channel); and how many samples at ``sample_rate`` one pass
    decoded (the input's exact length, which a header's duration only estimates).

    ``progress`` is called after each decoded block with the seconds of audio read so far,
    divided by the number of passes (so it runs from 0 to the file's duration once).
    ``observe`` is called with each pass's index (0 for the downmix) and each block it
    decodes ``(n,)``: what else wants to hear the whole input before it is separated."""
    peaks = []
    passes = channels or 1
    done = 0
    for index, channel in enumerate(range(channels) if channels else [None]):
        peak = 0.0
        with AudioStream(path, sample_rate, channel=channel) as stream:
            for block in stream:
                peak = max(peak, float(np.abs(block).max()))
                if observe is not None:
                    observe(index, block)
                done += block.size
                if progress is not None:
                    progress(done / sample_rate / passes)
        peaks.append(peak)
    return peaks, done // passes


def _read_native(path: Path, sample_rate: int) -> np.ndarray | None:
    """The file's samples through libsndfile when it is a mono WAV, FLAC or Ogg Vorbis file
    already at ``sample_rate``, else ``None`` (ffmpeg must convert it).

    For such files ffmpeg would only convert the samples to float32 (``x / 32768`` for
    16-bit PCM), which libsndfile does identically, without a process per file and without
    ffmpeg at all (the GPU training machine has none).
    """
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError):
        return None
    if info.channels != 1 or info.samplerate != sample_rate or info.format not in NATIVE_FORMATS:
        return None
    if info.format == "WAV" and (_wav_data_is_short(path) or _wav_is_streamed(path)):
        return None  # truncated (ffmpeg's path says so), or a length only decoding tells
    try:
        samples, _ = soundfile.read(str(path), dtype="float32", always_2d=False)
    except (soundfile.LibsndfileError, RuntimeError, OSError):
        return None
    if samples.size < info.frames:
        return None  # fewer samples than the header states: ffmpeg's path says why
    if samples.size == 0:
        raise EmptyAudioError(f"{path} holds no audio samples")
    finite = np.isfinite(samples)
    if not finite.all():
        first = int(np.argmin(finite))
        raise NonFiniteAudioError(
            f"{path} holds NaN or infinite samples (first at {first / sample_rate:.3f} s)"
        )
    return samples


#: the ``data`` sizes a WAV writer that cannot seek back leaves: ffmpeg's into a pipe, sox's
#: (``MS_UNSPEC``), and none at all
_STREAMED_SIZES = (0xFFFFFFFF, 0x7FFFF000, 0)


def _wav_data_size(path: Path) -> tuple[int, int] | None:
    """``(declared, present)``: the bytes a RIFF/WAVE file's ``data`` chunk declares and
    those the file holds after its header; ``None`` for other files."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        header = handle.read(12)
        if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return None
        offset = 12
        while offset + 8 <= size:
            handle.seek(offset)
            chunk = handle.read(8)
            declared = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                return declared, size - (offset + 8)
            offset += 8 + declared + (declared & 1)
    return None


def _wav_is_streamed(path: Path) -> bool:
    """True for a WAV written into a pipe: its ``data`` size is a placeholder and its samples
    run to the end of the file."""
    try:
        sizes = _wav_data_size(path)
    except OSError:
        return False
    return sizes is not None and sizes[0] in _STREAMED_SIZES and sizes[1] > 0


def _wav_data_is_short(path: Path) -> bool:
    """True when a RIFF/WAVE file holds fewer bytes than its ``data`` chunk declares (a
    streamed WAV's placeholder size declares nothing)."""
    sizes = _wav_data_size(path)
    return sizes is not None and sizes[0] not in _STREAMED_SIZES and sizes[1] < sizes[0]


#: libsndfile containers :func:`read_audio` decodes without ffmpeg.
NATIVE_FORMATS = ("WAV", "FLAC", "OGG")


def read_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Decode a whole file to a mono float32 array of shape ``(samples,)`` (for short files).

    Mono WAV/FLAC/Ogg files at ``sample_rate`` are read by libsndfile (same samples, no
    ffmpeg process); anything else goes through ffmpeg (:class:`AudioStream`).
    """
    native = _read_native(Path(path), sample_rate)
    if native is not None:
        return native
    with AudioStream(path, sample_rate) as stream:
        return np.concatenate(list(stream))
