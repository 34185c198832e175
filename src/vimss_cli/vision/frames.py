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

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vimss_cli import ffmpeg_io
from vimss_cli.errors import InputError, MediaError
from vimss_cli.media import check_input_path

#: Default decoding rate (frames per second on the audio clock).
DEFAULT_RATE = 10.0
#: Default longest side of decoded frames, in pixels.
DEFAULT_MAX_SIDE = 640


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
    #: the audio stream separated (``a:N``): the first, or the one marked default
    audio_index: int = 0


def probe_video(path: Path) -> VideoInfo:
    """Describe a file's first picture stream; :class:`InputError` when it has none."""
    path = check_input_path(Path(path))
    found = ffmpeg_io.probe(path)
    if not found.video:
        raise InputError(f"{path} has no picture stream to find players in")
    size = found.video[0].display_size  # ffmpeg applies a rotation when decoding
    if size is None:
        raise MediaError(f"cannot tell the picture size of {path}")
    return VideoInfo(
        path=path,
        width=size[0],
        height=size[1],
        duration=found.duration,
        has_audio=bool(found.audio),
        audio_start=ffmpeg_io.first_audio_time(path, found.audio_index) if found.audio else 0.0,
        audio_index=found.audio_index,
    )


def stream_duration(path: Path, stream: str) -> float | None:
    """Seconds that stream ``stream`` (``"a:0"`` or ``"v:0"``) lasts, by demuxing it (no decode)."""
    result = ffmpeg_io.copy_pass(path, stream)
    return result.seconds if result.returncode == 0 else None


def decoded_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """``(width, height)`` scaled so the longest side is at most ``max_side`` (even numbers)."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


class FrameStream(ffmpeg_io.FfmpegProcess):
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
        #: what the ``fps`` filter does with the last picture: ``round`` (its own frame time
        #: only), or ``pass`` (kept until the stream's end), which a still, a video of one
        #: picture, needs to give any frame at all
        self.eof_action = "round"
        super().__init__()

    def command(self) -> list[str]:
        width, height = self.size
        source = ffmpeg_io.input_file(
            v="error",
            xerror=None,
            nostdin=None,
            hide_banner=None,
            # skipping the deblocking filter and allowing the decoder's fast paths halves the
            # decoding time of 1080p H.264 here; the blocking it leaves is far below what
            # survives downscaling to the analysis size
            skip_loop_filter="all",
            flags2="fast",
            copyts=None,
        )
        pictures = (
            source["v:0"]
            .filter(
                "fps",
                fps=self.rate,
                start_time=f"{self.info.audio_start:.6f}",
                round="near",
                eof_action=self.eof_action,
            )
            .filter("scale", width, height, flags="area")
        )
        graph = pictures.output("pipe:1", format="rawvideo", pix_fmt="rgb24")
        return ffmpeg_io.command(graph, self.info.path)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        """The frames; a still (one picture, which the ``fps`` filter drops at its end) is
        decoded again keeping its last picture, and gives that one frame."""
        index = yield from self._frames()
        if index == 0:
            self.eof_action = "pass"
            index = yield from self._frames()
        if index == 0:
            raise MediaError(f"{self.info.path} holds no decodable picture")

    def _frames(self) -> Generator[tuple[int, np.ndarray], None, int]:
        """One decoding pass; returns how many frames it gave."""
        width, height = self.size
        frame_bytes = width * height * 3
        stdout = self._start(self.command())
        index = 0
        while True:
            data = stdout.read(frame_bytes)
            if len(data) < frame_bytes:
                break
            yield index, np.frombuffer(data, np.uint8).reshape(height, width, 3)
            index += 1
        returncode, stderr = self._wait()
        if returncode != 0:
            raise MediaError(
                f"cannot decode the pictures of {self.info.path} "
                f"(failed after {index / self.rate:.1f} s)",
                ffmpeg_io.ffmpeg_message(stderr),
            )
        return index
