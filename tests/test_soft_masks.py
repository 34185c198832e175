"""Soft time-frequency masks on the mixture: exact reconstruction, streaming equal to one
pass, and each stem keeping what its spectrum claims."""

from __future__ import annotations

import numpy as np
import pytest

from vimss_cli.instruments import INSTRUMENT_CODES
from vimss_cli.note_classifier import FEATURES, NoteClassifier
from vimss_cli.soft_masks import HARMONIC_POWER, HOP, N_FFT, SoftMaskFilter, refine

RATE = 22050


def _tone(frequency: float, samples: int) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * frequency * np.arange(samples) / RATE)


@pytest.mark.parametrize("samples", [1, 500, N_FFT, 3 * HOP + 17, 20000])
def test_one_stem_that_is_the_mixture_comes_back_whole(samples: int) -> None:
    mixture = np.random.default_rng(0).standard_normal(samples)
    refined = refine(mixture[None], mixture)
    assert refined.shape == (1, samples) and refined.dtype == np.float32
    assert np.abs(refined[0] - mixture).max() < 1e-6


def test_stems_in_blocks_equal_one_pass() -> None:
    rng = np.random.default_rng(1)
    samples = 30000
    mixture = rng.standard_normal(samples)
    stems = rng.standard_normal((3, samples))
    whole = refine(stems, mixture)
    for sizes in ([7, 1000, 5, 4096, 1], [HOP], [29999, 1], [samples]):
        masks, parts, start = SoftMaskFilter(3), [], 0
        while start < samples:
            size = sizes[len(parts) % len(sizes)]
            parts.append(masks.push(stems[:, start : start + size], mixture[start : start + size]))
            start += size
        parts.append(masks.finish())
        assert np.array_equal(np.concatenate(parts, axis=1), whole), sizes


def test_each_stem_keeps_the_partials_it_claims() -> None:
    # two tones mixed; the network's stems hold 80 % of their own tone and 20 % of the
    # other's: the masks (0.89 and 0.11 of each bin with power 1.5) bring each stem closer
    low, high = _tone(220, 20000), _tone(1760, 20000)
    stems = np.stack([0.8 * low + 0.2 * high, 0.8 * high + 0.2 * low])
    refined = refine(stems, low + high)
    for got, want, raw in zip(refined, (low, high), stems, strict=True):
        inner = slice(N_FFT, -N_FFT)  # away from the ends, where frames are zero-padded
        error = np.sqrt(np.mean((got[inner] - want[inner]) ** 2))
        assert error < 0.6 * np.sqrt(np.mean((raw[inner] - want[inner]) ** 2))


def test_what_no_stem_claims_stays_out_of_the_stems() -> None:
    # a mixture of a tone and noise no stem holds: the tone's stem does not take the noise
    tone = _tone(440, 20000)
    noise = 0.3 * np.random.default_rng(2).standard_normal(20000)
    refined = refine(tone[None], tone + noise)[0]
    inner = slice(N_FFT, -N_FFT)
    assert np.sqrt(np.mean((refined[inner] - tone[inner]) ** 2)) < 0.3 * np.sqrt(
        np.mean(noise[inner] ** 2)
    )


def test_silence_stays_silence() -> None:
    assert not refine(np.zeros((2, 5000)), np.zeros(5000)).any()


def test_without_the_rest_share_the_stems_add_up_to_the_mixture() -> None:
    rng = np.random.default_rng(3)
    mixture, stems = rng.standard_normal(12000), rng.standard_normal((3, 12000))
    refined = refine(stems, mixture, rest_share=False, power=2.0)
    assert np.abs(refined.sum(axis=0) - mixture).max() < 1e-4
    kept = refine(stems, mixture)  # the default keeps what no stem claims out of them
    assert np.abs(kept.sum(axis=0) - mixture).max() > 0.1


def _note(pitch: float, samples: int, harmonics: int = 8) -> np.ndarray:
    """A steady note: ``harmonics`` partials falling by 0.7 each."""
    t = np.arange(samples) / RATE
    return sum(0.2 * 0.7**h * np.sin(2 * np.pi * pitch * (h + 1) * t) for h in range(harmonics))


HARMONIC = {"instruments": ["vc", "vn"], "sample_rate": RATE}


def test_harmonic_masks_in_blocks_equal_one_pass() -> None:
    rng = np.random.default_rng(3)
    samples = 30000
    low, high = _note(131.0, samples), _note(440.0, samples)
    stems = np.stack([low, high]) + 0.05 * rng.standard_normal((2, samples))
    # (the filter alone has not heard the whole mixture first: test_note_classifier.py
    # pushes the prototypes refine would find in blocks too)
    whole = refine(stems, low + high, listen=False, **HARMONIC)
    for sizes in ([7, 1000, 5, 4096, 1], [HOP], [samples]):
        masks, parts, start = SoftMaskFilter(2, **HARMONIC), [], 0
        while start < samples:
            size = sizes[len(parts) % len(sizes)]
            parts.append(
                masks.push(stems[:, start : start + size], (low + high)[start : start + size])
            )
            start += size
        parts.append(masks.finish())
        assert np.array_equal(np.concatenate(parts, axis=1), whole), sizes


def test_harmonic_masks_give_each_stem_its_own_notes_harmonics() -> None:
    # a cello's and a violin's note; the network's stems hold 65 % of their own note and 35 %
    # of the other's. Plain soft masks sharpen that a little; harmonic masks find each stem's
    # pitch and give it the bins of its own harmonics, much closer to each note
    samples = 30000
    low, high = _note(131.0, samples), _note(440.0, samples)
    stems = np.stack([0.65 * low + 0.35 * high, 0.65 * high + 0.35 * low])
    soft = refine(stems, low + high)
    # (without the note classifier: how sure it is of these made-up tones, which weighs each
    # comb, is its own business; the bundled v1 is less sure of them than v0 was)
    harmonic = refine(stems, low + high, timbre_weight=0.0, **HARMONIC)
    inner = slice(N_FFT, -N_FFT)
    for k, want in enumerate((low, high)):
        soft_error = np.sqrt(np.mean((soft[k, inner] - want[inner]) ** 2))
        harmonic_error = np.sqrt(np.mean((harmonic[k, inner] - want[inner]) ** 2))
        assert harmonic_error < 0.5 * soft_error, (k, harmonic_error, soft_error)


def test_a_silent_stem_has_no_pitch_and_keeps_its_soft_share() -> None:
    samples = 20000
    note = _note(440.0, samples)
    stems = np.stack([note, np.zeros(samples)])
    refined = refine(stems, note, instruments=["vn", None], sample_rate=RATE)
    assert np.isfinite(refined).all()
    assert np.abs(refined[1]).max() == 0.0
    inner = slice(N_FFT, -N_FFT)
    assert np.abs(refined[0, inner] - note[inner]).max() < 1e-4


def test_harmonic_masks_need_one_instrument_per_stem_and_a_rate() -> None:
    with pytest.raises(ValueError, match="one instrument per stem"):
        SoftMaskFilter(2, instruments=["vn"], sample_rate=RATE)
    with pytest.raises(ValueError, match="one instrument per stem"):
        SoftMaskFilter(1, instruments=["vn"])


def test_harmonic_masks_are_the_same_at_any_level() -> None:
    # 80 dB quieter, the same pitches and masks: the silence gate is relative to each stem's
    # loudest frame, with no floor in dBFS
    samples = 20000
    low, high = _note(131.0, samples), _note(440.0, samples)
    stems = np.stack([0.65 * low + 0.35 * high, 0.65 * high + 0.35 * low])
    loud = refine(stems, low + high, **HARMONIC)
    quiet = refine(stems * 1e-4, (low + high) * 1e-4, **HARMONIC)
    assert np.abs(quiet * 1e4 - loud).max() < 1e-4 * np.abs(loud).max()


def test_stems_without_an_instrument_keep_their_soft_share() -> None:
    rng = np.random.default_rng(4)
    samples = 20000
    mixture = rng.standard_normal(samples)
    stems = rng.standard_normal((2, samples))
    unknown = refine(stems, mixture, instruments=[None, None], sample_rate=RATE)
    assert np.abs(unknown - refine(stems, mixture)).max() < 1e-5


def test_the_comb_stops_at_the_harmonics_the_pitch_was_found_with() -> None:
    from vimss_cli.pitch_voices import HARMONICS, harmonic_comb

    comb = harmonic_comb(np.array([50.0, np.nan]), RATE, N_FFT, HARMONICS)
    hz = np.arange(N_FFT // 2 + 1) * RATE / N_FFT
    assert comb[0, hz > (HARMONICS + 0.5) * 50.0].max() == 0.0
    assert comb[0, np.abs(hz - HARMONICS * 50.0) < 3].max() > 0.9
    assert comb[1].max() == 0.0  # no pitch, no comb
    uncapped = harmonic_comb(np.array([50.0]), RATE, N_FFT)
    assert uncapped[0, hz > 1000].max() > 0.5


def test_a_large_off_harmonic_weight_gives_the_soft_masks() -> None:
    samples = 20000
    low, high = _note(131.0, samples), _note(440.0, samples)
    stems = np.stack([0.65 * low + 0.35 * high, 0.65 * high + 0.35 * low])
    flat = refine(stems, low + high, off_harmonic=1e6, templates=0, **HARMONIC)
    # (soft masks at the harmonic masks' power)
    assert np.abs(flat - refine(stems, low + high, power=HARMONIC_POWER)).max() < 1e-4
    assert np.abs(refine(stems, low + high, **HARMONIC) - flat).max() > 1e-2


def test_several_pitches_finds_each_note_of_a_chord() -> None:
    from vimss_cli.pitch_voices import PitchGrid, several_pitches

    samples = 20000
    # no note at another's harmonic (hidden there once the other's harmonics are damped)
    chord = _note(147.0, samples) + _note(370.0, samples) + 0.5 * _note(523.0, samples)
    frames = np.stack([chord[i : i + N_FFT] * np.hanning(N_FFT) for i in (4000, 9000)])
    magnitude = np.abs(np.fft.rfft(frames, axis=1)).T  # (bins, 2)
    grid = PitchGrid(None, RATE, N_FFT, (100.0, 1500.0))
    found = several_pitches(magnitude, grid, np.array([3, 1]))
    assert found.shape == (2, 3)
    for pitch in (147.0, 370.0, 523.0):
        assert np.abs(1200 * np.log2(found[0] / pitch)).min() < 30, (pitch, found[0])
    assert np.isnan(found[1, 1:]).all()  # one pitch asked for in the second frame
    assert np.abs(1200 * np.log2(found[1, 0] / found[0])).min() < 30


def test_joint_pitches_give_a_stem_its_own_note_where_another_is_louder() -> None:
    # a violin's loud note and a clarinet's quieter one, below it. The network's clarinet
    # stem holds both, so its own strongest pitch is the violin's; sharing out the mixture's
    # pitches gives it the clarinet's note
    samples = 30000
    violin, clarinet = _note(660.0, samples), 0.3 * _note(294.0, samples)
    stems = np.stack([violin + 0.05 * clarinet, violin + clarinet])
    # (the stems' saliences alone: the note classifier's word on these made-up tones is tested
    # in test_note_classifier.py)
    settings = {"instruments": ["vn", "cl"], "sample_rate": RATE, "timbre_weight": 0.0}
    joint = refine(stems, violin + clarinet, **settings)
    own = refine(stems, violin + clarinet, joint_pitches=False, **settings)
    inner = slice(N_FFT, -N_FFT)

    def error(stem: np.ndarray, want: np.ndarray) -> float:
        return float(np.sqrt(np.mean((stem[inner] - want[inner]) ** 2)))

    assert error(joint[1], clarinet) < 0.5 * error(own[1], clarinet)
    assert error(joint[0], violin) <= error(own[0], violin) + 1e-3


def test_stems_of_one_instrument_keep_their_own_pitches() -> None:
    # two label queries of one instrument hold both players' notes: they take no part in the
    # joint choice (which would give each a different note, frame by frame at random)
    samples = 20000
    low, high = _note(330.0, samples), _note(660.0, samples)
    stems = np.stack([low + high, low + high])
    settings = {"instruments": ["vn", "vn"], "sample_rate": RATE}
    joint = refine(stems, low + high, **settings)
    assert np.array_equal(joint, refine(stems, low + high, joint_pitches=False, **settings))
    assert np.array_equal(joint[0], joint[1])


def test_a_stem_of_two_players_keeps_its_own_pitch(monkeypatch: pytest.MonkeyPatch) -> None:
    # a pitch-split pair's one stem (two violins) beside a cello: the violins' stem holds two
    # players' notes, so only the cello would take part in the joint choice, and (unless it
    # is to leave the pair's notes to the pair, PAIR_ALONE) one stem has nothing to share
    # pitches with: the same masks as each stem's own pitch
    from vimss_cli import soft_masks

    monkeypatch.setattr(soft_masks, "PAIR_ALONE", False)
    samples = 20000
    upper, lower, cello = _note(660.0, samples), _note(494.0, samples), _note(131.0, samples)
    stems = np.stack([upper + lower + 0.3 * cello, cello + 0.3 * upper])
    settings = {"instruments": ["vn", "vc"], "sample_rate": RATE, "voices": [2, 1]}
    settings["templates"] = 0  # (the pitches are the question here)
    joint = refine(stems, upper + lower + cello, **settings)
    own = refine(stems, upper + lower + cello, joint_pitches=False, **settings)
    assert np.array_equal(joint, own)
    with pytest.raises(ValueError, match="one voice count per stem"):
        SoftMaskFilter(2, instruments=["vn", "vc"], sample_rate=RATE, voices=[2])


@pytest.mark.parametrize("penalty", [0.0, 0.3])
def test_a_heard_once_stem_leaves_a_pairs_notes_to_the_pair(
    penalty: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two violins (a pitch-split pair's one stem), a viola and a cello; the viola's stem holds
    # the lower violin's note nearly as loud as its own. With a note classifier that hears the
    # viola up there, the viola takes the violin's note; the pair's notes lose
    # soft_masks.PAIR_PENALTY in the joint choice, and the viola takes its own
    from vimss_cli import soft_masks

    monkeypatch.setattr(soft_masks, "PAIR_PENALTY", penalty)
    samples = 2 * RATE
    t = np.arange(samples) / RATE

    def note(pitch: float, levels: list[float]) -> np.ndarray:  # a few partials
        return sum(0.2 * a * np.sin(2 * np.pi * pitch * (h + 1) * t) for h, a in enumerate(levels))

    upper, lower = note(659.3, [1.0, 0.4, 0.3]), note(493.9, [1.0, 0.5, 0.3])
    viola, cello = note(293.7, [1.0, 0.6, 0.4]), note(130.8, [1.0, 0.7, 0.5])
    stems = np.stack(
        [upper + lower + 0.2 * viola, 0.8 * viola + 0.9 * lower, cello + 0.1 * (upper + lower)]
    )
    logged: list[np.ndarray] = []
    # a note classifier that hears the viola in the higher notes, the cello in the lower (by
    # the pitch input alone): the viola's stem, by its saliences alone, would keep its own
    weight = np.zeros((len(INSTRUMENT_CODES), FEATURES), np.float32)
    weight[INSTRUMENT_CODES.index("va"), -1], weight[INSTRUMENT_CODES.index("vc"), -1] = 20, -20
    misled = NoteClassifier(((weight, np.zeros(len(INSTRUMENT_CODES), np.float32)),),
                            INSTRUMENT_CODES)  # fmt: skip
    refine(
        stems, upper + lower + viola + cello, listen=False, pitches_out=logged, templates=0,
        instruments=["vn", "va", "vc"], sample_rate=RATE, voices=[2, 1, 1],
        note_classifier=misled,
    )  # fmt: skip
    taken = np.nanmedian(logged[0][1, 6:-6])  # the viola's, frames inside the notes
    assert taken == pytest.approx(493.9 if penalty == 0 else 293.7, rel=0.01)


@pytest.mark.parametrize("alone", [False, True])
def test_a_stem_alone_beside_a_pair_chooses_among_the_mixtures_pitches(
    alone: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # vn, vn, va: the viola is the only stem heard once; with PAIR_ALONE it too chooses its
    # pitch among the mixture's (the pair's penalised), not just its own strongest
    from vimss_cli import soft_masks

    monkeypatch.setattr(soft_masks, "PAIR_ALONE", alone)
    masks = SoftMaskFilter(2, instruments=["vn", "va"], sample_rate=RATE, voices=[2, 1])
    assert (masks._mixture_grid is not None) == alone
    # two label queries of one instrument (not a pitch-split pair): nothing to choose
    plain = SoftMaskFilter(3, instruments=["vn", "vn", "va"], sample_rate=RATE)
    assert plain._mixture_grid is None
