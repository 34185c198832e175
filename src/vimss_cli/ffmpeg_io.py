"""Running ffmpeg: the binary, command graphs, its errors, one probe per file, and the
streaming process that the audio reader (:mod:`vimss_cli.media`) and the frame reader
(:mod:`vimss_cli.vision.frames`) are built on.

* :func:`ffmpeg_executable`: ``$VIMSS_FFMPEG``, else the system ``ffmpeg``, else the static
  binary that ``imageio-ffmpeg`` ships (so installing needs no system package).
* :func:`command`: an ``ffmpeg-python`` graph over one input file, as arguments to run.
* :func:`ffmpeg_message`: the telling line of ffmpeg's stderr, for the errors users see.
* :func:`probe`: one ``ffmpeg -i`` of a file, parsed once: duration, audio streams (rate,
  channels, sample format), picture streams (size, rotation, frame rate).
* :class:`FfmpegProcess`: ffmpeg writing raw samples or pixels to a pipe, always reaped.
* :func:`feed`: ffmpeg reading raw frames from a pipe (an encoder), run to the end.

Everything ffmpeg prints is parsed here and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Self

import ffmpeg

from vimss_cli.errors import MediaError, MissingDependencyError

#: What a graph names its input file: ffmpeg-python hashes its arguments as UTF-8 text, and
#: a file name need not be UTF-8 (subprocess passes such a name on byte for byte).
INPUT_PLACEHOLDER = "\0input"


@lru_cache(maxsize=1)
def ffmpeg_executable() -> str:
    """Path of the ffmpeg binary to run: ``$VIMSS_FFMPEG``, the system one, or imageio-ffmpeg's."""
    override = os.environ.get("VIMSS_FFMPEG")
    if override:
        found = shutil.which(override)
        if found is None:
            raise MissingDependencyError(
                f"VIMSS_FFMPEG={override} is not an ffmpeg that can be run (no such "
                "executable); fix it, or unset it to use the system ffmpeg"
            )
        return found
    system = shutil.which("ffmpeg")
    if system:
        return system
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def input_file(**options: Any) -> Any:
    """The input node of a graph over one file (named at :func:`command` time), with
    ``options`` before its ``-i`` (``copyts=None`` gives ``-copyts``)."""
    return ffmpeg.input(INPUT_PLACEHOLDER, **options)


def command(graph: Any, path: Path) -> list[str]:
    """The arguments that run ``graph`` (built on :func:`input_file`) on ``path``."""
    compiled = graph.compile(cmd=ffmpeg_executable())
    return [str(path) if argument == INPUT_PLACEHOLDER else argument for argument in compiled]


def run(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ffmpeg to the end with its output captured as text (stderr holds what it says)."""
    return subprocess.run(arguments, capture_output=True, text=True, errors="replace", check=False)


#: ffmpeg's closing lines that only say that something before them failed.
_AFTERMATH = ("Terminating thread", "Error while decoding", "Error while filtering",
              "Conversion failed", "Nothing was written", "Task finished with error")  # fmt: skip


def ffmpeg_message(stderr: str) -> str:
    """The most telling line of ffmpeg's stderr, without its ``[component @ 0x...]``
    prefixes, at most 300 characters: the last error line that names what went wrong
    (``Invalid NAL unit size ...``), not the closing ones that only say something did
    (``Terminating thread ...``); else its last error line, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [re.sub(r"^(\[[^\]]*\]\s*)+", "", line) for line in lines]
    telling = [line for line in lines if re.search(r"[Ee]rror|Invalid|corrupt", line)]
    causes = [line for line in telling if not line.startswith(_AFTERMATH)]
    if causes:
        return causes[-1][:300]
    return (telling or lines or ["no message"])[-1][:300]


# ------------------------------------------------------------------------------- probing


@dataclass(frozen=True)
class AudioStreamInfo:
    """An audio stream as ffmpeg describes it; ``None`` where it does not say."""

    sample_rate: int | None
    channels: int | None
    #: ffmpeg's sample format (``s16``, ``fltp``...)
    sample_format: str | None
    #: True when ffmpeg knows the channels' count but not what they are (``9 channels``):
    #: it cannot downmix them itself
    unnamed_channels: bool = False
    #: the file marks this stream as the one to play (``(default)``)
    default: bool = False


@dataclass(frozen=True)
class VideoStreamInfo:
    """A picture stream (not an attached cover picture) as ffmpeg describes it."""

    #: stored size in pixels, before any rotation
    width: int | None
    height: int | None
    #: the display matrix's rotation in degrees (a phone's rotation metadata), if any
    rotation: float | None
    #: frames per second, if stated
    fps: float | None

    @property
    def display_size(self) -> tuple[int, int] | None:
        """``(width, height)`` of the decoded pictures: ffmpeg applies a quarter turn."""
        if self.width is None or self.height is None:
            return None
        if self.rotation is not None and round(self.rotation) % 180 == 90:
            return self.height, self.width
        return self.width, self.height


@dataclass(frozen=True)
class Probe:
    """What ``ffmpeg -i`` says about a file: ``duration`` in seconds (``None`` when unknown;
    ``duration_is_estimate`` when ffmpeg guessed it from the bit rate), and its streams."""

    path: Path
    duration: float | None
    duration_is_estimate: bool
    audio: tuple[AudioStreamInfo, ...]
    video: tuple[VideoStreamInfo, ...]
    #: when the file's clock starts (s; an MPEG-TS often starts at 1.4), if stated
    start: float | None = None
    #: ffmpeg read it as a still picture (``png_pipe``, ``jpeg_pipe``, ``image2``...)
    still_image: bool = False

    @property
    def audio_index(self) -> int:
        """Which audio stream a player would play: the first, unless another is marked
        default and the first is not (a second language, a commentary or a remix first)."""
        if not self.audio or self.audio[0].default:
            return 0
        return next((i for i, stream in enumerate(self.audio) if stream.default), 0)


_DEMUXER = re.compile(r"Input #0, (\S+), from")
_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_START = re.compile(r"Duration:[^\n]*?start:\s*(-?\d+(?:\.\d+)?)")
_RATE = re.compile(r"(\d+) Hz")
_LAYOUT = re.compile(r"\d+ Hz, ([^,]+)")
_SAMPLE_FORMAT = re.compile(r",\s*((?:u8|s16|s32|s64|flt|dbl)p?)\b")
_SIZE = re.compile(r",\s*(\d{2,5})x(\d{2,5})[\s,\[]")
_FPS = re.compile(r"(\d+(?:\.\d+)?)(k?) fps")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")
#: the commonest channel layout names -> channel counts, should ``ffmpeg -layouts`` fail
_LAYOUTS = {"mono": 1, "stereo": 2, "2.1": 3, "3.0": 3, "quad": 4, "4.0": 4, "5.0": 5, "5.1": 6}
_LAYOUT_ROW = re.compile(r"^(\S+)\s+([A-Z0-9]+(?:\+[A-Z0-9]+)*)\s*$")


@lru_cache(maxsize=1)
def channel_layouts() -> dict[str, int]:
    """Every standard channel layout name ffmpeg prints (``7.1``, ``hexagonal``, ``22.2``,
    ``5.1(side)``...) -> its channel count, from ffmpeg's own table (``ffmpeg -layouts``)."""
    layouts = dict(_LAYOUTS)
    text = run([ffmpeg_executable(), "-hide_banner", "-layouts"]).stdout
    standard = text.split("Standard channel layouts:", 1)[-1]
    for line in standard.splitlines():
        row = _LAYOUT_ROW.match(line)
        if row and row.group(1) != "NAME":
            layouts[row.group(1)] = row.group(2).count("+") + 1
    return layouts


def probe(path: Path) -> Probe:
    """Describe a media file from one ``ffmpeg -i`` (no ffprobe is needed).

    Raises :class:`MediaError` with ffmpeg's message when ffmpeg cannot open the file.
    """
    # a literal argument list: ``ffmpeg -i FILE`` has no output, and ffmpeg-python only
    # compiles graphs that end in one
    text = run([ffmpeg_executable(), "-hide_banner", "-nostdin", "-i", str(path)]).stderr
    if "Input #0" not in text:
        raise MediaError(f"cannot read {path} as audio or video", ffmpeg_message(text))
    duration = None
    match = _DURATION.search(text)
    if match:
        hours, minutes, seconds = match.groups()
        duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    lines = text.splitlines()
    audio, video = [], []
    for index, line in enumerate(lines):
        if not line.strip().startswith("Stream #"):
            continue
        if ": Audio:" in line:
            audio.append(_audio_stream(line))
        elif ": Video:" in line and "attached pic" not in line:
            video.append(_video_stream(line, lines[index + 1 :]))
    start = _START.search(text)
    demuxer = _DEMUXER.search(text)
    return Probe(
        path=Path(path),
        duration=duration,
        duration_is_estimate="Estimating duration from bitrate" in text,
        audio=tuple(audio),
        video=tuple(video),
        start=float(start.group(1)) if start else None,
        still_image=bool(demuxer and demuxer.group(1).endswith(("_pipe", "image2", "image2pipe"))),
    )


def _audio_stream(line: str) -> AudioStreamInfo:
    """From ffmpeg's audio stream line (``..., 48000 Hz, stereo, fltp, ...``)."""
    rate = _RATE.search(line)
    sample_format = _SAMPLE_FORMAT.search(line)
    found = _LAYOUT.search(line)
    layout = found.group(1).strip() if found else None
    return AudioStreamInfo(
        sample_rate=int(rate.group(1)) if rate else None,
        channels=_channel_count(layout),
        sample_format=sample_format.group(1) if sample_format else None,
        unnamed_channels=bool(layout and re.fullmatch(r"\d+ channels", layout)),
        default="(default)" in line,
    )


def _channel_count(layout: str | None) -> int | None:
    """Channels of ffmpeg's layout text (``stereo``, ``7.1``, ``3 channels (FL+FR+LFE)``)."""
    if layout is None:
        return None
    counted = re.fullmatch(r"(\d+) channels.*", layout)
    if counted:
        return int(counted.group(1))
    if "+" in layout:  # a layout without a name, spelled out: FL+FR+LFE
        return layout.count("+") + 1
    known = channel_layouts()
    return known.get(layout, known.get(layout.split("(")[0]))


def _video_stream(line: str, following: list[str]) -> VideoStreamInfo:
    """From ffmpeg's picture stream line (``..., 1920x1080 [SAR 1:1 DAR 16:9], 25 fps, ...``)
    and the lines after it up to the next stream (side data: the display matrix)."""
    size = _SIZE.search(line)
    fps = _FPS.search(line)
    rotation = None
    for later in following:
        if later.strip().startswith("Stream #"):
            break
        found = _ROTATION.search(later)
        if found:
            rotation = float(found.group(1))
            break
    return VideoStreamInfo(
        width=int(size.group(1)) if size else None,
        height=int(size.group(2)) if size else None,
        rotation=rotation,
        fps=float(fps.group(1)) * (1000 if fps.group(2) else 1) if fps else None,
    )


_PTS_TIME = re.compile(r"pts_time:\s*(-?[\d.]+(?:e-?\d+)?)")


@dataclass(frozen=True)
class CopyPass:
    """One pass that copies a stream's packets without decoding them: when they begin and
    end (seconds on the file's own clock; ``None`` if there were none), what ffmpeg said,
    and its exit status."""

    start: float | None
    end: float | None
    stderr: str
    returncode: int

    @property
    def seconds(self) -> float | None:
        """How long the stream lasts, from its first packet to the end of its last."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start


#: framecrc's "no timestamp" (AV_NOPTS_VALUE)
_NO_PTS = -(2**63)


def copy_pass(path: Path, stream: str) -> CopyPass:
    """Read stream ``stream`` (``"a:0"`` or ``"v:0"``) of ``path`` to its end by copying its
    packets (fast: nothing is decoded), listing each packet's timestamps (ffmpeg's
    ``framecrc``, with the file's own clock kept: ``-copyts``). A stream may start later than
    the file does (a picture that begins seconds after the sound): its span says so."""
    graph = input_file(hide_banner=None, nostdin=None, copyts=None)[stream].output(
        "-", c="copy", format="framecrc"
    )
    result = run(command(graph, path))
    base, first, last = None, None, None
    for line in result.stdout.splitlines():
        if line.startswith("#tb 0:"):
            numerator, denominator = line.split(":", 1)[1].strip().split("/")
            base = int(numerator) / int(denominator)
        elif line and not line.startswith("#"):
            fields = line.split(",")
            if len(fields) < 4 or int(fields[2]) == _NO_PTS:
                continue
            pts, duration = int(fields[2]), max(int(fields[3]), 0)
            first = pts if first is None else min(first, pts)
            last = pts + duration if last is None else max(last, pts + duration)
    if base is None or first is None or last is None:
        return CopyPass(None, None, result.stderr, result.returncode)
    # packets before the clock's zero are an encoder's priming, dropped when decoding
    return CopyPass(max(first * base, 0.0), last * base, result.stderr, result.returncode)


def first_audio_time(path: Path, index: int = 0) -> float:
    """Timestamp (s, the file's own clock) of the first decoded sample of audio stream
    ``index``."""
    graph = (
        input_file(hide_banner=None, nostdin=None, copyts=None)[f"a:{index}"]
        .filter("ashowinfo")
        .output("-", format="null", **{"frames:a": 1})
    )
    match = _PTS_TIME.search(run(command(graph, path)).stderr)
    return float(match.group(1)) if match else 0.0


# ------------------------------------------------------------------------------ streaming


def feed(arguments: list[str], chunks: Iterable[bytes]) -> subprocess.CompletedProcess[str]:
    """Run ffmpeg to the end with ``chunks`` written to its stdin (raw frames to encode).

    Its stderr goes to a temporary file, so ffmpeg never blocks on a full pipe. When ffmpeg
    stops reading (it failed), the feeding stops: its exit status and stderr say why.
    """
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            arguments, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr
        )
        assert process.stdin is not None  # set by stdin=PIPE
        try:
            for chunk in chunks:
                process.stdin.write(chunk)
            process.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg stopped reading: its exit status tells
        finally:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()  # (again: after a failed write, what it holds is lost)
            returncode = process.wait()
        stderr.seek(0)
        said = stderr.read().decode("utf-8", errors="replace")
    return subprocess.CompletedProcess(arguments, returncode, "", said)


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """Kill ``process`` if it still runs, reap it and close its stdout (``None``: nothing)."""
    if process is None:
        return
    if process.poll() is None:
        process.kill()
    process.wait()
    if process.stdout:
        process.stdout.close()


class FfmpegProcess:
    """Base of a reader of what one ffmpeg process writes to its stdout (raw samples or
    pixels). Its stderr goes to a temporary file, so ffmpeg never blocks on a full pipe.

    Use as a context manager: :meth:`close` always kills and reaps ffmpeg.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop ffmpeg if it still runs and release its pipes."""
        stop_process(self._process)
        self._process = None
        self._stderr.close()

    def _start(self, arguments: list[str]) -> IO[bytes]:
        """Start ffmpeg; its stdout, to read from."""
        self._process = subprocess.Popen(
            arguments, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL
        )
        assert self._process.stdout is not None  # set by stdout=PIPE
        return self._process.stdout

    def _wait(self) -> tuple[int, str]:
        """Wait for ffmpeg to end: its exit status and everything it wrote to stderr."""
        assert self._process is not None  # started by _start
        returncode = self._process.wait()
        self._stderr.seek(0)
        return returncode, self._stderr.read().decode("utf-8", errors="replace")
