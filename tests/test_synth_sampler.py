"""Sample libraries as instrument makers: note names, pitch, timing, loudness, the pool."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from test_cli import assert_clean_failure
from vimss_cli.cli import app
from vimss_cli.synth import dataset, resources, sampler
from vimss_cli.synth.performance import EXPRESSION_STEP, PlayedNote, Vibrato
from vimss_cli.urmp import list_pieces

RATE = 16000
runner = CliRunner()


def _recording(
    frequency: float, overtone: float = 0.3, seconds: float = 3.0, rate: int = 44100
) -> np.ndarray:
    """A 'recorded note': 0.2 s of silence, then a steady tone with an octave overtone."""
    t = np.arange(int(seconds * rate)) / rate
    tone = np.sin(2 * np.pi * frequency * t) + overtone * np.sin(4 * np.pi * frequency * t)
    return (tone * (t >= 0.2)).astype(np.float32)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> sampler.SampleLibrary:
    root = tmp_path_factory.mktemp("samples") / "mylib"
    notes = {"violin": {"A4": (440.0, 0.3), "Cs5": (554.37, 0.0)}, "vc": {"C3": (130.81, 0.3)}}
    for folder, recordings in notes.items():
        (root / folder).mkdir(parents=True)
        for name, (frequency, overtone) in recordings.items():
            audio = 0.3 * _recording(frequency, overtone)
            soundfile.write(str(root / folder / f"{name}.wav"), audio, 44100)
    (root / "violin" / "README.txt").write_text("not a note")
    (root / "kazoo").mkdir()  # not an instrument: ignored
    soundfile.write(str(root / "kazoo" / "A4.wav"), _recording(440.0), 44100)
    return sampler.open_library(root)


def _frequency(signal: np.ndarray, rate: int) -> float:
    """Frequency of the strongest spectral peak (fine enough for whole semitones)."""
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size), 8 * signal.size))
    return float(np.argmax(spectrum) * rate / (8 * signal.size))


@pytest.mark.parametrize(
    "name, pitch", [("A4", 69), ("Cs5", 73), ("Db5", 73), ("c#4", 61), ("Bb3", 58), ("A-1", 9)]
)
def test_note_names_give_midi_pitches(name: str, pitch: int) -> None:
    assert sampler.note_pitch(name) == pitch


@pytest.mark.parametrize("name", ["H4", "A", "README", "A44", "As"])
def test_other_names_are_not_notes(name: str) -> None:
    assert sampler.note_pitch(name) is None


def test_a_library_lists_the_instruments_it_has(library: sampler.SampleLibrary) -> None:
    assert set(library.instruments()) == {"vn", "vc"}
    assert library.plays("vn") and not library.plays("fl")


def test_a_note_sounds_at_its_pitch_time_and_length(library: sampler.SampleLibrary) -> None:
    notes = (PlayedNote(onset=0.5, duration=1.0, pitch=71, velocity=100),)  # B4: A4 + 2
    stem = sampler.render_part(library, "vn", notes, np.array([]), None, 3.0, RATE)
    assert stem.dtype == np.float32 and stem.shape == (3 * RATE,)
    assert np.abs(stem[: int(0.49 * RATE)]).max() == 0.0  # the recording's silence is trimmed
    assert np.abs(stem[int(0.52 * RATE) : int(0.6 * RATE)]).max() > 0.05  # sounds at once
    release_end = 1.5 + sampler.RELEASE_SECONDS
    assert np.abs(stem[int((release_end + 0.01) * RATE) :]).max() == 0.0
    held = stem[int(0.7 * RATE) : int(1.4 * RATE)]
    assert _frequency(held, RATE) == pytest.approx(493.88, rel=0.01)


def test_the_nearest_recording_plays_each_note(library: sampler.SampleLibrary) -> None:
    """A4's recording has an octave overtone, C#5's none: the overtone says which one
    played (B4 lies between them: the lower one plays it). Both are brought to one level."""
    for pitch, from_a4 in ((68, True), (70, True), (71, True), (72, False), (75, False)):
        note = (PlayedNote(0.0, 1.0, pitch, 127),)
        stem = sampler.render_part(library, "vn", note, np.array([]), None, 1.2, RATE)[
            RATE // 10 : RATE
        ]
        expected = 440.0 * 2 ** ((pitch - 69) / 12)
        assert _frequency(stem, RATE) == pytest.approx(expected, rel=0.01)
        spectrum = np.abs(np.fft.rfft(stem * np.hanning(stem.size)))
        bin_of = stem.size / RATE
        overtone = spectrum[round(2 * expected * bin_of)] / spectrum[round(expected * bin_of)]
        assert (overtone > 0.1) == from_a4, pitch
        level = 20 * np.log10(np.sqrt(np.mean(stem**2)))
        assert level == pytest.approx(sampler.SAMPLE_LEVEL_DB, abs=1.0)


def test_velocity_expression_and_vibrato_shape_the_sound(
    library: sampler.SampleLibrary,
) -> None:
    loud = (PlayedNote(0.0, 2.0, 69, 127),)
    soft = (PlayedNote(0.0, 2.0, 69, 64),)
    flat = np.full(int(2.5 / EXPRESSION_STEP), 127)
    plain = sampler.render_part(library, "vn", loud, flat, None, 2.0, RATE)
    quiet = sampler.render_part(library, "vn", soft, flat, None, 2.0, RATE)
    assert np.abs(quiet).max() / np.abs(plain).max() == pytest.approx((64 / 127) ** 2, rel=0.02)
    fading = np.linspace(127, 0, flat.size)
    faded = sampler.render_part(library, "vn", loud, fading, None, 2.0, RATE)
    first, last = faded[: RATE // 2], faded[RATE:]
    assert np.sqrt(np.mean(last**2)) < 0.5 * np.sqrt(np.mean(first**2))
    vibrato = Vibrato(rate=5.0, depth=50.0, delay=0.0)
    wobbly = sampler.render_part(library, "vn", loud, flat, vibrato, 2.0, RATE)
    assert not np.allclose(wobbly, plain, atol=1e-3)
    peaks = [_frequency(wobbly[s : s + 800], RATE) for s in range(RATE // 2, RATE, 400)]
    assert max(peaks) - min(peaks) > 15.0  # 50 cents either side of 440 Hz is +-13 Hz


def test_an_instrument_the_library_lacks_is_refused(library: sampler.SampleLibrary) -> None:
    with pytest.raises(Exception, match="has no fl recordings"):
        sampler.render_part(library, "fl", (), np.array([]), None, 1.0, RATE)


def test_each_player_draws_a_maker_that_plays_its_instrument(
    library: sampler.SampleLibrary,
) -> None:
    font = resources.TEST_SOUNDFONTS[0]
    pool: list[dataset.Maker] = [font, library, library]
    drawn = {
        code: {dataset.choose_maker(np.random.default_rng(s), pool, code).name for s in range(60)}
        for code in ("vn", "fl")
    }
    assert drawn == {"vn": {font.name, library.name}, "fl": {font.name}}
    # soundfonts alone: the draw earlier versions made, so their data is unchanged
    fonts: list[dataset.Maker] = [font, font, font]
    for seed in range(5):
        old = fonts[int(np.random.default_rng(seed).integers(len(fonts)))]
        assert dataset.choose_maker(np.random.default_rng(seed), fonts, "vn") is old


def test_synth_plays_players_from_a_library(library: sampler.SampleLibrary, tmp_path: Path) -> None:
    out = tmp_path / "mixed"
    font = str(resources.TEST_SOUNDFONTS[0].path)
    pool = f"{font},{library.path},{library.path}"
    small = ["--seconds", "3", "--sample-rate", "16000", "--video-size", "64x36"]
    command = ["data", "synth", "-o", str(out), "-n", "3", "--seed", "3", *small]
    command += ["--ensemble", "vn,vc,fl", "--soundfonts", pool]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "vimss_synth.json").read_text())
    makers = [entry["soundfonts"] for entry in manifest["pieces"].values()]
    assert all(players[2] == "TimGM6mb" for players in makers)  # no flute in the library
    assert any("mylib" in players for players in makers)
    for piece in list_pieces(out):
        mix = soundfile.read(str(piece.mix_path), dtype="int16")[0].astype(np.int32)
        stems = [
            soundfile.read(str(p), dtype="int16")[0].astype(np.int32) for p in piece.stem_paths
        ]
        assert np.array_equal(mix, np.sum(stems, axis=0))
        assert all(np.abs(stem).max() > 100 for stem in stems)


@pytest.mark.parametrize("content", ["empty", "library alone"])
def test_a_pool_that_cannot_play_every_instrument_is_refused(
    library: sampler.SampleLibrary, tmp_path: Path, content: str
) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    path = folder if content == "empty" else library.path
    out = tmp_path / "never"
    result = runner.invoke(
        app, ["data", "synth", "-o", str(out), "-n", "1", "--soundfonts", str(path)]
    )
    fragment = (
        "holds no instrument folder"
        if content == "empty"
        else "no soundfont or sample library given plays"
    )
    assert_clean_failure(result, fragment)
    assert not out.exists()


def test_a_tilde_after_a_comma_is_expanded(
    library: sampler.SampleLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a review: ``--soundfonts A.sf2,~/lib`` (as a docstring wrote it) failed with
    "soundfont not found: ~/lib": the shell expands no ``~`` after a comma."""
    monkeypatch.setenv("HOME", str(library.path.parent))
    out = tmp_path / "never"
    given = f"~/{library.path.name},~/{library.path.name}"
    result = runner.invoke(app, ["data", "synth", "-o", str(out), "-n", "1", "--soundfonts", given])
    assert "not found" not in result.output
    assert_clean_failure(result, "no soundfont or sample library given plays")
