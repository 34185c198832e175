"""Harmonic templates learnt on the recording: each stem's pitches -> Wiener masks (experimental).

Given each stem's pitch in every frame (from the harmonic masks, :mod:`vimss_cli.soft_masks`,
or the true stems), the mixture's magnitude spectrogram is modelled as a sum of harmonic
partials: stem ``k`` sounding pitch ``f`` in frame ``t`` adds, at each harmonic ``h``, the
window's main lobe centred on ``h * f`` with height ``gain[k, t] * amplitude[k, m, h]``, where
``m`` is the pitch's nearest semitone. The amplitudes (one harmonic profile per stem and
semitone: what that instrument sounds like on that note *in this recording*) and the gains are
fitted to the mixture by non-negative matrix factorisation's multiplicative updates for the
generalised Kullback-Leibler divergence (score-informed NMF in the manner of Ewert and
Müller 2012, with the pitches in place of a score). Each stem's model, raised to
:data:`WIENER_POWER`, then takes its share of each bin of the mixture's spectrum.

Where the pitches are right this splits overlapping partials far better than a comb around each
pitch (docs/training.md, "Harmonic templates learnt on the recording"); where they are wrong
it fits the wrong notes. Not yet part of ``vimss separate``: it holds the whole recording's
spectrogram in memory (:func:`template_stems` works on whole arrays), and the benchmark
``benchmarks/bench_template_masks.py`` measures it against the shipped masks.

The frames are the streaming grid's (:mod:`vimss_cli.stft_stream`): frame ``t`` covers samples
``[t * hop - lead, t * hop - lead + n_fft)``, so the pitches :class:`~vimss_cli.soft_masks.
SoftMaskFilter` logs line up with them frame for frame.
"""

from __future__ import annotations

import numpy as np

from vimss_cli.soft_masks import HOP, N_FFT
from vimss_cli.stft_stream import StreamingSTFT

#: Harmonics modelled per note (those above the Nyquist frequency are left out).
HARMONICS = 40
#: Multiplicative-update rounds (each updates the gains, then the amplitudes).
ITERATIONS = 40
#: Each stem's modelled magnitude is raised to this before the shares are taken.
WIENER_POWER = 2.0
#: Bins each side of a partial's centre that its main lobe covers (a Hann window's: 2).
LOBE_BINS = 2
#: Semitone templates per stem (MIDI numbers 0..127).
SEMITONES = 128
#: The level of what no stem explains, relative to the mixture's mean magnitude: it keeps the
#: shares finite where no partial lies, and keeps that part of the mixture out of every stem.
FLOOR = 1e-3


def frame_count(samples: int, n_fft: int = N_FFT, hop: int = HOP) -> int:
    """Frames of the streaming grid for ``samples`` samples: until one starts at or past the
    last sample (:meth:`StreamingSTFT.finish`)."""
    return -(-(samples + n_fft - hop) // hop)


def hann_lobe(offsets: np.ndarray) -> np.ndarray:
    """The periodic Hann window's magnitude response at ``offsets`` bins from its peak (any
    shape), relative to the peak: ``|sinc(x) / (1 - x^2)|``, 0.5 at ``x = ±1``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        response = np.abs(np.sinc(offsets) / (1.0 - offsets * offsets))
    return np.where(np.abs(np.abs(offsets) - 1.0) < 1e-6, 0.5, response)


def partial_lobes(
    pitches: np.ndarray, sample_rate: int, n_fft: int, bins: int, harmonics: int = HARMONICS
) -> tuple[np.ndarray, np.ndarray]:
    """Where each stem's partials lie: ``pitches`` ``(K, T)`` Hz (``nan``: silent) ->
    ``(K, T, H, W)`` bin indices and the main lobe's weights there (0 for a silent stem or a
    partial too close to either end of the spectrum), ``W = 2 * LOBE_BINS + 1``."""
    offsets = np.arange(-LOBE_BINS, LOBE_BINS + 1)
    centres = np.nan_to_num(pitches, nan=0.0)[..., None] * np.arange(1, harmonics + 1)
    centres = centres * (n_fft / sample_rate)  # (K, T, H) in bins
    inside = (
        ~np.isnan(pitches)[..., None] & (centres > LOBE_BINS) & (centres < bins - LOBE_BINS - 1)
    )
    nearest = np.where(inside, np.round(centres), LOBE_BINS + 1).astype(np.int64)
    fraction = np.where(inside, centres - nearest, 0.0)
    weights = hann_lobe(offsets - fraction[..., None]) * inside[..., None]
    return nearest[..., None] + offsets, weights


def fit_templates(
    magnitude: np.ndarray,
    pitches: np.ndarray,
    sample_rate: int,
    n_fft: int = N_FFT,
    harmonics: int = HARMONICS,
    iterations: int = ITERATIONS,
) -> np.ndarray:
    """The mixture's magnitudes ``(T, bins)`` and each stem's pitches ``(K, T)`` Hz ->
    each stem's modelled magnitudes ``(K, T, bins)`` float64 (zero where it has no pitch)."""
    frames, bins = magnitude.shape
    stems = pitches.shape[0]
    if pitches.shape[1] != frames:
        raise ValueError(f"pitches cover {pitches.shape[1]} frames, the mixture {frames}")
    index, lobes = partial_lobes(pitches, sample_rate, n_fft, bins, harmonics)
    flat = index * frames + np.arange(frames)[None, :, None, None]  # into (bins, T) raveled
    lobe_sums = lobes.sum(axis=-1)  # (K, T, H)
    sounding = ~np.isnan(pitches)
    midi = 69.0 + 12.0 * np.log2(np.where(sounding, pitches, 440.0) / 440.0)
    semitone = np.clip(np.round(midi), 0, SEMITONES - 1).astype(np.int64)  # (K, T)
    stem_rows = np.arange(stems)[:, None]
    amplitudes = np.ones((stems, SEMITONES, harmonics)) / np.arange(1, harmonics + 1)
    gains = np.where(sounding, float(magnitude.mean()) + 1e-12, 0.0)  # (K, T)
    target = magnitude.T.astype(np.float64).ravel() + 1e-12  # (bins * T,)
    floor = FLOOR * float(magnitude.mean()) + 1e-12

    def models() -> np.ndarray:
        """Each stem's modelled magnitudes, ``(K, bins * T)``."""
        heights = gains[..., None] * amplitudes[stem_rows, semitone]  # (K, T, H)
        return np.stack(
            [
                np.bincount(
                    flat[k].ravel(), (heights[k][..., None] * lobes[k]).ravel(), bins * frames
                )
                for k in range(stems)
            ]
        )

    def ratio_at_partials() -> np.ndarray:
        """Sum over each partial's lobe of target / model, ``(K, T, H)``."""
        ratio = target / (models().sum(axis=0) + floor)
        return (ratio[flat] * lobes).sum(axis=-1)

    for _ in range(iterations):
        profile = amplitudes[stem_rows, semitone]  # (K, T, H)
        seen = ratio_at_partials()
        gains *= (profile * seen).sum(-1) / np.maximum((profile * lobe_sums).sum(-1), 1e-12)
        seen = ratio_at_partials()
        for k in range(stems):
            numerator = np.zeros((SEMITONES, harmonics))
            denominator = np.zeros((SEMITONES, harmonics))
            np.add.at(numerator, semitone[k], gains[k][:, None] * seen[k])
            np.add.at(denominator, semitone[k], gains[k][:, None] * lobe_sums[k])
            used = denominator > 0
            amplitudes[k][used] *= numerator[used] / denominator[used]
    return models().reshape(stems, bins, frames).transpose(0, 2, 1)


def template_masks(
    magnitude: np.ndarray, pitches: np.ndarray, sample_rate: int, n_fft: int = N_FFT, **fit
) -> np.ndarray:
    """Wiener-style masks ``(T, K, bins)`` from the mixture's magnitudes ``(T, bins)`` and
    each stem's pitches ``(K, T)``; they sum to less than 1 where the model explains little.
    ``fit``: :func:`fit_templates`'s ``harmonics`` and ``iterations``."""
    modelled = fit_templates(magnitude, pitches, sample_rate, n_fft, **fit) ** WIENER_POWER
    floor = (FLOOR * float(magnitude.mean()) + 1e-12) ** WIENER_POWER
    masks = modelled / (modelled.sum(axis=0, keepdims=True) + floor)
    return masks.transpose(1, 0, 2)


def template_stems(
    mixture: np.ndarray,
    pitches: np.ndarray,
    sample_rate: int,
    n_fft: int = N_FFT,
    hop: int = HOP,
    **fit,
) -> np.ndarray:
    """The whole ``mixture`` ``(n,)`` and each stem's pitches ``(K, T)`` Hz on the streaming
    grid (``T = frame_count(n)``) -> the stems ``(K, n)`` float32 their templates take."""
    frames = frame_count(mixture.shape[0], n_fft, hop)
    if pitches.ndim != 2 or pitches.shape[1] != frames:
        raise ValueError(f"expected pitches (K, {frames}), got {pitches.shape}")
    stems = pitches.shape[0]
    spectra: list[np.ndarray] = []

    def keep(batch: np.ndarray) -> np.ndarray:
        spectra.append(batch[:, 0])
        return np.zeros((batch.shape[0], stems, batch.shape[2]), np.complex64)

    reader = StreamingSTFT(1, stems, n_fft, hop, keep)
    reader.push(mixture[None].astype(np.float32))
    reader.finish()
    spectrum = np.concatenate(spectra)  # (T, bins)
    masks = template_masks(np.abs(spectrum), pitches, sample_rate, n_fft, **fit)
    masked = (masks * spectrum[:, None]).astype(np.complex64)  # (T, K, bins)
    done = [0]

    def apply(batch: np.ndarray) -> np.ndarray:
        first = done[0]
        done[0] += batch.shape[0]
        return masked[first : done[0]]

    writer = StreamingSTFT(1, stems, n_fft, hop, apply)
    head = writer.push(mixture[None].astype(np.float32))
    return np.concatenate([head, writer.finish()], axis=1)
