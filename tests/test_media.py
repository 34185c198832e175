"""Decoding with ffmpeg: formats, exact lengths, typed errors with ffmpeg's message."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import RATE, ffmpeg, noise, write_wav
from vimss_cli.errors import (
    EmptyAudioError,
    InputError,
    MediaError,
    MissingDependencyError,
    NoAudioStreamError,
    NonFiniteAudioError,
    TruncatedMediaError,
)
from vimss_cli.ffmpeg_io import ffmpeg_executable
from vimss_cli.media import AudioStream, probe, read_audio


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    t = np.arange(int(2.5 * 44100)) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)], 1)
    return write_wav(folder / "source.wav", stereo.astype(np.float32), 44100)


@pytest.mark.parametrize(
    "suffix, args",
    [
        (".flac", []),
        (".mp3", ["-c:a", "libmp3lame"]),
        (".ogg", ["-c:a", "libvorbis"]),
        (".m4a", ["-c:a", "aac"]),
        (".mp4", ["-f", "lavfi", "-i", "color=c=blue:s=64x48:r=10:d=2.5", "-shortest"]),
        (".mkv", ["-f", "lavfi", "-i", "color=c=red:s=64x48:r=10:d=2.5", "-shortest"]),
        (".webm", ["-c:a", "libopus"]),
        (".mov", ["-f", "lavfi", "-i", "color=c=red:s=64x48:r=10:d=2.5", "-shortest"]),
    ],
)
def test_decodes_common_formats_to_mono_at_the_model_rate(
    source: Path, tmp_path: Path, suffix: str, args: list[str]
) -> None:
    target = tmp_path / f"clip{suffix}"
    ffmpeg("-i", str(source), *args, str(target))
    audio = read_audio(target, RATE)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / RATE - 2.5) < 0.1
    assert 0.05 < np.sqrt(np.mean(audio**2)) < 0.5
    info = probe(target)
    assert info.has_audio and info.has_video == (suffix in (".mp4", ".mkv", ".mov"))


@pytest.mark.parametrize(
    "layout, channels",
    [("mono", 1), ("5.1", 6), ("6.1", 7), ("7.1", 8), ("hexagonal", 6), ("5.1.2", 8),
     ("7.1.4", 12), ("22.2", 24), ("FL+BC", 2), ("FL+FR+FC+LFE+BL+BR+SL+SR+TC", 9)],
)  # fmt: skip
def test_channel_counts_of_every_layout(tmp_path: Path, layout: str, channels: int) -> None:
    target = tmp_path / "surround.wav"
    ffmpeg("-f", "lavfi", "-i", f"anullsrc=channel_layout={layout}:sample_rate=48000",
           "-t", "0.05", "-c:a", "pcm_s16le", str(target))  # fmt: skip
    assert probe(target).audio_channels == channels


def test_channels_without_names_are_averaged(tmp_path: Path) -> None:
    # nine channels: ffmpeg names no such layout and will not downmix them ("Rematrix is
    # needed ... not enough information"); their mean is taken
    channels = np.stack([noise(0.5, seed=seed) for seed in range(9)], axis=1)
    path = write_wav(tmp_path / "nine.wav", channels)
    info = probe(path)
    assert (info.audio_channels, info.audio_channels_unnamed) == (9, True)
    assert np.abs(read_audio(path, RATE) - channels.mean(axis=1)).max() < 1e-6


@pytest.mark.parametrize("placeholder", [0xFFFFFFFF, 0x7FFFF000, 0])  # ffmpeg, sox, none
@pytest.mark.parametrize("rate", [RATE, 44100])  # at the rate asked for, or resampled
def test_a_wav_written_into_a_pipe_decodes_whole(
    source: Path, tmp_path: Path, rate: int, placeholder: int
) -> None:
    # a writer into a pipe cannot seek back to fill in the data size: ffmpeg leaves
    # 0xFFFFFFFF, sox 0x7FFFF000 (MS_UNSPEC), others 0
    whole, piped = tmp_path / "whole.wav", tmp_path / "piped.wav"
    ffmpeg("-i", str(source), "-ac", "1", "-ar", str(rate), "-c:a", "pcm_s16le", str(whole))
    with piped.open("wb") as handle:
        subprocess.run(
            [ffmpeg_executable(), "-v", "error", "-i", str(whole), "-c:a", "copy", "-f", "wav",
             "-"], stdout=handle, check=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    data = bytearray(piped.read_bytes())
    size_at = data.index(b"data") + 4
    assert data[size_at : size_at + 4] == b"\xff" * 4
    data[size_at : size_at + 4] = placeholder.to_bytes(4, "little")
    piped.write_bytes(bytes(data))
    assert np.array_equal(read_audio(piped, RATE), read_audio(whole, RATE))


@pytest.mark.parametrize("source_rate", [8000, 16000, 48000])
def test_opus_from_any_source_rate_decodes_whole(tmp_path: Path, source_rate: int) -> None:
    # libsndfile counts an Opus file at its source's rate, ffmpeg decodes it at 48 kHz: the
    # count was read at 48 kHz, so a file from 8 kHz was "truncated" at a sixth
    clip = write_wav(tmp_path / "clip.wav", noise(2.0, rate=source_rate), source_rate)
    opus = tmp_path / "clip.opus"
    ffmpeg("-i", str(clip), "-c:a", "libopus", str(opus))
    assert abs(len(read_audio(opus, RATE)) - 2.0 * RATE) < 0.05 * RATE


def test_an_audio_file_of_streams_of_two_lengths_is_not_truncated(tmp_path: Path) -> None:
    # 5 s, then 2 s marked default (the one separated): the file lasts 5 s, its stream 2 s
    two = tmp_path / "two.mkv"
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={RATE}:duration=5",
           "-f", "lavfi", "-i", f"sine=frequency=660:sample_rate={RATE}:duration=2",
           "-map", "0:a", "-map", "1:a", "-c:a", "pcm_s16le", "-disposition:a:0", "0",
           "-disposition:a:1", "default", str(two))  # fmt: skip
    assert len(read_audio(two, RATE)) == 2 * RATE


@pytest.mark.parametrize("native_rate", [8000, 11025, 16000, 44100, 48000])
@pytest.mark.parametrize("frames", [6, 999, 12345])
def test_exact_duration_for_headers_that_state_it(
    tmp_path: Path, native_rate: int, frames: int
) -> None:
    path = write_wav(tmp_path / "x.wav", noise(2, native_rate)[:frames], native_rate)
    audio = read_audio(path, RATE)
    assert audio.size == round(frames * RATE / native_rate)


def test_streams_in_blocks(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "x.wav", noise(3))
    with AudioStream(path, RATE, block_frames=1000) as stream:
        sizes = [block.size for block in stream]
    assert max(sizes) == 1000 and sum(sizes) == 3 * RATE


def test_same_rate_wav_is_decoded_bit_exactly(tmp_path: Path) -> None:
    audio = noise(1)
    path = write_wav(tmp_path / "x.wav", audio)
    np.testing.assert_array_equal(read_audio(path, RATE), audio)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_audio(tmp_path / "nope.wav", RATE)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory"):
        read_audio(tmp_path, RATE)


def test_text_file_named_wav_carries_ffmpegs_message(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n")
    with pytest.raises(MediaError, match="cannot read") as caught:
        read_audio(path, RATE)
    assert "ffmpeg:" in str(caught.value) and caught.value.ffmpeg_message


def test_ffmpegs_message_is_the_cause_not_the_aftermath() -> None:
    """Found by a review: a corrupt H.264 stream was told as 'Terminating thread with return
    code ...', the last of ffmpeg's lines, behind two bracketed prefixes."""
    from vimss_cli.ffmpeg_io import ffmpeg_message

    stderr = (
        "[in#0/mov,mp4 @ 0x55] Stream #0: not enough frames to estimate rate\n"
        "[vist#0:0/h264 @ 0x56] [dec:h264 @ 0x57] Invalid NAL unit size (-61004 > 2755)\n"
        "[vist#0:0/h264 @ 0x56] [dec:h264 @ 0x57] Error splitting the input into NAL units.\n"
        "[vist#0:0/h264 @ 0x56] [dec:h264 @ 0x57] Terminating thread with return code -1094 "
        "(Invalid data found when processing input)\n"
        "Conversion failed!\n"
    )
    assert ffmpeg_message(stderr) == "Error splitting the input into NAL units."
    assert ffmpeg_message("[x @ 0x1] Conversion failed!\n") == "Conversion failed!"
    assert ffmpeg_message("just a line\n") == "just a line"
    truncated = (
        "[in#0/wav @ 0x5] corrupt input packet in stream 0\n"
        "[in#0/wav @ 0x5] Terminating thread with return code -1094995529 (Invalid data found "
        "when processing input)\n"
    )
    assert ffmpeg_message(truncated) == "corrupt input packet in stream 0"


def test_truncated_wav(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "x.wav", noise(2), subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 1])
    with pytest.raises(TruncatedMediaError, match="truncated"):
        read_audio(path, RATE)


def test_truncated_mp3(tmp_path: Path, source: Path) -> None:
    path = tmp_path / "x.mp3"
    ffmpeg("-i", str(source), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedMediaError, match="truncated"):
        read_audio(path, RATE)


def test_video_without_audio(tmp_path: Path) -> None:
    path = tmp_path / "silent_film.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=64x48:r=10:d=1", str(path))
    with pytest.raises(NoAudioStreamError, match="video with no audio stream"):
        read_audio(path, RATE)


def test_zero_length_audio(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32))
    with pytest.raises(EmptyAudioError, match="no audio samples"):
        read_audio(path, RATE)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path: Path, bad: float) -> None:
    audio = noise(1)
    audio[4321] = bad
    path = write_wav(tmp_path / "bad.wav", audio)
    with pytest.raises(NonFiniteAudioError, match=r"NaN or infinite samples \(first at 0.540 s\)"):
        read_audio(path, RATE)


def test_video_longer_than_its_audio_is_not_called_truncated(tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "a.wav", noise(1))
    video = tmp_path / "long_picture.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=64x48:r=10:d=4", "-i", str(audio), str(video))
    decoded = read_audio(video, RATE)
    assert abs(decoded.size / RATE - 1.0) < 0.1


@pytest.mark.parametrize(
    ("suffix", "subtype"),
    [(".wav", "PCM_16"), (".wav", "FLOAT"), (".flac", "PCM_16"), (".ogg", "VORBIS")],
)
def test_libsndfile_reads_same_rate_mono_files_as_ffmpeg_decodes_them(
    tmp_path: Path, suffix: str, subtype: str
) -> None:
    import soundfile

    path = tmp_path / f"x{suffix}"
    soundfile.write(str(path), 0.5 * noise(1), RATE, subtype=subtype)
    with AudioStream(path, RATE) as stream:
        through_ffmpeg = np.concatenate(list(stream))
    native = read_audio(path, RATE)
    assert native.shape == through_ffmpeg.shape
    tolerance = 1e-3 if subtype == "VORBIS" else 0  # two Vorbis decoders, same stream
    np.testing.assert_allclose(native, through_ffmpeg, rtol=0, atol=tolerance)


def test_files_at_another_rate_or_with_two_channels_still_go_through_ffmpeg(
    tmp_path: Path,
) -> None:
    import soundfile

    stereo = np.stack([noise(1), noise(1, seed=1)], axis=1)
    path = tmp_path / "stereo.wav"
    soundfile.write(str(path), stereo, RATE, subtype="FLOAT")
    other = write_wav(tmp_path / "other.wav", noise(1, 16000), 16000)
    for source in (path, other):
        with AudioStream(source, RATE) as stream:
            through_ffmpeg = np.concatenate(list(stream))
        np.testing.assert_array_equal(read_audio(source, RATE), through_ffmpeg)
    assert through_ffmpeg.size == RATE


def test_a_same_rate_wav_holding_nan_is_refused(tmp_path: Path) -> None:
    audio = noise(1)
    audio[100] = np.nan
    path = write_wav(tmp_path / "nan.wav", audio)
    with pytest.raises(NonFiniteAudioError, match="NaN"):
        read_audio(path, RATE)


def test_a_wrong_vimss_ffmpeg_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by a review: VIMSS_FFMPEG=/nonexistent gave "No such file or directory:
    /nonexistent", which does not say where the path came from."""
    from test_cli import assert_clean_failure, run

    monkeypatch.setenv("VIMSS_FFMPEG", str(tmp_path / "nonexistent"))
    ffmpeg_executable.cache_clear()
    try:
        with pytest.raises(MissingDependencyError, match=r"VIMSS_FFMPEG=.*nonexistent is not"):
            ffmpeg_executable()
        wav = write_wav(tmp_path / "in.wav", noise(0.5))
        result = run("separate", wav, "-i", "vn", "-o", tmp_path / "out")
        assert_clean_failure(result, "unset it to use the system ffmpeg")
    finally:
        monkeypatch.delenv("VIMSS_FFMPEG")
        ffmpeg_executable.cache_clear()
