"""Decoding a video's pictures with ffmpeg, streaming, at a low rate and size, on the audio clock.

The audio clock starts at the first audio sample (what :class:`vimss_cli.media.AudioStream`
yields as sample 0). Frames are decoded with ``-copyts`` (the file's own timestamps) through
ffmpeg's ``fps`` filter started at the audio stream's first timestamp, so frame ``n`` is the
picture shown at audio time ``n / rate`` exactly: a video stream that starts later than its
audio is padded with its first picture, one that starts earlier is trimmed, and variable frame
rate is resampled by timestamp (frames are repeated or dropped, never shifted), so the pictures
cannot drift against the audio.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vimss_cli.errors import InputError, MediaError
from vimss_cli.media import _ffmpeg_message, ffmpeg_executable, probe, stop_process

#: Default decoding rate (frames per second on the audio clock).
DEFAULT_RATE = 10.0
#: Default longest side of decoded frames, in pixels.
DEFAULT_MAX_SIDE = 640

_SIZE = re.compile(r",\s*(\d{2,5})x(\d{2,5})[\s,\[]")
_PTS_TIME = re.compile(r"pts_time:\s*(-?[\d.]+(?:e-?\d+)?)")
_TIME = re.compile(r"time=\s*(\d+):(\d+):(\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class VideoInfo:
    """What the front end needs to know about a video file.

    Attributes:
        width, height: picture size in pixels (what boxes are given in).
        duration: container duration in seconds, or ``None``.
        has_audio: whether there is an audio stream (the clock frames are put on).
        audio_start: the first audio timestamp in seconds (0.0 when there is no audio).
    """

    path: Path
    width: int
    height: int
    duration: float | None
    has_audio: bool
    audio_start: float


def _run_ffmpeg(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ffmpeg_executable(), "-hide_banner", "-nostdin", *args],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )


_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")


def _quarter_turned(text: str, stream_line: str) -> bool:
    """Whether the stream's display matrix (a phone's rotation metadata) turns it by 90 or
    270 degrees; ``text`` is ffmpeg's description of the file, ``stream_line`` the stream's."""
    lines = text.splitlines()
    start = lines.index(stream_line) + 1
    for line in lines[start:]:
        if line.strip().startswith("Stream #"):
            break
        found = _ROTATION.search(line)
        if found:
            return round(float(found.group(1))) % 180 == 90
    return False


def probe_video(path: Path) -> VideoInfo:
    """Describe a file's first picture stream; :class:`InputError` when it has none."""
    info = probe(Path(path))
    if not info.has_video:
        raise InputError(f"{path} has no picture stream to find players in")
    text = _run_ffmpeg(["-i", str(path)]).stderr
    video_lines = [
        line
        for line in text.splitlines()
        if line.strip().startswith("Stream #") and ": Video:" in line and "attached pic" not in line
    ]
    match = _SIZE.search(video_lines[0]) if video_lines else None
    if match is None:
        raise MediaError(f"cannot tell the picture size of {path}")
    width, height = int(match.group(1)), int(match.group(2))
    if _quarter_turned(text, video_lines[0]):
        width, height = height, width  # ffmpeg applies the rotation when decoding
    audio_start = first_audio_time(Path(path)) if info.has_audio else 0.0
    return VideoInfo(
        path=Path(path),
        width=width,
        height=height,
        duration=info.duration,
        has_audio=info.has_audio,
        audio_start=audio_start,
    )


def first_audio_time(path: Path) -> float:
    """Timestamp (s, the file's own clock) of the first decoded audio sample."""
    result = _run_ffmpeg(
        [
            *("-copyts", "-i", str(path), "-map", "0:a:0"),
            *("-af", "ashowinfo", "-frames:a", "1", "-f", "null", "-"),
        ]
    )
    match = _PTS_TIME.search(result.stderr)
    return float(match.group(1)) if match else 0.0


def stream_duration(path: Path, stream: str) -> float | None:
    """Seconds that stream ``stream`` (``"a:0"`` or ``"v:0"``) lasts, by demuxing it (no decode)."""
    result = _run_ffmpeg(["-i", str(path), "-map", f"0:{stream}", "-c", "copy", "-f", "null", "-"])
    times = _TIME.findall(result.stderr)
    if result.returncode != 0 or not times:
        return None
    hours, minutes, seconds = times[-1]
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def decoded_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """``(width, height)`` scaled so the longest side is at most ``max_side`` (even numbers)."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


class FrameStream:
    """Decode a video's first picture stream to RGB frames at ``rate`` on the audio clock.

    Iterating yields ``(index, frame)`` where ``frame`` is ``(H, W, 3)`` uint8 RGB at
    :attr:`size` and ``index / rate`` is its time on the audio clock in seconds. A decoding
    error anywhere in the file (a corrupt or unreadable picture) raises :class:`MediaError`
    carrying ffmpeg's message; no frame after it is produced.

    Use as a context manager so ffmpeg is always reaped.
    """

    def __init__(
        self,
        info: VideoInfo,
        rate: float = DEFAULT_RATE,
        max_side: int = DEFAULT_MAX_SIDE,
    ) -> None:
        if rate <= 0:
            raise InputError(f"frame rate must be positive, got {rate}")
        self.info = info
        self.rate = rate
        self.size = decoded_size(info.width, info.height, max_side)
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()

    @property
    def scale(self) -> float:
        """Decoded pixels per source pixel (horizontal)."""
        return self.size[0] / self.info.width

    def command(self) -> list[str]:
        width, height = self.size
        filters = (
            f"fps=fps={self.rate}:start_time={self.info.audio_start:.6f}:round=near,"
            f"scale={width}:{height}:flags=area"
        )
        return [
            ffmpeg_executable(),
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-xerror",
            # skipping the deblocking filter and allowing the decoder's fast paths halves the
            # decoding time of 1080p H.264 here; the blocking it leaves is far below what
            # survives downscaling to the analysis size
            *("-skip_loop_filter", "all", "-flags2", "fast"),
            "-copyts",
            "-i",
            str(self.info.path),
            "-map",
            "0:v:0",
            "-vf",
            filters,
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
        ]

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        stop_process(self._process)
        self._process = None
        self._stderr.close()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        width, height = self.size
        frame_bytes = width * height * 3
        self._process = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL
        )
        assert self._process.stdout is not None  # set by stdout=PIPE
        index = 0
        while True:
            data = self._process.stdout.read(frame_bytes)
            if len(data) < frame_bytes:
                break
            yield index, np.frombuffer(data, np.uint8).reshape(height, width, 3)
            index += 1
        returncode = self._process.wait()
        self._stderr.seek(0)
        stderr = self._stderr.read().decode("utf-8", errors="replace")
        if returncode != 0:
            raise MediaError(
                f"cannot decode the pictures of {self.info.path} "
                f"(failed after {index / self.rate:.1f} s)",
                _ffmpeg_message(stderr),
            )
        if index == 0:
            raise MediaError(f"{self.info.path} holds no decodable picture")
