"""GUS patches (FreePats) as sample-library notes: decoding, loops, pitch, bad files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile

from vimss_cli.errors import InputError
from vimss_cli.synth import gus_patch
from vimss_cli.synth.sampler import note_name, open_library


def _sample_block(
    values: np.ndarray, rate: int, root_hz: float, loop: tuple[int, int] | None, modes: int
) -> bytes:
    """One recording: its 96-byte header and data, as the GF1PATCH110 format lays them out."""
    width = 2 if modes & 1 else 1
    unsigned = bool(modes & 2)
    if width == 2:
        ints = np.round(values * 32767).astype(np.int32) + (32768 if unsigned else 0)
        data = ints.astype("<u2" if unsigned else "<i2").tobytes()
    else:
        ints = np.round(values * 127).astype(np.int32) + (128 if unsigned else 0)
        data = ints.astype("u1" if unsigned else "i1").tobytes()
    loop_start, loop_end = (loop[0] * width, loop[1] * width) if loop else (0, 0)
    header = b"wave\0\0\0" + bytes([0])
    header += struct.pack("<IIIH", len(data), loop_start, loop_end, rate)
    header += struct.pack("<III", 20_000, 8_000_000, round(root_hz * 1000))
    header += struct.pack("<hB", 512, 7) + bytes(12) + bytes(6)
    header += bytes([modes | (4 if loop else 0)]) + struct.pack("<HH", 60, 1024) + bytes(36)
    assert len(header) == 96
    return header + data


def _write_patch(path: Path, blocks: list[bytes]) -> Path:
    head = b"GF1PATCH110\0" + b"ID#000002\0" + b"test".ljust(60, b"\0")
    head += bytes([1, 14, 0]) + struct.pack("<HHI", len(blocks), 127, 0) + bytes(36)
    instrument = struct.pack("<H", 0) + b"test".ljust(16, b"\0") + struct.pack("<IB", 0, 1)
    instrument += bytes(40)
    layer = bytes([0, 0]) + struct.pack("<I", 0) + bytes([len(blocks)]) + bytes(40)
    assert (len(head), len(instrument), len(layer)) == (129, 63, 47)
    path.write_bytes(head + instrument + layer + b"".join(blocks))
    return path


def _tone(hz: float, rate: int, seconds: float) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)


def _pitch_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size), n=8 * audio.size))
    return float(np.fft.rfftfreq(8 * audio.size, 1 / rate)[np.argmax(spectrum)])


def test_a_patch_is_read_with_its_pitch_loop_and_sample_format(tmp_path: Path) -> None:
    tone = _tone(440.0, 32000, 0.25)
    patch = _write_patch(
        tmp_path / "a.pat",
        [
            _sample_block(tone, 32000, 440.0, (800, 1600), modes=1),  # 16-bit signed, looped
            _sample_block(tone, 32000, 440.0, None, modes=2),  # 8-bit unsigned, no loop
        ],
    )
    first, second = gus_patch.read_patch(patch)
    assert first.rate == 32000 and first.root_hz == pytest.approx(440.0)
    assert first.loop == (800, 1600) and second.loop is None
    np.testing.assert_allclose(first.audio, tone, atol=1 / 32767)
    np.testing.assert_allclose(second.audio, tone, atol=1 / 127)


def test_the_loop_is_played_out_to_the_asked_length(tmp_path: Path) -> None:
    rate = 32000
    tone = _tone(400.0, rate, 0.25)  # 80 samples a period: a loop of whole periods is seamless
    patch = _write_patch(tmp_path / "a.pat", [_sample_block(tone, rate, 400.0, (800, 1600), 1)])
    (sample,) = gus_patch.read_patch(patch)
    held = gus_patch.sustained(sample, seconds=3.0)
    assert held.size >= 3 * rate
    np.testing.assert_allclose(held[:1600], sample.audio[:1600])
    np.testing.assert_allclose(held[1600:2400], sample.audio[800:1600])  # the loop again
    assert _pitch_hz(held[rate : 3 * rate], rate) == pytest.approx(400.0, abs=1.0)


def test_a_recording_off_pitch_is_moved_to_its_nearest_note(tmp_path: Path) -> None:
    rate = 32000
    tone = _tone(452.0, rate, 1.0)  # 47 cents above A4
    patch = _write_patch(tmp_path / "a.pat", [_sample_block(tone, rate, 452.0, (0, 32000), 1)])
    notes = gus_patch.write_instrument(
        gus_patch.read_patch(patch), tmp_path / "lib" / "violin", seconds=2.0
    )
    assert notes == ["A4"]
    audio, written_rate = soundfile.read(tmp_path / "lib" / "violin" / "A4.flac")
    assert written_rate == rate and audio.size >= 2 * rate * 0.97
    assert _pitch_hz(audio[:rate], rate) == pytest.approx(440.0, abs=1.0)
    assert open_library(tmp_path / "lib").plays("vn")


def test_note_names_follow_the_sample_library_layout() -> None:
    assert note_name(69) == "A4"
    assert note_name(73) == "Cs5"
    assert note_name(36) == "C2"
    assert gus_patch.nearest_note(261.63) == 60


def test_bad_patches_are_input_errors(tmp_path: Path) -> None:
    not_a_patch = tmp_path / "x.pat"
    not_a_patch.write_bytes(b"RIFF" + bytes(300))
    with pytest.raises(InputError, match="not a GUS patch"):
        gus_patch.read_patch(not_a_patch)
    tone = _tone(440.0, 32000, 0.1)
    whole = _write_patch(tmp_path / "a.pat", [_sample_block(tone, 32000, 440.0, None, 1)])
    cut = tmp_path / "cut.pat"
    cut.write_bytes(whole.read_bytes()[:-100])
    with pytest.raises(InputError, match="truncated"):
        gus_patch.read_patch(cut)
