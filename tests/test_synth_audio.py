"""Sound of the generator: fluidsynth rendering, room, levels, exact mixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from vimss_cli.errors import MediaError
from vimss_cli.synth import audio, performance
from vimss_cli.synth.resources import TEST_SOUNDFONTS, fluidsynth_executable

RATE = 16000


def _tone(seconds: float, amplitude: float, start: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * 220 * t) * (t >= start)).astype(np.float32)


def test_stems_are_levelled_and_the_mix_is_their_exact_integer_sum() -> None:
    stems = [_tone(3.0, 0.5), _tone(3.0, 0.01), _tone(3.0, 0.2, start=2.0)]
    quantised, mix, gains = audio.balance_and_quantise(stems, np.random.default_rng(0), RATE)
    assert quantised.dtype == np.int16 and mix.dtype == np.int16
    assert np.array_equal(mix.astype(np.int32), quantised.astype(np.int32).sum(axis=0))
    assert np.abs(mix).max() <= 32767 * audio.PEAK_CEILING + len(stems)
    levels = [audio.active_loudness_db(s.astype(np.float32) / 32768, RATE) for s in quantised]
    assert max(levels) - min(levels) <= 4.0 + 0.1  # within the +-2 dB engineer's offsets
    assert gains[1] > gains[0] + 25  # the quiet stem was raised far more than the loud one


def test_room_response_has_a_direct_path_and_decays() -> None:
    room = audio.Room(rt60=0.8, wet=(0.3,))
    response = audio.impulse_response(np.random.default_rng(0), room, 0, RATE)
    assert response.size == int(0.8 * RATE)
    assert response[0] > 0.6
    early = np.sum(response[RATE // 20 : RATE // 5] ** 2)
    late = np.sum(response[RATE // 2 :] ** 2)
    assert late < early / 10  # about 60 dB per rt60: much weaker by half a second


def test_one_fluidsynth_run_renders_each_player_into_its_own_exact_slice() -> None:
    early = (performance.PlayedNote(0.1, 0.5, 69, 100),)
    late = (performance.PlayedNote(1.2, 0.5, 57, 100),)
    players = [
        performance.RenderPart(early, np.full(20, 100), 73),
        performance.RenderPart(late, np.full(20, 100), 42, performance.Vibrato(5.0, 20.0, 0.1)),
    ]
    font = TEST_SOUNDFONTS[0].path
    rendered = audio.render_players(fluidsynth_executable(), font, players, 2.0, RATE)
    assert [r.shape for r in rendered] == [(2 * RATE,), (2 * RATE,)]

    def rms(x: np.ndarray, start: float, stop: float) -> float:
        return float(np.sqrt(np.mean(x[int(start * RATE) : int(stop * RATE)] ** 2)))

    flute, cello = rendered
    assert rms(flute, 0.2, 0.6) > 1e-3 and rms(flute, 1.3, 1.7) < 1e-5  # no bleed from player 2
    assert rms(cello, 0.0, 1.15) < 1e-5 and rms(cello, 1.3, 1.7) > 1e-3
    again = audio.render_players(fluidsynth_executable(), font, players, 2.0, RATE)
    assert all(np.array_equal(a, b) for a, b in zip(rendered, again, strict=True))


def test_fluidsynth_failure_is_a_media_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.sf2"
    broken.write_bytes(b"not a soundfont")
    players = [
        performance.RenderPart((performance.PlayedNote(0.1, 0.5, 69, 100),), np.full(10, 100), 40)
    ]
    with pytest.raises(MediaError, match="fluidsynth"):
        audio.render_players(fluidsynth_executable(), broken, players, 1.0, RATE)


def test_wav16_bytes_are_reproducible(tmp_path: Path) -> None:
    samples = (np.arange(1000) - 500).astype(np.int16)
    audio.write_wav16(tmp_path / "a.wav", samples, RATE)
    audio.write_wav16(tmp_path / "b.wav", samples, RATE)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    read, rate = soundfile.read(str(tmp_path / "a.wav"), dtype="int16")
    assert rate == RATE and np.array_equal(read, samples)
