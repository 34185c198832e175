"""Harmonic templates learnt on the recording: given each stem's pitches they split a mixture
of notes whose partials overlap, on the grid whose pitches the harmonic masks log."""

from __future__ import annotations

import numpy as np
import pytest

from vimss_cli.soft_masks import HOP, N_FFT, SoftMaskFilter, refine
from vimss_cli.template_masks import TemplateBlend, frame_count, hann_lobe, template_stems

RATE = 22050


def _note(pitch: float, samples: int, profile: list[float]) -> np.ndarray:
    """A steady note whose ``h``-th partial has amplitude ``profile[h - 1]``."""
    t = np.arange(samples) / RATE
    return sum(0.2 * a * np.sin(2 * np.pi * pitch * (h + 1) * t) for h, a in enumerate(profile))


def _sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    error = estimate - reference
    return float(10 * np.log10(np.sum(reference**2) / np.sum(error**2)))


def test_the_hann_lobe_peaks_at_its_centre_and_is_half_a_bin_away() -> None:
    response = hann_lobe(np.array([0.0, 1.0, -1.0, 2.0, 0.5]))
    assert response[0] == pytest.approx(1.0)
    assert response[1:3] == pytest.approx([0.5, 0.5])
    assert response[3] == pytest.approx(0.0, abs=1e-12)
    # the window's own spectrum at half a bin (|W(0.5)| / |W(0)| of a periodic Hann window)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    half = abs(np.sum(window * np.exp(-1j * np.pi * np.arange(N_FFT) / N_FFT))) / window.sum()
    assert response[4] == pytest.approx(half, rel=1e-3)


def test_the_grid_has_a_frame_from_before_the_first_sample_to_past_the_last() -> None:
    assert frame_count(1) == 4
    assert frame_count(HOP) == 4
    assert frame_count(HOP + 1) == 5
    masks = SoftMaskFilter(1, instruments=["vn"], sample_rate=RATE, log_pitches=True)
    samples = 5 * HOP + 3
    note = _note(440.0, samples, [1.0, 0.5])
    masks.push(note[None], note)
    masks.finish()
    assert masks.logged_pitches().shape == (1, frame_count(samples))


def test_the_harmonic_masks_log_each_stems_pitch() -> None:
    samples = 40000
    low, high = _note(220.0, samples, [1.0, 0.6, 0.4]), _note(587.3, samples, [1.0, 0.3])
    logged: list[np.ndarray] = []
    refine(
        np.stack([low, high]), low + high, pitches_out=logged,
        instruments=["vc", "fl"], sample_rate=RATE,
    )  # fmt: skip
    pitches = logged[0]
    assert pitches.shape == (2, frame_count(samples))
    inner = pitches[:, 6:-6]  # frames wholly inside the notes
    assert np.nanmax(np.abs(12 * np.log2(inner[0] / 220.0))) < 0.5
    assert np.nanmax(np.abs(12 * np.log2(inner[1] / 587.3))) < 0.5


def test_pitches_are_logged_only_when_asked() -> None:
    with pytest.raises(ValueError, match="log_pitches"):
        SoftMaskFilter(1, instruments=["vn"], sample_rate=RATE).logged_pitches()


def test_given_the_pitches_the_templates_split_notes_an_octave_apart() -> None:
    # an octave: every partial of the upper note lies on one of the lower note's. A comb
    # around each pitch cannot tell whose those shared partials are; templates learnt where
    # the lower note sounds alone can
    samples = 3 * RATE
    lower_profile, upper_profile = [1.0, 0.2, 0.6, 0.1, 0.3, 0.05], [1.0, 0.4, 0.2]
    lower = _note(220.0, samples, lower_profile)
    upper = _note(440.0, samples, upper_profile)
    upper[: samples // 3] = 0.0  # the lower note plays alone for its first second
    frames = frame_count(samples)
    pitches = np.full((2, frames), 220.0)
    pitches[1] = 440.0
    starts = np.arange(frames) * HOP - (N_FFT - HOP)  # each frame's first sample
    pitches[1, starts + N_FFT <= samples // 3] = np.nan  # frames wholly before the upper note
    stems = template_stems(lower + upper, pitches, RATE)
    assert stems.shape == (2, samples) and stems.dtype == np.float32
    inner = slice(samples // 3 + N_FFT, samples - N_FFT)  # both sounding
    assert _sdr(stems[0, inner], lower[inner]) > 14.0
    assert _sdr(stems[1, inner], upper[inner]) > 14.0


def test_a_stem_without_a_pitch_gets_nothing() -> None:
    samples = 20000
    note = _note(330.0, samples, [1.0, 0.5, 0.25])
    pitches = np.full((2, frame_count(samples)), np.nan)
    pitches[0] = 330.0
    stems = template_stems(note, pitches, RATE)
    assert np.abs(stems[1]).max() == 0.0
    inner = slice(N_FFT, -N_FFT)
    assert _sdr(stems[0, inner], note[inner]) > 20.0


def test_pitches_must_cover_the_grid() -> None:
    with pytest.raises(ValueError, match="expected pitches"):
        template_stems(np.zeros(5000), np.full((2, 3), 440.0), RATE)


def _blend_in_pieces(
    blend: TemplateBlend,
    stems: np.ndarray,
    mixture: np.ndarray,
    pitches: np.ndarray,
    sizes: list[int],
) -> np.ndarray:
    """Push ``stems``, ``mixture`` and ``pitches`` through ``blend`` in pieces: ``sizes``
    samples at a time (the pitches in as many frames as those samples cover)."""
    out, start, frame, turn = [], 0, 0, 0
    while start < mixture.shape[0]:
        end = min(mixture.shape[0], start + sizes[turn % len(sizes)])
        upto = min(pitches.shape[1], end // HOP)
        out.append(blend.push(stems[:, start:end], mixture[start:end], pitches[:, frame:upto]))
        start, frame, turn = end, upto, turn + 1
    out.append(blend.push(stems[:, :0], mixture[:0], pitches[:, frame:]))
    out.append(blend.finish())
    return np.concatenate(out, axis=1)


def _duet(samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A cello's and a flute's steady notes: the stems a mask might give (each with a third
    of the other), their mixture and their pitches on the grid."""
    low = _note(196.0, samples, [1.0, 0.5, 0.7, 0.2])
    high = _note(784.0, samples, [1.0, 0.3])
    stems = np.stack([0.67 * low + 0.33 * high, 0.67 * high + 0.33 * low]).astype(np.float32)
    pitches = np.empty((2, frame_count(samples)))
    pitches[0], pitches[1] = 196.0, 784.0
    return stems, (low + high).astype(np.float32), pitches


@pytest.mark.parametrize("sizes", [[1000], [7, 5000, 333], [HOP], [10**6]])
def test_the_blend_in_pieces_equals_one_push(sizes: list[int]) -> None:
    samples = 30 * HOP + 123  # three blocks of 8 hops and a part, margins of 2
    stems, mixture, pitches = _duet(samples)
    settings = {"block_hops": 8, "margin_hops": 2}
    whole = _blend_in_pieces(
        TemplateBlend([0.3, 0.3], RATE, **settings), stems, mixture, pitches, [samples]
    )
    assert whole.shape == (2, samples) and whole.dtype == np.float32
    pieces = _blend_in_pieces(
        TemplateBlend([0.3, 0.3], RATE, **settings), stems, mixture, pitches, sizes
    )
    assert np.array_equal(pieces, whole)


def test_a_stem_of_weight_zero_comes_out_as_it_went_in() -> None:
    samples = 20 * HOP + 5
    stems, mixture, pitches = _duet(samples)
    blend = TemplateBlend([0.0, 0.5], RATE, block_hops=8, margin_hops=2)
    out = _blend_in_pieces(blend, stems, mixture, pitches, [3000])
    assert np.array_equal(out[0], stems[0])
    assert not np.allclose(out[1], stems[1])


def test_one_block_blends_the_whole_fit() -> None:
    samples = 6 * HOP
    stems, mixture, pitches = _duet(samples)
    out = _blend_in_pieces(TemplateBlend([0.3, 0.6], RATE), stems, mixture, pitches, [999])
    fitted = template_stems(mixture, pitches, RATE)
    weights = np.array([[0.3], [0.6]], np.float32)
    assert np.allclose(out, weights * fitted + (1 - weights) * stems, atol=1e-6)


def test_blocks_join_without_a_step() -> None:
    # the same steady notes fitted in blocks of 8 hops or in one: the cross-fades leave the
    # blend within a small fraction of the note's level of the one fit's
    samples = 40 * HOP
    stems, mixture, pitches = _duet(samples)
    blocks = _blend_in_pieces(
        TemplateBlend([1.0, 1.0], RATE, block_hops=8, margin_hops=2),
        stems,
        mixture,
        pitches,
        [samples],
    )
    one = template_stems(mixture, pitches, RATE)
    inner = slice(N_FFT, -N_FFT)
    assert np.abs(blocks[:, inner] - one[:, inner]).max() < 0.02 * np.abs(mixture).max()


def test_the_blend_needs_an_even_margin_within_a_block() -> None:
    with pytest.raises(ValueError, match="margin"):
        TemplateBlend([0.3], RATE, block_hops=4, margin_hops=3)
    with pytest.raises(ValueError, match="templates must lie"):
        SoftMaskFilter(2, instruments=["vc", "fl"], sample_rate=RATE, templates=1.5)


def test_harmonic_masks_with_templates_in_blocks_equal_one_pass() -> None:
    samples = 50000
    stems, mixture, _ = _duet(samples)
    # (as the filter alone: without the first pass over the whole mixture)
    whole = refine(stems, mixture, listen=False, instruments=["vc", "fl"], sample_rate=RATE)
    without = refine(
        stems, mixture, listen=False, instruments=["vc", "fl"], sample_rate=RATE, templates=0
    )
    assert not np.allclose(whole, without)
    for sizes in ([7, 10000, 1], [HOP], [samples]):
        masks = SoftMaskFilter(2, instruments=["vc", "fl"], sample_rate=RATE)
        parts, start = [], 0
        while start < samples:
            size = sizes[len(parts) % len(sizes)]
            parts.append(masks.push(stems[:, start : start + size], mixture[start : start + size]))
            start += size
        parts.append(masks.finish())
        assert np.array_equal(np.concatenate(parts, axis=1), whole), sizes


def test_finishing_twice_gives_nothing_more() -> None:
    samples = 8 * HOP - HOP // 2 + 100  # ends inside a cross-fade of blocks of 8 hops
    stems, mixture, pitches = _duet(samples)
    blend = TemplateBlend([0.3, 0.3], RATE, block_hops=8, margin_hops=2)
    out = _blend_in_pieces(blend, stems, mixture, pitches, [samples])
    assert out.shape == (2, samples)
    assert blend.finish().shape == (2, 0)
    masks = SoftMaskFilter(2, instruments=["vc", "fl"], sample_rate=RATE)
    masks.push(stems, mixture)
    assert masks.finish().shape == (2, samples)
    assert masks.finish().shape == (2, 0)


@pytest.mark.parametrize("bad", [-220.0, 0.0, np.inf])
def test_pitches_must_be_positive_hertz(bad: float) -> None:
    pitches = np.full((1, frame_count(5000)), 220.0)
    pitches[0, 2] = bad
    with pytest.raises(ValueError, match="positive Hz"):
        template_stems(np.zeros(5000), pitches, RATE)


def test_harmonic_masks_with_templates_over_several_blocks_equal_one_pass() -> None:
    # 40 s: two template blocks of about 30 s, joined by a cross-fade
    samples = 40 * RATE
    stems, mixture, _ = _duet(samples)
    settings = {"instruments": ["vc", "fl"], "sample_rate": RATE}
    whole = refine(stems, mixture, listen=False, **settings)
    assert whole.shape == (2, samples)
    masks = SoftMaskFilter(2, **settings)
    parts, start, size = [], 0, 77777
    while start < samples:
        parts.append(masks.push(stems[:, start : start + size], mixture[start : start + size]))
        start += size
    parts.append(masks.finish())
    assert np.array_equal(np.concatenate(parts, axis=1), whole)


def test_a_stem_of_two_players_is_fitted_as_two_voices() -> None:
    # a pitch-split pair's one stem (two violins) beside a cello, each stem a third the
    # other's: the templates model the pair's two notes, so its stem and the cello's come
    # closer to their own notes than the harmonic masks alone make them
    samples = 3 * RATE
    upper = _note(659.3, samples, [1.0, 0.4, 0.3])
    lower = _note(493.9, samples, [1.0, 0.6, 0.2])
    cello = _note(130.8, samples, [1.0, 0.7, 0.5, 0.3])
    violins = upper + lower
    stems = np.stack([0.67 * violins + 0.33 * cello, 0.67 * cello + 0.33 * violins])
    settings = {"instruments": ["vn", "vc"], "sample_rate": RATE, "voices": [2, 1]}
    blended = refine(stems, violins + cello, listen=False, **settings)
    alone = refine(stems, violins + cello, listen=False, templates=0, **settings)
    inner = slice(N_FFT, -N_FFT)
    for k, want in enumerate((violins, cello)):
        assert _sdr(blended[k, inner], want[inner]) > _sdr(alone[k, inner], want[inner]) + 0.5
    # in pieces, the first too short to finish a frame (no pitches logged yet)
    masks = SoftMaskFilter(2, **settings)
    starts = [0, 7, *range(9999, samples, 9999)]
    parts = [
        masks.push(stems[:, a:b], (violins + cello)[a:b])
        for a, b in zip(starts, [*starts[1:], samples], strict=True)
    ]
    assert np.array_equal(np.concatenate([*parts, masks.finish()], axis=1), blended)
