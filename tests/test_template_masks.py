"""Harmonic templates learnt on the recording: given each stem's pitches they split a mixture
of notes whose partials overlap, on the grid whose pitches the harmonic masks log."""

from __future__ import annotations

import numpy as np
import pytest

from vimss_cli.soft_masks import HOP, N_FFT, SoftMaskFilter, refine
from vimss_cli.template_masks import frame_count, hann_lobe, template_stems

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
