"""The note classifier the harmonic masks consult: its features, its NumPy network against
the torch one it was trained as, its file, its training, and its part in the joint pitches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from vimss_cli.errors import CheckpointError
from vimss_cli.instruments import INSTRUMENT_CODES
from vimss_cli.note_classifier import (
    CLASSIFIER_FILE,
    DETAILED_VERSION,
    FEATURE_SIZES,
    FEATURE_VERSION,
    FEATURES,
    FLOOR,
    HARMONIC_COUNT,
    NoteClassifier,
    bundled_notes_dir,
    harmonic_profile,
    load_note_classifier,
    note_features,
    partial_details,
    read_note_classifier,
)
from vimss_cli.soft_masks import HOP, N_FFT, SoftMaskFilter, refine, timbre_listener
from vimss_cli.training.note_classifier import (
    frame_magnitudes,
    note_samples,
    restricted_accuracy,
    save_note_classifier,
    train_note_classifier,
)

RATE = 22050


def _note(pitch: float, samples: int, levels: list[float]) -> np.ndarray:
    """A steady note whose ``h``-th harmonic has amplitude ``levels[h - 1]``."""
    t = np.arange(samples) / RATE
    return sum(a * np.sin(2 * np.pi * pitch * (h + 1) * t) for h, a in enumerate(levels))


def test_the_profile_reads_each_harmonic_relative_to_the_strongest() -> None:
    # a 215.3 Hz note (exactly 40 bins) with its harmonics at 1, 0.1 and 0.01 of the first:
    # -1 and -2 in log10 units, the harmonics not played at the floor
    pitch = 40 * RATE / N_FFT
    signal = _note(pitch, 3 * N_FFT, [0.5, 0.05, 0.005])
    magnitude = frame_magnitudes(signal)  # (T, bins)
    features = harmonic_profile(magnitude, np.full((magnitude.shape[0], 1), pitch), RATE, N_FFT)
    assert features.shape == (magnitude.shape[0], 1, FEATURES) and features.dtype == np.float32
    levels = features[0, 0, :HARMONIC_COUNT]
    assert levels[:3] == pytest.approx([0.0, -1.0, -2.0], abs=0.02)
    assert np.all(levels[3:] < -3.0) and np.all(levels >= FLOOR)
    assert features[0, 0, -1] == pytest.approx(np.log2(pitch / 440.0))


def test_harmonics_near_the_top_of_the_spectrum_read_as_silent() -> None:
    magnitude = np.ones((1, N_FFT // 2 + 1), np.float32)
    features = harmonic_profile(magnitude, np.array([[3000.0]]), RATE, N_FFT)
    # 3 kHz: harmonics 1 to 3 lie below 0.95 of the highest bin (10.47 kHz), the rest above
    assert np.all(features[0, 0, :3] == 0.0) and np.all(features[0, 0, 3:HARMONIC_COUNT] == FLOOR)


def test_partial_details_read_each_partials_width_and_what_lies_between() -> None:
    # a steady note exactly on bin 40: each played partial's main lobe is the Hann window's,
    # its neighbours at half the peak (log10 0.5); nothing between the partials
    pitch = 40 * RATE / N_FFT
    steady = _note(pitch, 3 * N_FFT, [0.5, 0.05, 0.005])
    magnitude = frame_magnitudes(steady)
    details = partial_details(magnitude, np.full((magnitude.shape[0], 1), pitch), RATE, N_FFT)
    assert details.shape == (magnitude.shape[0], 1, 4 * HARMONIC_COUNT)
    below, centre, above, between = np.split(details[0, 0], 4)
    half = np.log10(0.5)
    assert below[:3] == pytest.approx([half] * 3, abs=0.01)
    assert above[:3] == pytest.approx([half] * 3, abs=0.01)
    assert np.all(centre[:3] == 0.0)
    assert np.all(between <= -3.0) and np.all(details >= FLOOR)
    # noise 20 dB below the note raises the floor between the partials
    noise = np.random.default_rng(0).standard_normal(steady.size) * 0.5 * 10 ** (-20 / 20)
    noisy = frame_magnitudes(steady + noise)
    heard = partial_details(noisy, np.full((noisy.shape[0], 1), pitch), RATE, N_FFT)
    assert -3.0 < np.median(heard[0, 0, 3 * HARMONIC_COUNT :]) < -1.0
    assert heard[0, 0, 0] == pytest.approx(half, abs=0.05)  # the first partial: as it was
    # the second features are the first, then the details
    both = note_features(magnitude, np.array([[pitch]] * magnitude.shape[0]), RATE, N_FFT,
                         DETAILED_VERSION)  # fmt: skip
    assert both.shape[-1] == FEATURE_SIZES[DETAILED_VERSION]
    assert np.array_equal(both[..., FEATURES:], details)
    with pytest.raises(ValueError, match="unknown note features"):
        note_features(magnitude, np.array([[pitch]]), RATE, N_FFT, "harmonic-profile-9")


def test_a_classifier_reads_the_features_its_file_names(tmp_path: Path) -> None:
    inputs = FEATURE_SIZES[DETAILED_VERSION]
    codes = json.dumps(list(INSTRUMENT_CODES))
    weight = np.zeros((13, inputs), np.float32)
    weight[INSTRUMENT_CODES.index("vn"), FEATURES] = 1.0  # the first partial's lower side
    path = tmp_path / "detailed.safetensors"
    tensors = {"0.weight": weight, "0.bias": np.zeros(13, np.float32)}
    save_file(tensors, str(path), metadata={"features": DETAILED_VERSION, "instruments": codes})
    classifier = read_note_classifier(path)
    assert classifier.features == DETAILED_VERSION
    pitch = 40 * RATE / N_FFT
    magnitude = frame_magnitudes(_note(pitch, 3 * N_FFT, [0.5, 0.05]))
    features = classifier.note_features(magnitude, np.array([[pitch]] * magnitude.shape[0]),
                                        RATE, N_FFT)  # fmt: skip
    assert features.shape[-1] == inputs
    assert classifier.logits(features)[0, 0, INSTRUMENT_CODES.index("vn")] == pytest.approx(
        np.log10(0.5), abs=0.01
    )
    # a file of the second features whose first layer takes the first's inputs is refused
    short = tmp_path / "short.safetensors"
    tensors = {"0.weight": np.zeros((13, FEATURES), np.float32), "0.bias": np.zeros(13, np.float32)}
    save_file(tensors, str(short), metadata={"features": DETAILED_VERSION, "instruments": codes})
    with pytest.raises(CheckpointError, match=f"{inputs} inputs"):
        read_note_classifier(short)


def _toy_samples(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Notes of two made-up instruments: vn with every harmonic, cl with the odd ones."""
    rng = np.random.default_rng(seed)
    x = np.full((count, FEATURES), FLOOR, np.float32)
    y = rng.integers(0, 2, count)
    decay = -0.1 * np.arange(HARMONIC_COUNT)
    x[:, :HARMONIC_COUNT] = decay + 0.05 * rng.standard_normal((count, HARMONIC_COUNT))
    x[y == 1, 1:HARMONIC_COUNT:2] = FLOOR  # no even harmonics
    x[:, -1] = rng.uniform(-1.5, 1.0, count)
    codes = np.array([INSTRUMENT_CODES.index("vn"), INSTRUMENT_CODES.index("cl")])
    allowed = np.zeros((count, len(INSTRUMENT_CODES)), bool)
    allowed[:, codes] = True
    return x, codes[y], allowed


def test_training_learns_notes_apart_and_numpy_runs_what_torch_trained(tmp_path: Path) -> None:
    import torch

    x, y, allowed = _toy_samples(2000, seed=0)
    network = train_note_classifier(x, y, allowed, hidden=16, steps=150, batch=256)
    test = _toy_samples(500, seed=1)
    assert restricted_accuracy(network, *test) > 0.95
    path = tmp_path / "notes.safetensors"
    save_note_classifier(network, path, {"steps": "150"}, FEATURE_VERSION)
    loaded = read_note_classifier(path)
    assert loaded.instruments == INSTRUMENT_CODES
    with torch.no_grad():
        want = network(torch.from_numpy(test[0])).numpy()
    assert np.abs(loaded.logits(test[0]) - want).max() < 1e-4
    posteriors = loaded.posteriors(test[0], ["vn", "cl"])
    assert posteriors.shape == (500, 2)
    assert np.allclose(posteriors.sum(axis=1), 1.0)
    right = np.where(test[1] == INSTRUMENT_CODES.index("vn"), 0, 1)
    assert np.mean(posteriors.argmax(axis=1) == right) > 0.95


def test_training_is_deterministic_for_a_seed() -> None:
    x, y, allowed = _toy_samples(500, seed=2)
    first = train_note_classifier(x, y, allowed, hidden=8, steps=20, batch=64, seed=3)
    second = train_note_classifier(x, y, allowed, hidden=8, steps=20, batch=64, seed=3)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy())


def test_a_file_for_other_features_or_none_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"note classifier not found: .*--no-harmonic"):
        read_note_classifier(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read the note classifier"):
        read_note_classifier(garbage)
    other = tmp_path / "other.safetensors"
    weights = {"0.weight": np.zeros((13, FEATURES), np.float32), "0.bias": np.zeros(13, np.float32)}
    save_file(weights, str(other), metadata={"features": "something-else", "instruments": "[]"})
    with pytest.raises(CheckpointError, match="features 'something-else'"):
        read_note_classifier(other)
    wrong = tmp_path / "wrong.safetensors"
    codes = json.dumps(list(INSTRUMENT_CODES))
    save_file(
        {"0.weight": np.zeros((13, 5), np.float32), "0.bias": np.zeros(13, np.float32)},
        str(wrong),
        metadata={"features": FEATURE_VERSION, "instruments": codes},
    )
    with pytest.raises(CheckpointError, match="17 inputs"):
        read_note_classifier(wrong)
    # inner layers that do not chain, bad instruments, a layer without its bias
    broken = {
        "chain": (
            {
                "0.weight": np.zeros((8, FEATURES), np.float32),
                "0.bias": np.zeros(8, np.float32),
                "2.weight": np.zeros((13, 9), np.float32),
                "2.bias": np.zeros(13, np.float32),
            },
            codes,
            "chain of layers",
        ),
        "codes": (
            {"0.weight": np.zeros((13, FEATURES), np.float32), "0.bias": np.zeros(13, np.float32)},
            "{not json",
            "not a note classifier",
        ),
        "bias": (
            {"0.weight": np.zeros((13, FEATURES), np.float32)},
            codes,
            "not a note classifier",
        ),
    }
    for name, (tensors, instruments, message) in broken.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(
            tensors, str(path), metadata={"features": FEATURE_VERSION, "instruments": instruments}
        )
        with pytest.raises(CheckpointError, match=message):
            read_note_classifier(path)


def test_the_bundled_classifier_loads_and_knows_every_urmp_instrument() -> None:
    classifier = load_note_classifier()
    assert classifier.instruments == INSTRUMENT_CODES
    assert classifier.layers[0][0].shape[1] == FEATURE_SIZES[classifier.features]
    # the file its README and model card describe
    readme = (bundled_notes_dir() / "README.md").read_text()
    assert f"`{CLASSIFIER_FILE}` | `{classifier.digest}`" in readme


def test_samples_label_each_players_notes_with_its_instrument() -> None:
    samples = 6 * N_FFT
    violin = _note(660.0, samples, [0.3, 0.2, 0.1])
    bassoon = _note(110.0, samples, [0.05, 0.3, 0.2, 0.1])
    x, y, allowed = note_samples(violin + bassoon, np.stack([violin, bassoon]), ["vn", "bn"], RATE)
    frames = (samples - N_FFT) // HOP + 1
    assert x.shape == (2 * frames, FEATURE_SIZES[DETAILED_VERSION])
    assert allowed.shape == (2 * frames, 13)
    assert np.array_equal(np.unique(y), sorted([INSTRUMENT_CODES.index(c) for c in ("vn", "bn")]))
    pitch_at = FEATURES - 1  # the first features' last: the pitch
    pitch = {INSTRUMENT_CODES[c]: np.median(2 ** x[y == c, pitch_at] * 440) for c in set(y)}
    assert pitch["vn"] == pytest.approx(660.0, rel=0.01)
    assert pitch["bn"] == pytest.approx(110.0, rel=0.01)
    # a piece of one instrument, and a player whose instrument is heard twice, give none
    assert len(note_samples(violin, violin[None], ["vn"], RATE)[1]) == 0
    x, y, _ = note_samples(
        violin + violin + bassoon, np.stack([violin, violin, bassoon]), ["vn", "vn", "bn"], RATE
    )
    assert set(y) == {INSTRUMENT_CODES.index("bn")}


def _pitch_classifier(high: str, low: str) -> NoteClassifier:
    """A stand-in that says ``high`` plays the higher notes and ``low`` the lower ones (by
    the pitch input alone; 0 at 440 Hz)."""
    weight = np.zeros((13, FEATURES), np.float32)
    weight[INSTRUMENT_CODES.index(high), -1] = 20.0
    weight[INSTRUMENT_CODES.index(low), -1] = -20.0
    return NoteClassifier(((weight, np.zeros(13, np.float32)),), INSTRUMENT_CODES)


def test_the_classifier_decides_which_stem_takes_a_note_the_stems_hold_alike() -> None:
    # both stems hold both notes alike, so their saliences cannot say whose is whose; the
    # classifier's word decides, each way round
    samples = 30000
    upper, lower = _note(660.0, samples, [0.3, 0.2, 0.1]), _note(294.0, samples, [0.3, 0.2, 0.1])
    stems = np.stack([upper + lower, upper + lower])
    settings = {"instruments": ["fl", "cl"], "sample_rate": RATE}
    inner = slice(N_FFT, -N_FFT)

    def error(stem: np.ndarray, want: np.ndarray) -> float:
        return float(np.sqrt(np.mean((stem[inner] - want[inner]) ** 2)))

    for high, low in (("fl", "cl"), ("cl", "fl")):
        refined = refine(
            stems, upper + lower, note_classifier=_pitch_classifier(high, low), **settings
        )
        takes = {"fl": refined[0], "cl": refined[1]}
        assert error(takes[high], upper) < 0.3 * error(takes[high], lower)
        assert error(takes[low], lower) < 0.3 * error(takes[low], upper)

    # with no weight on it, the classifier is never asked
    class Unasked(NoteClassifier):
        def hidden(self, features: np.ndarray) -> np.ndarray:
            raise AssertionError("asked")

    unasked = Unasked(_pitch_classifier("fl", "cl").layers, INSTRUMENT_CODES)
    refine(stems, upper + lower, timbre_weight=0.0, note_classifier=unasked, **settings)
    with pytest.raises(AssertionError, match="asked"):
        refine(stems, upper + lower, note_classifier=unasked, **settings)


def test_an_instrument_the_classifier_does_not_know_turns_it_off() -> None:
    samples = 20000
    upper, lower = _note(660.0, samples, [0.3, 0.2, 0.1]), _note(294.0, samples, [0.3, 0.2, 0.1])
    stems = np.stack([upper + lower, upper + lower])
    settings = {"instruments": ["fl", "cl"], "sample_rate": RATE}
    strings_only = NoteClassifier(_pitch_classifier("vn", "vc").layers, INSTRUMENT_CODES[:4])
    plain = refine(stems, upper + lower, timbre_weight=0.0, **settings)
    assert np.array_equal(
        refine(stems, upper + lower, note_classifier=strings_only, **settings), plain
    )


def test_masks_with_the_classifier_in_blocks_equal_one_pass() -> None:
    rng = np.random.default_rng(4)
    samples = 25000
    notes = [_note(f, samples, [0.3, 0.2, 0.1]) for f in (660.0, 294.0, 98.0)]
    notes[2][: samples // 2] = 0.0  # the bassoon enters half-way: blocks where it is silent
    mixture = sum(notes)
    # stems that each hold every note alike: the bundled classifier's word decides
    stems = mixture + 0.1 * rng.standard_normal((3, samples))
    stems[2, : samples // 2] = 0.0
    settings = {"instruments": ["vn", "cl", "bn"], "sample_rate": RATE}
    # the first pass hears the same in any blocks (to float rounding: its sums are grouped
    # by the blocks), and what refine hears
    sizes = [7, 1000, 5, 4096, 1]
    heard = []
    for blocks in ([samples], sizes):
        listener, start, pushes = timbre_listener(3, **settings), 0, 0
        assert listener is not None
        while start < samples:
            size = blocks[pushes % len(blocks)]
            listener.push(mixture[start : start + size])
            start, pushes = start + size, pushes + 1
        heard.append(listener.prototypes())
    assert heard[0] is not None and heard[1] is not None and set(heard[0]) == {"vn", "cl", "bn"}
    assert all(np.allclose(heard[0][code], heard[1][code], atol=1e-6) for code in heard[0])
    prototypes = heard[0]
    whole = refine(stems, mixture, prototypes=prototypes, **settings)
    assert np.allclose(whole, refine(stems, mixture, **settings), atol=1e-6)
    assert not np.array_equal(whole, refine(stems, mixture, timbre_weight=0.0, **settings))
    # the masks, given the prototypes, in blocks of any size: one pass's samples
    masks, parts, start = SoftMaskFilter(3, prototypes=prototypes, **settings), [], 0
    while start < samples:
        size = sizes[len(parts) % len(sizes)]
        parts.append(masks.push(stems[:, start : start + size], mixture[start : start + size]))
        start += size
    parts.append(masks.finish())
    assert np.array_equal(np.concatenate(parts, axis=1), whole)
