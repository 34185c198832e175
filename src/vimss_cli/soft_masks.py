"""Soft time-frequency masks: the network's stems refined on the mixture itself.

The network writes each player's stem in the time domain, and the stems need not add up to
the mixture: what one stem misses, no other holds. This stage takes the stems' short-time
spectra as estimates of where each player's energy lies and splits the *mixture's* spectrum
among them, bin by bin, in proportion to ``|S_k| ** power``, with one more share for what no
stem claims (the mixture minus their sum, "the rest"). Each refined stem is the mixture's
spectrum times its mask, back in the time domain by overlap-add. It is the Wiener-style
post-filter of spectrogram separators (Open-Unmix's, with ``power`` 2), here on a time-domain
network's output.

Measured on the default model (docs/training.md): on Bach10's real recordings the whole-clip
SDR gains 0.8 dB and each stem's 1 s-window median 0.2 dB (means of the paired differences);
on the held-out synthetic split both gain.

**Harmonic masks** (given the players' instruments): URMP's instruments play one note at a
time, so each stem's energy lies on the harmonics of one pitch. Per frame, each stem's pitch is
the strongest in its instrument's range (harmonic summation, :class:`PitchGrid`) on the
soft-masked stem, and a bin near one of its harmonics (:func:`harmonic_comb`, ``c_k`` in
[0, 1]) weighs more: the shares become ``|S_k| ** power * (OFF_HARMONIC + c_k)``, the rest's
``|R| ** power * OFF_HARMONIC``. A bin near no stem's harmonic keeps its soft-mask split; one
near a single stem's harmonic goes mostly to that stem. Silent stems (:class:`LoudnessGate`)
have no pitch. The gain depends on how often a stem's strongest pitch is its own player's:
measured in docs/training.md ("Harmonic masks").

Streaming and exact: frames of :data:`N_FFT` samples every :data:`HOP` samples lie on one
grid from the first sample (:class:`~vimss_cli.stft_stream.StreamingSTFT`), so pushing the
stems in blocks of any size gives the samples one push of the whole would (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vimss_cli.pitch_voices import HARMONICS, LoudnessGate, PitchGrid, harmonic_comb
from vimss_cli.stft_stream import StreamingSTFT

#: Samples per frame (186 ms at 22.05 kHz): long enough to resolve a low instrument's
#: partials, short enough to follow its notes.
N_FFT = 4096
#: Samples between frames (a quarter of a frame: the periodic Hann window's squares then add
#: up to a constant, so the frames overlap-add back to the signal exactly).
HOP = 1024
#: Each stem's share of a bin is its magnitude to this power (2 would be the Wiener filter's
#: powers, 1 the magnitudes'); measured between the two, docs/training.md.
POWER = 1.5
#: With harmonic masks, a bin's weight away from a stem's harmonics, against 1 + this on
#: them (docs/training.md, "Harmonic masks").
OFF_HARMONIC = 0.1
#: Added to a bin's total share, so that a silent bin divides nothing by zero (float32).
_EPS = np.float32(1e-30)


def _power(magnitudes: np.ndarray, power: float) -> np.ndarray:
    """``magnitudes ** power``; 1.5 as ``m * sqrt(m)``, three times as fast."""
    return magnitudes * np.sqrt(magnitudes) if power == 1.5 else magnitudes**power


class SoftMaskFilter:
    """Refine ``players`` stems on their mixture, block by block.

    Call :meth:`push` with each block of stems and the mixture samples they came from, then
    :meth:`finish`; the refined stems come out in order, whole hops at a time, at least
    :data:`N_FFT` - :data:`HOP` samples (and less than :data:`N_FFT`) behind what went in,
    all of them by the end (:class:`~vimss_cli.stft_stream.StreamingSTFT`).
    """

    def __init__(
        self,
        players: int,
        n_fft: int = N_FFT,
        hop: int = HOP,
        power: float = POWER,
        rest_share: bool = True,
        instruments: Sequence[str | None] | None = None,
        sample_rate: int | None = None,
        off_harmonic: float = OFF_HARMONIC,
    ) -> None:
        """``rest_share``: what no stem claims keeps its share of each bin; without it the
        stems add up to the mixture (the settings are compared in docs/training.md).
        ``instruments``: each stem's URMP code, for harmonic masks at ``sample_rate``;
        ``None`` for a stem that keeps its plain soft share (an unknown instrument, or a stem
        that may hold more than one player's notes); without them, plain soft masks.
        ``off_harmonic``: with harmonic masks, a bin's weight away from the harmonics."""
        self.players, self.power, self.rest_share = players, power, rest_share
        self.off_harmonic = np.float32(off_harmonic)
        # channel 0 is the mixture, channels 1..K the stems
        self._stft = StreamingSTFT(players + 1, players, n_fft, hop, self._masked)
        self._grids: list[PitchGrid | None] = []
        if instruments is not None:
            if len(instruments) != players or sample_rate is None:
                raise ValueError("harmonic masks need one instrument per stem and a sample rate")
            self.sample_rate = int(sample_rate)
            self._grids = [
                None if code is None else PitchGrid(code, self.sample_rate, n_fft)
                for code in instruments
            ]
            # no floor in dBFS: a quiet recording gets the pitches a loud one does
            self._gates = [LoudnessGate(self._stft.window, None) for _ in instruments]

    def push(self, stems: np.ndarray, mixture: np.ndarray) -> np.ndarray:
        """Take the next block: ``stems`` ``(K, n)`` and ``mixture`` ``(n,)``; return the
        refined stems ``(K, m)`` float32 of the samples now complete (``m`` may be 0)."""
        if stems.shape != (self.players, mixture.shape[0]):
            raise ValueError(
                f"expected stems ({self.players}, {mixture.shape[0]}), got {stems.shape}"
            )
        block = np.empty((self.players + 1, mixture.shape[0]), np.float32)
        block[0], block[1:] = mixture, stems
        return self._stft.push(block)

    def finish(self) -> np.ndarray:
        """The rest of the refined stems ``(K, m)`` float32, to the last sample pushed."""
        return self._stft.finish()

    def _masked(self, spectra: np.ndarray) -> np.ndarray:
        """``(T, 1 + K, bins)`` spectra of the mixture and the stems -> ``(T, K, bins)``: the
        mixture's spectrum shared among the stems."""
        mixture, stems = spectra[:, :1], spectra[:, 1:]
        shares = _power(np.abs(stems), self.power)
        rest = None
        if self.rest_share:  # what no stem holds
            rest = _power(np.abs(mixture - stems.sum(axis=1, keepdims=True)), self.power)
        masks = _masks(shares, rest)
        if self._grids:
            masks = self._harmonic_masks(np.abs(mixture) * masks, shares, rest)
        return masks * mixture

    def _harmonic_masks(
        self, soft: np.ndarray, shares: np.ndarray, rest: np.ndarray | None
    ) -> np.ndarray:
        """Harmonic masks from ``(T, K, bins)`` soft-masked stems' magnitudes (where each
        stem's pitch is found), their shares and the rest's ``(T, 1, bins)`` (or ``None``)
        -> ``(T, K, bins)`` masks."""
        weights = shares * self.off_harmonic  # a stem without a pitch: its soft share
        for k, (grid, gate) in enumerate(zip(self._grids, self._gates, strict=True)):
            if grid is None:
                continue
            loud = gate.loud(soft[:, k])
            pitches = np.full(len(loud), np.nan)
            if loud.any():
                pitches[loud] = grid.strongest(soft[loud, k].T)
            comb = harmonic_comb(pitches, self.sample_rate, self._stft.n_fft, HARMONICS)
            weights[:, k] += shares[:, k] * comb  # (T, bins)
        return _masks(weights, None if rest is None else self.off_harmonic * rest)


def _masks(shares: np.ndarray, rest: np.ndarray | None) -> np.ndarray:
    """``(T, K, bins)`` each stem's share of each bin, ``(T, 1, bins)`` the rest's (or
    ``None``) -> each stem's part of the bin, ``(T, K, bins)``."""
    total = shares.sum(axis=1, keepdims=True) + _EPS
    if rest is not None:
        total += rest
    return shares / total


#: Samples pushed at a time by :func:`refine` (memory stays a few blocks' worth).
REFINE_BLOCK = 1 << 16


def refine(stems: np.ndarray, mixture: np.ndarray, **settings: Any) -> np.ndarray:
    """Refine whole ``stems`` ``(K, n)`` on their ``mixture`` ``(n,)``: the same samples
    as any other way of pushing them, in blocks, so an hour needs no copies of itself.
    ``settings``: :class:`SoftMaskFilter`'s (``n_fft``, ``hop``, ``power``, ``rest_share``,
    ``instruments``, ``sample_rate`` and ``off_harmonic`` for harmonic masks).
    """
    masks = SoftMaskFilter(stems.shape[0], **settings)
    out = np.empty((stems.shape[0], mixture.shape[0]), np.float32)
    done = 0
    for start in range(0, mixture.shape[0], REFINE_BLOCK):
        end = start + REFINE_BLOCK
        part = masks.push(stems[:, start:end], mixture[start:end])
        out[:, done : done + part.shape[1]] = part
        done += part.shape[1]
    out[:, done:] = masks.finish()
    return out
