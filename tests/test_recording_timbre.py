"""The note classifier adapted to one recording: the first pass's prototypes, and the
separator hearing the whole input before it separates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from conftest import write_wav
from vimss_cli.instruments import INSTRUMENT_CODES
from vimss_cli.note_classifier import (
    NoteClassifier,
    bundled_notes_dir,
    load_note_classifier,
    read_note_classifier,
)
from vimss_cli.recording_timbre import PROTOTYPE_WEIGHT, RecordingListener
from vimss_cli.soft_masks import N_FFT, timbre_listener

RATE = 22050
#: a flute's few harmonics; a clarinet's odd ones
FLUTE, CLARINET = [0.3, 0.05, 0.02], [0.3, 0.0, 0.15, 0.0, 0.1, 0.0, 0.06, 0.0, 0.04]


def _tone(hz: float, samples: int, amplitudes: list[float], rate: int = RATE) -> np.ndarray:
    t = np.arange(samples) / rate
    return sum(a * np.sin(2 * np.pi * hz * (h + 1) * t) for h, a in enumerate(amplitudes))


def _melody(low: float, high: float, amplitudes: list[float], seed: int) -> np.ndarray:
    """20 half-second notes between ``low`` and ``high`` Hz."""
    pitches = np.random.default_rng(seed).uniform(low, high, 20)
    return np.concatenate([_tone(hz, RATE // 2, amplitudes) for hz in pitches]).astype(np.float32)


def _strings_only() -> NoteClassifier:
    """The bundled classifier's weights, said to know the four string instruments alone."""
    bundled = load_note_classifier()
    return NoteClassifier(bundled.layers, INSTRUMENT_CODES[:4], features=bundled.features)


def _posterior_of_flute(classifier: NoteClassifier, hz: float, amplitudes: list[float]) -> float:
    """The classifier's posterior that a flute, not a clarinet, plays one frame of a note."""
    frame = _tone(hz, N_FFT, amplitudes) * np.hanning(N_FFT + 1)[:-1]
    magnitude = np.abs(np.fft.rfft(frame))[None]
    features = classifier.note_features(magnitude, np.array([[hz]]), RATE, N_FFT)
    return float(classifier.posteriors(features, ["fl", "cl"])[0, 0, 0])


def test_a_recordings_own_flute_makes_a_low_flute_note_the_flutes() -> None:
    # a flute note low in the clarinet's register: the first classifier as trained is unsure
    # (the bundled v1, which also reads the partials' shapes, is sure of this made-up flute
    # already); once it has heard a recording where the flute plays notes of that sound
    # (higher up, against a clarinet's odd harmonics below), it is sure
    trained = read_note_classifier(bundled_notes_dir() / "vimss-notes-v0.safetensors")
    listener = timbre_listener(2, instruments=["fl", "cl"], sample_rate=RATE,
                               note_classifier=trained)  # fmt: skip
    assert isinstance(listener, RecordingListener)
    listener.push(_melody(500, 1000, FLUTE, seed=0) + _melody(160, 400, CLARINET, seed=1))
    prototypes = listener.prototypes()
    assert prototypes is not None and set(prototypes) == {"fl", "cl"}
    for vector in prototypes.values():
        assert vector.dtype == np.float32 and np.linalg.norm(vector) == pytest.approx(1.0)
    adapted = trained.adapted(prototypes, PROTOTYPE_WEIGHT)
    for hz in (300.0, 350.0):
        assert _posterior_of_flute(trained, hz, FLUTE) < 0.75
        assert _posterior_of_flute(adapted, hz, FLUTE) > 0.95
        # and a clarinet's note stays the clarinet's
        assert _posterior_of_flute(adapted, hz, CLARINET) < 0.05
    # with no weight on them the prototypes change nothing
    features = trained.note_features(
        np.abs(np.fft.rfft(np.random.default_rng(2).standard_normal((3, N_FFT)))),
        np.array([[300.0], [440.0], [900.0]]),
        RATE,
        N_FFT,
    )
    assert np.allclose(
        trained.adapted(prototypes, 0.0).posteriors(features, ["fl", "cl", "vn"]),
        trained.posteriors(features, ["fl", "cl", "vn"]),
    )


def test_room_tone_before_the_music_is_not_heard() -> None:
    # 10 s of noise 37 dB below the music before it leaves the prototypes as they were (but
    # for the one frame where the music starts); noise 17 dB below it would not
    music = _melody(500, 1000, FLUTE, seed=0) + _melody(160, 400, CLARINET, seed=1)
    noise = np.random.default_rng(5).standard_normal(10 * RATE).astype(np.float32)

    def prototypes(audio: np.ndarray) -> dict[str, np.ndarray]:
        listener = timbre_listener(2, instruments=["fl", "cl"], sample_rate=RATE)
        assert listener is not None
        listener.push(audio)
        heard = listener.prototypes()
        assert heard is not None
        return heard

    alone = prototypes(music)
    for level_db, unchanged in ((-50.0, True), (-30.0, False)):
        heard = prototypes(np.concatenate([noise * np.float32(10 ** (level_db / 20)), music]))
        cosines = [float(alone[code] @ heard[code]) for code in ("fl", "cl")]
        assert (min(cosines) > 0.999) == unchanged, (level_db, cosines)


def test_what_the_first_pass_listens_for() -> None:
    # only instruments heard once, two or more, that the classifier knows, with harmonic masks
    assert timbre_listener(2, instruments=["fl", "cl"], sample_rate=RATE) is not None
    assert timbre_listener(2) is None  # plain soft masks
    assert timbre_listener(3, instruments=["vn", "vn", "vc"], sample_rate=RATE) is None
    assert timbre_listener(2, instruments=["fl", None], sample_rate=RATE) is None
    assert timbre_listener(2, instruments=["fl", "cl"], sample_rate=RATE, voices=[2, 1]) is None
    assert timbre_listener(2, instruments=["fl", "cl"], sample_rate=RATE, timbre_weight=0) is None
    strings = _strings_only()
    settings = {"instruments": ["fl", "cl"], "sample_rate": RATE, "note_classifier": strings}
    assert timbre_listener(2, **settings) is None
    listener = timbre_listener(3, instruments=["vn", "vc", "bn"], sample_rate=RATE)
    assert listener is not None and listener.instruments == ("vn", "vc", "bn")
    # silence, or less than a frame, gives no prototypes
    listener.push(np.zeros(3 * N_FFT, np.float32))
    assert listener.prototypes() is None
    short = timbre_listener(2, instruments=["fl", "cl"], sample_rate=RATE)
    assert short is not None
    short.push(np.ones(N_FFT - 1, np.float32))
    assert short.prototypes() is None
    with pytest.raises(ValueError, match="two or more"):
        RecordingListener(["fl"], RATE, load_note_classifier(), N_FFT, N_FFT // 2)
    strings = _strings_only()
    with pytest.raises(ValueError, match=r"knows no cl, fl$"):
        RecordingListener(["vn", "fl", "cl"], RATE, strings, N_FFT, N_FFT // 2)
    with pytest.raises(ValueError, match=r"mono blocks \(n,\), got \(10, 2\)"):
        listener.push(np.zeros((10, 2), np.float32))
    # settings the masks would refuse are refused before the first pass, in their words
    with pytest.raises(ValueError, match="one instrument per stem"):
        timbre_listener(2, instruments=["fl", "cl", "vn"], sample_rate=RATE)
    with pytest.raises(ValueError, match="one voice count per stem"):
        timbre_listener(2, instruments=["fl", "cl"], sample_rate=RATE, voices=[1])


def test_the_file_separator_hears_the_whole_input_first(
    tiny_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """separate_file listens in its peak pass to what separate_array listens to: the stems
    are the same; and on this input what it hears changes them (without the listener they
    differ), so the test can fail."""
    from vimss_cli import api
    from vimss_cli.api import Separator
    from vimss_cli.cli import app
    from vimss_cli.conditioning import Query

    rate = 8000  # the tiny model's
    seconds = 6
    high = np.concatenate([_tone(f, rate, FLUTE, rate) for f in (660, 880, 740, 990, 620, 700)])
    low = np.concatenate([_tone(f, rate, CLARINET, rate) for f in (200, 180, 240, 260, 220, 190)])
    mixture = (high + low)[: seconds * rate].astype(np.float32)
    sound = write_wav(tmp_path / "duet.wav", mixture, rate)
    separator = Separator("tiny", device="cpu")
    queries = [Query("fl"), Query("cl")]
    from_array = separator.separate_array(mixture, queries)
    result = CliRunner().invoke(
        app, ["separate", str(sound), "-i", "fl,cl", "-o", str(tmp_path / "out"), "--format",
              "float32"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    from_file = np.stack(
        [
            soundfile.read(str(p), dtype="float32")[0]
            for p in sorted((tmp_path / "out").rglob("*.wav"))
        ]
    )
    assert np.allclose(from_file, from_array, atol=1e-6)
    monkeypatch.setattr(api, "timbre_listener", lambda *args, **kwargs: None)
    unheard = separator.separate_array(mixture, queries)
    assert not np.allclose(unheard, from_array, atol=1e-3)


def test_each_channel_is_heard_on_its_own(
    tiny_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the input's channels kept, each channel's masks hear that channel alone in the
    peak pass (every sample of it, nothing else) and get what it heard; its stems are those
    of the channel as a file of its own."""
    from vimss_cli import api
    from vimss_cli.cli import app

    rate = 8000
    flute = np.concatenate([_tone(f, rate, FLUTE, rate) for f in (660, 880, 740, 990)])
    clarinet = np.concatenate([_tone(f, rate, CLARINET, rate) for f in (200, 180, 240, 260)])
    low_flute = np.concatenate([_tone(f, rate, FLUTE, rate) for f in (300, 330, 280, 350)])
    left = (flute + clarinet).astype(np.float32)
    right = (low_flute + 0.5 * np.roll(clarinet, 2 * rate)).astype(np.float32)
    write_wav(tmp_path / "both.wav", np.stack([left, right], axis=1), rate)
    write_wav(tmp_path / "left.wav", left, rate)
    write_wav(tmp_path / "right.wav", right, rate)
    heard: dict[int, list[np.ndarray]] = {}  # per listener, in the order they first hear
    given: list[object] = []  # per refiner made, the prototypes it was given
    push = RecordingListener.push

    def recorded_push(self: RecordingListener, block: np.ndarray) -> None:
        heard.setdefault(id(self), []).append(np.array(block))
        push(self, block)

    refiner = api._Refiner

    def recorded_refiner(players: int, settings: dict) -> object:
        given.append(settings.get("prototypes"))
        return refiner(players, settings)

    monkeypatch.setattr(RecordingListener, "push", recorded_push)
    monkeypatch.setattr(api, "_Refiner", recorded_refiner)
    args = ["-i", "fl,cl", "-o", str(tmp_path / "out"), "--format", "float32"]
    result = CliRunner().invoke(app, ["separate", str(tmp_path / "both.wav"), *args])
    assert result.exit_code == 0, result.output
    assert len(heard) == 2 and len(given) == 2
    for blocks, audio in zip(heard.values(), (left, right), strict=True):
        assert np.array_equal(np.concatenate(blocks), audio)
    for name in ("left", "right"):
        result = CliRunner().invoke(app, ["separate", str(tmp_path / f"{name}.wav"), *args])
        assert result.exit_code == 0, result.output
    # each channel's refiner got its own channel's prototypes, as each file alone did
    assert len(given) == 4
    for channel in (0, 1):
        both, alone = given[channel], given[2 + channel]
        assert isinstance(both, dict) and isinstance(alone, dict)
        assert all(np.array_equal(both[code], alone[code]) for code in ("fl", "cl"))
    assert not np.array_equal(given[0]["fl"], given[1]["fl"])  # type: ignore[index]
    for stem in ("01_fl.wav", "02_cl.wav"):
        both = soundfile.read(str(tmp_path / "out" / "both" / stem), dtype="float32")[0]
        for channel, side in enumerate(("left", "right")):
            alone = soundfile.read(str(tmp_path / "out" / side / stem), dtype="float32")[0]
            assert np.array_equal(both[:, channel], alone), (stem, side)
