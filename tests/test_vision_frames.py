"""Frames on the audio clock: start offsets and variable frame rate must not shift pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import ffmpeg, noise, write_wav
from vimss_cli.errors import InputError, MediaError
from vimss_cli.media import read_audio
from vimss_cli.vision.frames import FrameStream, probe_video

RATE = 20.0
AUDIO_RATE = 8000


def flash_and_click(tmp: Path, *, video_offset: float, audio_offset: float, vfr: bool) -> Path:
    """A white flash at 2.0 s of the video's own time and a click at the same instant in the
    audio, with each stream shifted by its offset inside the container."""
    picture = "color=c=black:s=96x64:r=30:d=4,drawbox=c=white:t=fill:enable='between(t,2.0,2.04)'"
    if vfr:  # drop an irregular pattern of frames, keeping the original timestamps
        picture += ",select='not(eq(mod(n\\,7)\\,3))*not(eq(mod(n\\,5)\\,1))'"
    click_at = 2.0 + video_offset - audio_offset
    sound = f"aevalsrc='0.8*between(t\\,{click_at}\\,{click_at + 0.005})':d=5:s={AUDIO_RATE}"
    path = tmp / "flash.mp4"
    ffmpeg(
        *("-f", "lavfi", "-itsoffset", str(video_offset), "-i", picture),
        *("-f", "lavfi", "-itsoffset", str(audio_offset), "-i", sound),
        *("-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-pix_fmt", "yuv420p"),
        *(["-fps_mode", "passthrough"] if vfr else []),
        *("-c:a", "aac", str(path)),
    )
    return path


@pytest.mark.parametrize(
    "video_offset, audio_offset, vfr",
    [(0.0, 0.0, False), (0.5, 0.0, True), (0.0, 0.7, False), (0.3, 0.9, True)],
    ids=["plain", "video-late-vfr", "audio-late", "both-late-vfr"],
)
def test_flash_lands_on_the_click(
    tmp_path: Path, video_offset: float, audio_offset: float, vfr: bool
) -> None:
    path = flash_and_click(tmp_path, video_offset=video_offset, audio_offset=audio_offset, vfr=vfr)
    info = probe_video(path)
    with FrameStream(info, RATE) as stream:
        brightness = np.array([frame.mean() for _, frame in stream])
    flash_time = np.flatnonzero(brightness > 128)[0] / RATE
    audio = read_audio(path, AUDIO_RATE)
    click_time = np.flatnonzero(np.abs(audio) > 0.3)[0] / AUDIO_RATE
    assert abs(flash_time - click_time) <= 1.0 / RATE + 1e-6, (flash_time, click_time)


def test_size_and_count(tmp_path: Path) -> None:
    path = tmp_path / "wide.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=800x450:r=25:d=2", "-pix_fmt", "yuv420p", str(path))
    info = probe_video(path)
    assert (info.width, info.height, info.has_audio) == (800, 450, False)
    with FrameStream(info, 10.0, max_side=320) as stream:
        frames = [frame for _, frame in stream]
        assert stream.size == (320, 180)
    assert len(frames) == 20 and frames[0].shape == (180, 320, 3) and frames[0].dtype == np.uint8


def test_a_still_gives_its_one_picture(tmp_path: Path) -> None:
    """A video of one picture: the fps filter alone drops it at the stream's end."""
    path = tmp_path / "still.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=64x48:d=1", "-frames:v", "1", "-pix_fmt",
           "yuv420p", str(path))  # fmt: skip
    with FrameStream(probe_video(path), RATE) as stream:
        frames = list(stream)
    assert [index for index, _ in frames] == [0]
    assert frames[0][1].shape == (48, 64, 3) and frames[0][1][..., 0].mean() > 200  # red


def test_no_picture_stream(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "sound.wav", noise(1.0))
    with pytest.raises(InputError, match="no picture stream"):
        probe_video(path)


def test_corrupt_pictures_mid_file(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=160x120:r=25:d=4", "-pix_fmt", "yuv420p", str(path))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4000] = bytes((b * 7 + 13) % 256 for b in data[middle : middle + 4000])
    path.write_bytes(bytes(data))
    stream = FrameStream(probe_video(path), 10.0)
    with stream, pytest.raises(MediaError, match="cannot decode the pictures"):
        for _ in stream:
            pass
