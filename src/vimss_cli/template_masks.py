"""Harmonic templates learnt on the recording: each stem's pitches -> Wiener masks.

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
pitch; where they are wrong it fits the wrong notes. So the harmonic masks blend it in:
:class:`TemplateBlend` makes ``TEMPLATE_BLEND`` (:mod:`vimss_cli.soft_masks`) of each
heard-once stem (and of each pitch-split pair's stem, fitted as two voices) from the templates
and the rest from the harmonic masks' stem, fitting the templates on blocks of about 30 s
(bounded memory, the same samples whatever the pushes) that cross-fade (docs/training.md,
"Harmonic templates learnt on the recording"; ``benchmarks/bench_template_masks.py``).

The frames are the streaming grid's (:mod:`vimss_cli.stft_stream`): frame ``t`` covers samples
``[t * hop - lead, t * hop - lead + n_fft)``, so the pitches :class:`~vimss_cli.soft_masks.
SoftMaskFilter` logs line up with them frame for frame.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from vimss_cli.soft_masks import HOP, N_FFT
from vimss_cli.stft_stream import StreamingSTFT

#: Harmonics modelled per note (those above the Nyquist frequency are left out).
HARMONICS = 16
#: Multiplicative-update rounds (each updates the gains, then the amplitudes).
ITERATIONS = 15
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
    each stem's modelled magnitudes ``(K, T, bins)`` float32 (zero where it has no pitch)."""
    frames, bins = magnitude.shape
    stems = pitches.shape[0]
    if pitches.shape[1] != frames:
        raise ValueError(f"pitches cover {pitches.shape[1]} frames, the mixture {frames}")
    if not np.all(np.isnan(pitches) | (np.isfinite(pitches) & (pitches > 0))):
        raise ValueError("pitches must be positive Hz, or nan where a stem is silent")
    index, lobes = partial_lobes(pitches, sample_rate, n_fft, bins, harmonics)
    flat = index * frames + np.arange(frames)[None, :, None, None]  # into (bins, T) raveled
    # partials -> the spectrogram's cells their lobes touch, as one sparse matrix:
    # (cells touched, K * T * H); the model is zero in every other cell
    cells, row_of = np.unique(flat.ravel(), return_inverse=True)
    partial = np.repeat(np.arange(stems * frames * harmonics), flat.shape[-1])
    lobe_matrix = scipy.sparse.csr_matrix(
        (lobes.ravel(), (row_of.ravel(), partial)), shape=(cells.size, partial[-1] + 1)
    )
    to_partials = lobe_matrix.T.tocsr()
    lobe_sums = lobes.sum(axis=-1)  # (K, T, H)
    sounding = ~np.isnan(pitches)
    midi = 69.0 + 12.0 * np.log2(np.where(sounding, pitches, 440.0) / 440.0)
    semitone = np.clip(np.round(midi), 0, SEMITONES - 1).astype(np.int64)  # (K, T)
    # (K * T) frames -> (K * SEMITONES) templates, one-hot
    template_of = scipy.sparse.csr_matrix(
        (
            np.ones(stems * frames),
            ((np.arange(stems)[:, None] * SEMITONES + semitone).ravel(), np.arange(stems * frames)),
        ),
        shape=(stems * SEMITONES, stems * frames),
    )
    stem_rows = np.arange(stems)[:, None]
    amplitudes = np.ones((stems, SEMITONES, harmonics)) / np.arange(1, harmonics + 1)
    gains = np.where(sounding, float(magnitude.mean()) + 1e-12, 0.0)  # (K, T)
    target = magnitude.T.astype(np.float64).ravel()[cells] + 1e-12  # (cells,)
    floor = FLOOR * float(magnitude.mean()) + 1e-12

    def ratio_at_partials() -> np.ndarray:
        """Sum over each partial's lobe of target / model, ``(K, T, H)``."""
        heights = gains[..., None] * amplitudes[stem_rows, semitone]  # (K, T, H)
        ratio = target / (lobe_matrix @ heights.ravel() + floor)
        return (to_partials @ ratio).reshape(stems, frames, harmonics)

    for _ in range(iterations):
        profile = amplitudes[stem_rows, semitone]  # (K, T, H)
        seen = ratio_at_partials()
        gains *= (profile * seen).sum(-1) / np.maximum((profile * lobe_sums).sum(-1), 1e-12)
        seen = ratio_at_partials()
        weighted = gains[..., None]
        numerator = template_of @ (weighted * seen).reshape(stems * frames, harmonics)
        denominator = template_of @ (weighted * lobe_sums).reshape(stems * frames, harmonics)
        used = denominator > 0
        amplitudes.reshape(stems * SEMITONES, harmonics)[used] *= (
            numerator[used] / denominator[used]
        )
    heights = gains[..., None] * amplitudes[stem_rows, semitone]  # (K, T, H)

    modelled = np.empty((stems, frames, bins), np.float32)
    for k in range(stems):
        cells_k = np.bincount(
            flat[k].ravel(), (heights[k][..., None] * lobes[k]).ravel(), bins * frames
        )
        modelled[k] = cells_k.reshape(bins, frames).T
    return modelled


def template_masks(
    magnitude: np.ndarray,
    pitches: np.ndarray,
    sample_rate: int,
    n_fft: int = N_FFT,
    harmonics: int = HARMONICS,
    iterations: int = ITERATIONS,
) -> np.ndarray:
    """Wiener-style masks ``(T, K, bins)`` from the mixture's magnitudes ``(T, bins)`` and
    each stem's pitches ``(K, T)``; they sum to less than 1 where the model explains little."""
    masks = fit_templates(magnitude, pitches, sample_rate, n_fft, harmonics, iterations)
    np.power(masks, np.float32(WIENER_POWER), out=masks)
    floor = np.float32((FLOOR * float(magnitude.mean()) + 1e-12) ** WIENER_POWER)
    masks /= masks.sum(axis=0, keepdims=True) + floor
    return masks.transpose(1, 0, 2)  # (float32)


def template_stems(
    mixture: np.ndarray,
    pitches: np.ndarray,
    sample_rate: int,
    n_fft: int = N_FFT,
    hop: int = HOP,
    harmonics: int = HARMONICS,
    iterations: int = ITERATIONS,
    owners: np.ndarray | None = None,
) -> np.ndarray:
    """The whole ``mixture`` ``(n,)`` and each stem's pitches ``(K, T)`` Hz on the streaming
    grid (``T = frame_count(n)``) -> the stems ``(K, n)`` float32 their templates take.
    ``owners`` ``(C,)``: with ``(C, T)`` pitches of C voices, the stem each voice belongs to
    (a stem of two players' notes has two voices); by default one voice per stem."""
    frames = frame_count(mixture.shape[0], n_fft, hop)
    if pitches.ndim != 2 or pitches.shape[1] != frames:
        raise ValueError(f"expected pitches (K, {frames}), got {pitches.shape}")
    if owners is None:
        owners = np.arange(pitches.shape[0])
    owners = np.asarray(owners, np.int64)
    if owners.shape != (pitches.shape[0],) or owners.min(initial=0) < 0:
        raise ValueError("expected one owning stem per row of pitches")
    stems = int(owners.max(initial=-1)) + 1
    spectra: list[np.ndarray] = []

    def keep(batch: np.ndarray) -> np.ndarray:
        spectra.append(batch[:, 0])
        return np.zeros_like(batch)  # (read only: what it gives back is thrown away)

    reader = StreamingSTFT(1, 1, n_fft, hop, keep)
    reader.push(mixture[None].astype(np.float32))
    reader.finish()
    spectrum = np.concatenate(spectra)  # (T, bins)
    masks = template_masks(np.abs(spectrum), pitches, sample_rate, n_fft, harmonics, iterations)
    if not np.array_equal(owners, np.arange(stems)):  # each stem's voices' masks added up
        summed = np.zeros((masks.shape[0], stems, masks.shape[2]), np.float32)
        for voice, stem in enumerate(owners):
            summed[:, stem] += masks[:, voice]
        masks = summed
    masked = (masks * spectrum[:, None]).astype(np.complex64, copy=False)  # (T, K, bins)
    done = [0]

    def apply(batch: np.ndarray) -> np.ndarray:
        first = done[0]
        done[0] += batch.shape[0]
        return masked[first : done[0]]

    writer = StreamingSTFT(1, stems, n_fft, hop, apply)
    head = writer.push(mixture[None].astype(np.float32))
    return np.concatenate([head, writer.finish()], axis=1)


#: Hops per block the templates are fitted on (about 30 s at 22.05 kHz): each block's
#: templates are its own, so memory stays bounded however long the recording.
BLOCK_HOPS = 640
#: Hops each side of a block that its fit also hears. Neighbouring blocks' stems cross-fade
#: over the middle of that overlap, one margin long, away from either fit's edge.
MARGIN_HOPS = 32


class TemplateBlend:
    """The templates' stems blended into the harmonic masks' stems, block by block.

    :meth:`push` the harmonic masks' refined stems as they come, the mixture's samples as they
    came in (ahead of them), and the pitches the harmonic masks used, frame by frame on the
    streaming grid (:meth:`~vimss_cli.soft_masks.SoftMaskFilter`); then :meth:`finish`. The
    blocks lie on one grid from the first sample, so pushing in blocks of any length gives the
    same samples as one push of the whole. Each block of ``BLOCK_HOPS * hop`` samples comes
    out once the mixture, the stems and the pitches reach a margin past its end.
    """

    def __init__(
        self,
        weights: np.ndarray,
        sample_rate: int,
        n_fft: int = N_FFT,
        hop: int = HOP,
        block_hops: int = BLOCK_HOPS,
        margin_hops: int = MARGIN_HOPS,
        harmonics: int = HARMONICS,
        iterations: int = ITERATIONS,
        owners: np.ndarray | None = None,
    ) -> None:
        """``weights`` ``(K,)``: how much of each stem the templates make (0: the stem as
        given, only later); ``harmonics`` and ``iterations``: :func:`fit_templates`';
        ``owners``: :func:`template_stems`' (the pitches pushed then have a row per voice)."""
        if margin_hops % 2 or not 0 < margin_hops <= block_hops:
            raise ValueError("the margin must be an even number of hops, at most a block")
        self.weights = np.asarray(weights, np.float32)[:, None]  # (K, 1)
        self.sample_rate, self.n_fft, self.hop = int(sample_rate), n_fft, hop
        self.harmonics, self.iterations = harmonics, iterations
        self.block, self.margin = block_hops * hop, margin_hops * hop
        players = self.weights.shape[0]
        self.owners = np.arange(players) if owners is None else np.asarray(owners, np.int64)
        self._mixture = np.zeros(0, np.float32)  # from sample _mixture_from
        self._stems = np.zeros((players, 0), np.float32)  # from sample _stems_from
        self._pitches = np.zeros((self.owners.shape[0], 0))  # from frame _pitches_from
        self._mixture_from = self._stems_from = self._pitches_from = 0
        self._next = 0  # the next block to give out
        self._finished = False
        self._tail: np.ndarray | None = None  # the last fit's stems over the next cross-fade

    def push(self, stems: np.ndarray, mixture: np.ndarray, pitches: np.ndarray) -> np.ndarray:
        """Take ``stems`` ``(K, m)``, ``mixture`` ``(n,)`` and ``pitches`` ``(K, f)`` Hz that
        follow those pushed before; return the blended stems ``(K, m')`` now complete."""
        self._mixture = np.concatenate([self._mixture, mixture.astype(np.float32)])
        self._stems = np.concatenate([self._stems, stems.astype(np.float32)], axis=1)
        self._pitches = np.concatenate([self._pitches, pitches], axis=1)
        out = [np.zeros((self._stems.shape[0], 0), np.float32)]
        while True:
            end = (self._next + 1) * self.block + self.margin  # the fit's last sample + 1
            start = max(0, end - self.block - 2 * self.margin)
            frames = start // self.hop + frame_count(end - start, self.n_fft, self.hop)
            if (
                self._mixture_from + self._mixture.shape[0] < end
                or self._stems_from + self._stems.shape[1] < end
                or self._pitches_from + self._pitches.shape[1] < frames
            ):
                return np.concatenate(out, axis=1)
            out.append(self._block(start, end, last=False))

    def finish(self) -> np.ndarray:
        """The rest of the blended stems, to the last sample of the mixture (nothing more
        when called again)."""
        end = self._mixture_from + self._mixture.shape[0]
        if self._finished:
            return np.zeros((self._stems.shape[0], 0), np.float32)
        self._finished = True
        start = max(0, self._next * self.block - self.margin)
        if end <= start:
            return np.zeros((self._stems.shape[0], 0), np.float32)
        return self._block(start, end, last=True)

    def _block(self, start: int, end: int, last: bool) -> np.ndarray:
        """Fit block ``self._next`` on samples ``[start, end)`` and give out its part."""
        first_frame = start // self.hop
        frames = frame_count(end - start, self.n_fft, self.hop)
        at = first_frame - self._pitches_from
        pitches = self._pitches[:, at : at + frames]
        mixture = self._mixture[start - self._mixture_from : end - self._mixture_from]
        fitted = template_stems(
            mixture,
            pitches,
            self.sample_rate,
            self.n_fft,
            self.hop,
            self.harmonics,
            self.iterations,
            self.owners,
        )  # (K, end - start)
        # out: from the middle of this block's first cross-fade to that of its last
        boundary = self._next * self.block
        given_from = 0 if self._next == 0 else boundary - self.margin // 2
        given_to = end if last else boundary + self.block - self.margin // 2
        templates = fitted[:, given_from - start : given_to - start]
        if self._tail is not None:  # cross-fade from the last fit's stems, a margin long
            fade = min(self.margin, templates.shape[1])
            rise = (np.arange(fade, dtype=np.float32) + 0.5) / self.margin
            templates[:, :fade] = rise * templates[:, :fade] + (1 - rise) * self._tail[:, :fade]
        tail = given_to - start
        self._tail = None if last else fitted[:, tail : tail + self.margin].copy()
        stems = self._stems[:, given_from - self._stems_from : given_to - self._stems_from]
        blended = self.weights * templates + (1 - self.weights) * stems
        # keep what the next fit hears: from a margin before the next block
        keep = (self._next + 1) * self.block - self.margin
        self._mixture = self._mixture[max(0, keep - self._mixture_from) :]
        self._mixture_from = max(self._mixture_from, keep)
        self._stems = self._stems[:, given_to - self._stems_from :]
        self._stems_from = given_to
        drop = max(0, keep // self.hop - self._pitches_from)
        self._pitches = self._pitches[:, drop:]
        self._pitches_from += drop
        self._next += 1
        return blended.astype(np.float32)
