"""BSS Eval and SI-SDR, equal to the reference toolkits, computed in one pass.

Two flavours of BSS Eval share one set of distortion filters (least-squares projections of
each estimate on delayed copies of the references, ``filter_length`` taps, fitted on the
whole signal):

* :func:`bss_eval_sources` — mir_eval's ``bss_eval_sources`` (BSS Eval v3, whole signal,
  identity permutation): SDR is measured against the *filtered* reference, so a 512-tap
  distortion of the true source is not counted as error. This is what URMP papers report.
* :func:`bss_eval_v4` — museval's ``evaluate`` (BSS Eval v4, images version): filters fitted
  once on the whole track, scores per window (SiSEC: 1 s windows, 1 s hop). Its SDR is the
  plain signal-to-error ratio ``|s|^2 / |s - ŝ|^2``; ISR, SIR and SAR use the filters.

The arithmetic follows museval's ``bss_eval`` (same Gram matrix of delayed references, same
``eps`` on its diagonal, same projections of each window), but correlations and projections
run blockwise with real FFTs, the Gram matrix is factorised once per set of references
(:class:`ReferenceGram`, shared by every system scored against them), and the window
projections, overlap-added, also give the whole-signal values. Memory stays bounded by the
block size. Everything is float64 numpy/scipy; no torch linear algebra is involved.

Shapes: references and estimates are ``(K, N)`` (mono) or ``(K, N, C)`` (museval's
``(nsrc, nsampl, nchan)``); K sources, N samples, C channels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.linalg

#: Taps of the time-invariant distortion filters (BSS Eval's default).
FILTER_LENGTH = 512
_EPS = np.finfo(np.float64).eps
#: FFT size of the blockwise correlations and whole-signal projections.
_BLOCK_FFT = 1 << 16


@dataclass(frozen=True)
class BssEval:
    """Scores in dB, one row per source: ``(K,)`` whole-signal or ``(K, T)`` per window.

    ``isr`` is ``None`` for the sources version (v3 ``bss_eval_sources`` has no ISR).
    NaN marks an undefined value (a silent source or window).
    """

    sdr: np.ndarray
    sir: np.ndarray
    sar: np.ndarray
    isr: np.ndarray | None = None


def _as_kcn(signals: np.ndarray, name: str) -> np.ndarray:
    """``(K, N)`` or ``(K, N, C)`` -> float64 ``(K, C, N)``."""
    array = np.asarray(signals, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim == 2:
        return array[:, None, :]
    if array.ndim == 3:
        return np.ascontiguousarray(np.moveaxis(array, 2, 1))
    raise ValueError(f"{name} must be (K, N) or (K, N, C), got shape {array.shape}")


def _check_pair(references: np.ndarray, estimates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    refs, ests = _as_kcn(references, "references"), _as_kcn(estimates, "estimates")
    if refs.shape != ests.shape:
        raise ValueError(f"references {refs.shape} and estimates {ests.shape} differ in shape")
    if refs.shape[-1] == 0:
        raise ValueError("cannot score empty signals")
    return refs, ests


def _fft_size(length: int) -> int:
    """A fast real-FFT size of at least ``length`` (products of 2, 3, 5, 7, 11)."""
    return scipy.fft.next_fast_len(length, real=True)


def _rfft(x: np.ndarray, n: int) -> np.ndarray:
    return scipy.fft.rfft(x, n=n, axis=-1, workers=-1)


def _irfft(x: np.ndarray, n: int) -> np.ndarray:
    return scipy.fft.irfft(x, n=n, axis=-1, workers=-1)


def _lagged_correlations(x: np.ndarray, y: np.ndarray, lags: int) -> np.ndarray:
    """``r[p, q, m] = sum_n x[p, n + m - (lags - 1)] * y[q, n]`` for ``m < 2 lags - 1``.

    ``x`` ``(P, N)``, ``y`` ``(Q, N)`` -> ``(P, Q, 2 lags - 1)``; zero outside the signals.
    Computed block by block, so memory does not grow with N.
    """
    length = x.shape[-1]
    context = 2 * (lags - 1)
    n_fft = max(_BLOCK_FFT, _fft_size(2 * context))
    block = n_fft - context
    padded = np.pad(x, ((0, 0), (lags - 1, lags - 1)))
    # the correlation is linear in each block's cross-spectrum: sum spectra, invert once
    cross = np.zeros((x.shape[0], y.shape[0], n_fft // 2 + 1), dtype=np.complex128)
    for start in range(0, length, block):
        stop = min(start + block, length)
        x_spec = _rfft(padded[:, start : stop + context], n_fft)
        y_spec = _rfft(y[:, start:stop], n_fft)
        cross += x_spec[:, None, :] * np.conj(y_spec)[None, :, :]
    return _irfft(cross, n_fft)[..., : 2 * lags - 1]


class _Factor:
    """Cholesky factor of a Gram matrix; LU when rounding makes it not positive definite."""

    def __init__(self, gram: np.ndarray) -> None:
        try:
            self._cholesky = scipy.linalg.cho_factor(gram, check_finite=False)
            self._lu = None
        except np.linalg.LinAlgError:
            self._cholesky = None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
                self._lu = scipy.linalg.lu_factor(gram, check_finite=False)

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        if self._cholesky is not None:
            return scipy.linalg.cho_solve(self._cholesky, rhs, check_finite=False)
        return scipy.linalg.lu_solve(self._lu, rhs, check_finite=False)


class ReferenceGram:
    """The references' Gram matrix of delayed copies, factorised once.

    Every system scored against the same references (model, baselines) shares it: building
    and factorising it is most of the cost of BSS Eval. ``references`` is ``(K, N)`` or
    ``(K, N, C)``. ``G + eps I`` (museval's regularisation) is symmetric positive definite, so
    it is Cholesky-factorised: half the work of the LU in museval's ``np.linalg.solve``, the
    same filters up to rounding (LU is the fallback if rounding breaks definiteness).
    """

    def __init__(self, references: np.ndarray, filter_length: int = FILTER_LENGTH) -> None:
        refs = _as_kcn(references, "references")
        sources, channels, _ = refs.shape
        lags = filter_length
        self.shape = refs.shape
        self.filter_length = filter_length
        self._flat = refs.reshape(sources * channels, -1)
        # G[(i,ci,a),(j,cj,b)] = <ref_i,ci delayed a, ref_j,cj delayed b> = r[i, j, b - a + L - 1]
        ref_corr = _lagged_correlations(self._flat, self._flat, lags)
        shift = np.arange(lags)[None, :] - np.arange(lags)[:, None] + lags - 1
        size = sources * channels * lags
        gram = ref_corr[:, :, shift].transpose(0, 2, 1, 3).reshape(size, size)
        gram += _EPS * np.eye(size)
        block = channels * lags
        self._blocks = [slice(j * block, (j + 1) * block) for j in range(sources)]
        self._all = _Factor(gram)
        self._own = [_Factor(gram[b, b]) for b in self._blocks]

    def filters(self, estimates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Least-squares projection filters, museval's ``_compute_projection_filters``.

        ``estimates`` ``(K, C, N)`` -> ``(all_filters, own_filters)``:
        ``(K_est, K_ref, C_in, L, C_out)`` projecting each estimate on every reference's
        delayed copies, and ``(K, C_in, L, C_out)`` projecting estimate j on reference j's.
        """
        sources, channels, _ = self.shape
        lags = self.filter_length
        flat_ests = estimates.reshape(sources * channels, -1)
        # D[(i,ci,a),(k,c)] = <ref_i,ci delayed by a, est_k,c> = r[i, k, L - 1 - a]
        est_corr = _lagged_correlations(self._flat, flat_ests, lags)
        size = sources * channels * lags
        cross = est_corr[:, :, lags - 1 - np.arange(lags)].transpose(0, 2, 1).reshape(size, -1)
        solved = self._all.solve(cross)
        all_filters = solved.reshape(sources, channels, lags, sources, channels)
        all_filters = all_filters.transpose(3, 0, 1, 2, 4)
        own = np.empty((sources, channels, lags, channels))
        for j, rows in enumerate(self._blocks):
            cols = slice(j * channels, (j + 1) * channels)
            solved_own = self._own[j].solve(cross[rows, cols])
            own[j] = solved_own.reshape(channels, lags, channels)
        return all_filters, own


def _filters(
    refs: np.ndarray, ests: np.ndarray, filter_length: int, gram: ReferenceGram | None
) -> tuple[np.ndarray, np.ndarray]:
    if gram is None:
        gram = ReferenceGram(np.moveaxis(refs, 1, 2), filter_length)
    elif gram.shape != refs.shape or gram.filter_length != filter_length:
        raise ValueError("the ReferenceGram was built for other references or filter length")
    return gram.filters(ests)


def _whole_block(filter_length: int) -> int:
    """Block length of the whole-signal projections: block + taps - 1 fills one FFT."""
    return max(_BLOCK_FFT, _fft_size(4 * filter_length)) - filter_length + 1


class _Projector:
    """Convolve reference blocks with the distortion filters in the frequency domain."""

    def __init__(self, all_filters: np.ndarray, own_filters: np.ndarray, frame: int) -> None:
        self.filter_length = own_filters.shape[2]
        self.n_fft = _fft_size(frame + self.filter_length - 1)
        # (K_est, K_ref, C_in, C_out, F) and (K, C_in, C_out, F)
        self.all_spec = _rfft(np.moveaxis(all_filters, 3, -1), self.n_fft)
        self.own_spec = _rfft(np.moveaxis(own_filters, 2, -1), self.n_fft)

    def __call__(self, frames: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        """``frames`` ``(K, C, B, W)`` -> full and own projections ``(K, C, B, length)``."""
        spec = _rfft(frames, self.n_fft)
        full = np.einsum("icbf,jicof->jobf", spec, self.all_spec)
        own = np.einsum("jcbf,jcof->jobf", spec, self.own_spec)
        return (
            _irfft(full, self.n_fft)[..., :length],
            _irfft(own, self.n_fft)[..., :length],
        )


#: Order of the energy sums returned by :func:`_energy_sums`.
_REF, _REF_ERR, _SPAT, _OWN, _INTERF, _FULL, _ARTIF, _OWN_ERR = range(8)


def _energy(x: np.ndarray) -> np.ndarray:
    """``(K, C, B, M)`` -> ``(K, B)``: sum of squares over channels and time."""
    return np.einsum("kcbm,kcbm->kb", x, x)


def _energy_sums(ref: np.ndarray, est: np.ndarray, own: np.ndarray, full: np.ndarray) -> np.ndarray:
    """Energies of BSS Eval's components, summed over channels and time.

    ``ref`` and ``est`` are ``(K, C, B, W)`` segments of the references and estimates;
    ``own`` and ``full`` the projections ``(K, C, B, M)`` with ``M >= W``, whose last
    ``M - W`` samples (the filters' tails) lie where ``ref`` and ``est`` are zero.
    Returns ``(8, K, B)`` in the order ``_REF, _REF_ERR, ...``.
    """
    width = ref.shape[-1]
    own_head, own_tail = own[..., :width], own[..., width:]
    full_head, full_tail = full[..., :width], full[..., width:]
    own_tail_energy = _energy(own_tail)
    full_tail_energy = _energy(full_tail)
    interference_tail = _energy(full_tail - own_tail)
    return np.stack(
        [
            _energy(ref),
            _energy(est - ref),
            _energy(own_head - ref) + own_tail_energy,
            _energy(own_head) + own_tail_energy,
            _energy(full_head - own_head) + interference_tail,
            _energy(full_head) + full_tail_energy,
            _energy(est - full_head) + full_tail_energy,
            _energy(est - own_head) + own_tail_energy,
        ]
    )


def _ratio_db(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``10 log10(num / den)``; ``+inf`` where ``den`` is 0 (museval's ``_safe_db``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator == 0, np.inf, 10 * np.log10(numerator / denominator))


def _images_scores(energy: np.ndarray) -> BssEval:
    """museval v4 images criteria from energy sums ``(8, K, ...)``."""
    return BssEval(
        sdr=_ratio_db(energy[_REF], energy[_REF_ERR]),
        isr=_ratio_db(energy[_REF], energy[_SPAT]),
        sir=_ratio_db(energy[_OWN], energy[_INTERF]),
        sar=_ratio_db(energy[_FULL], energy[_ARTIF]),
    )


def _sources_scores(energy: np.ndarray) -> BssEval:
    """BSS Eval v3 ``bss_eval_sources`` criteria from energy sums ``(8, K, ...)``."""
    return BssEval(
        sdr=_ratio_db(energy[_OWN], energy[_OWN_ERR]),
        sir=_ratio_db(energy[_OWN], energy[_INTERF]),
        sar=_ratio_db(energy[_FULL], energy[_ARTIF]),
    )


class _WholeSignal:
    """Whole-signal energy sums, fed consecutive blocks of projections (overlap-add).

    Each block's projections extend ``L - 1`` samples past its end; that tail is carried
    into the next block, so the sums equal those of one convolution over the whole signal.
    """

    def __init__(self, sources: int, channels: int, filter_length: int) -> None:
        self.tail = filter_length - 1
        self.total = np.zeros((8, sources))
        self.carry_full = np.zeros((sources, channels, 1, self.tail))
        self.carry_own = np.zeros_like(self.carry_full)

    def add(self, ref: np.ndarray, est: np.ndarray, own: np.ndarray, full: np.ndarray) -> None:
        """Consecutive blocks ``(K, C, B, W)`` and their projections ``(K, C, B, W + L - 1)``."""
        width = ref.shape[-1]
        own, full = own.copy(), full.copy()
        for b in range(ref.shape[2]):  # each block's head receives the previous block's tail
            own[:, :, b, : self.tail] += self.carry_own[:, :, 0]
            full[:, :, b, : self.tail] += self.carry_full[:, :, 0]
            self.carry_own = own[:, :, b : b + 1, width:]
            self.carry_full = full[:, :, b : b + 1, width:]
        energy = _energy_sums(ref, est, own[..., :width], full[..., :width])
        self.total += energy.sum(axis=-1)

    def finish(self) -> np.ndarray:
        """The sums ``(8, K)``, with the last block's tail."""
        sources, channels = self.carry_own.shape[:2]
        nothing = np.zeros((sources, channels, 1, 0))
        return self.total + _energy_sums(nothing, nothing, self.carry_own, self.carry_full)[..., 0]


def _whole_signal_energies(
    refs: np.ndarray,
    ests: np.ndarray,
    projector: _Projector,
    start: int = 0,
    whole: _WholeSignal | None = None,
) -> np.ndarray:
    """Energy sums ``(8, K)`` over the whole signal, from sample ``start`` on into ``whole``."""
    sources, channels, length = refs.shape
    if whole is None:
        whole = _WholeSignal(sources, channels, projector.filter_length)
    block_length = projector.n_fft - whole.tail
    for first in range(start, length, block_length):
        stop = min(first + block_length, length)
        block = refs[:, :, None, first:stop]
        full, own = projector(block, stop - first + whole.tail)
        whole.add(block, ests[:, :, None, first:stop], own, full)
    return whole.finish()


def _windows(length: int, window: int, hop: int) -> tuple[int, int]:
    """museval's ``Framing``: (window length, number of windows); short tracks give one."""
    if window >= length:
        return length, 1
    return window, int(np.floor((length - window + hop) / hop))


def _framewise_energies(
    refs: np.ndarray,
    ests: np.ndarray,
    projector: _Projector,
    window: int,
    hop: int,
    count: int,
    whole: _WholeSignal | None = None,
) -> np.ndarray:
    """Energy sums per window ``(8, K, T)``; each window projected on its own, as museval does.

    With ``whole`` (and ``hop == window``) the same projections, overlap-added, also feed the
    whole-signal sums of the windows' span.
    """
    filter_length = projector.filter_length
    sources, channels, _ = refs.shape
    length = window + filter_length - 1
    per_batch = max(1, (1 << 22) // (sources * channels * projector.n_fft))
    starts = np.arange(count) * hop
    chunks = []
    for first in range(0, count, per_batch):
        batch = starts[first : first + per_batch]
        index = batch[:, None] + np.arange(window)[None, :]  # (B, W)
        ref_frames, est_frames = refs[:, :, index], ests[:, :, index]  # (K, C, B, W)
        full, own = projector(ref_frames, length)
        chunks.append(_energy_sums(ref_frames, est_frames, own, full))
        if whole is not None:
            whole.add(ref_frames, est_frames, own, full)
        silent = _any_silent(ref_frames) | _any_silent(est_frames)
        chunks[-1][:, :, silent] = np.nan
    return np.concatenate(chunks, axis=-1)


def _any_silent(frames: np.ndarray) -> np.ndarray:
    """``(K, C, B, W)`` -> ``(B,)``: some source is all zeros in that window (museval's rule)."""
    return np.any(np.all(frames == 0, axis=(1, 3)), axis=0)


def _silent_sources(signals: np.ndarray) -> np.ndarray:
    """``(K, C, N)`` -> ``(K,)``: the source is all zeros."""
    return ~np.any(signals != 0, axis=(1, 2))


def bss_eval_sources(
    references: np.ndarray,
    estimates: np.ndarray,
    filter_length: int = FILTER_LENGTH,
    gram: ReferenceGram | None = None,
) -> BssEval:
    """mir_eval's ``bss_eval_sources`` without permutation search: SDR, SIR, SAR ``(K,)``.

    A source whose reference or estimate is all zeros scores NaN (mir_eval refuses such input).
    ``gram``: a :class:`ReferenceGram` of these references, to skip refactorising it.
    """
    refs, ests = _check_pair(references, estimates)
    all_filters, own_filters = _filters(refs, ests, filter_length, gram)
    projector = _Projector(all_filters, own_filters, _whole_block(filter_length))
    scores = _sources_scores(_whole_signal_energies(refs, ests, projector))
    return _blank(scores, _silent_sources(refs) | _silent_sources(ests))


def bss_eval_v4(
    references: np.ndarray,
    estimates: np.ndarray,
    window: int,
    hop: int | None = None,
    filter_length: int = FILTER_LENGTH,
    gram: ReferenceGram | None = None,
) -> BssEval:
    """museval's ``evaluate(..., mode="v4")``: SDR, ISR, SIR, SAR per window ``(K, T)``.

    Windows of ``window`` samples every ``hop`` (default: ``window``); a trailing partial
    window is dropped, as museval does. Windows where any reference or estimate is all zeros
    are NaN for every source. ``gram``: as for :func:`bss_eval_sources`.
    """
    hop = window if hop is None else hop
    refs, ests = _check_pair(references, estimates)
    frame, count = _windows(refs.shape[-1], window, hop)
    all_filters, own_filters = _filters(refs, ests, filter_length, gram)
    projector = _Projector(all_filters, own_filters, frame)
    return _images_scores(_framewise_energies(refs, ests, projector, frame, hop, count))


def bss_eval(
    references: np.ndarray,
    estimates: np.ndarray,
    window: int,
    filter_length: int = FILTER_LENGTH,
    gram: ReferenceGram | None = None,
) -> tuple[BssEval, BssEval]:
    """Both flavours from one filter fit: (v3 sources whole-signal ``(K,)``, v4 ``(K, T)``).

    Same values as :func:`bss_eval_sources` and :func:`bss_eval_v4` with ``hop = window``;
    ``gram``: as for :func:`bss_eval_sources`.
    """
    refs, ests = _check_pair(references, estimates)
    frame, count = _windows(refs.shape[-1], window, window)
    all_filters, own_filters = _filters(refs, ests, filter_length, gram)
    projector = _Projector(all_filters, own_filters, frame)
    # the windows tile the signal: their projections, overlap-added, give the whole signal's
    accumulator = _WholeSignal(refs.shape[0], refs.shape[1], filter_length)
    framewise = _images_scores(
        _framewise_energies(refs, ests, projector, frame, frame, count, accumulator)
    )
    whole_energy = _whole_signal_energies(refs, ests, projector, count * frame, accumulator)
    whole = _blank(_sources_scores(whole_energy), _silent_sources(refs) | _silent_sources(ests))
    return whole, framewise


def _blank(scores: BssEval, undefined: np.ndarray) -> BssEval:
    """Set the rows of ``undefined`` sources to NaN."""

    def blank(values: np.ndarray) -> np.ndarray:
        values = values.copy()
        values[undefined] = np.nan
        return values

    return BssEval(
        sdr=blank(scores.sdr),
        sir=blank(scores.sir),
        sar=blank(scores.sar),
        isr=None if scores.isr is None else blank(scores.isr),
    )


def si_sdr(references: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    """Scale-invariant SDR (Le Roux et al. 2019), no mean removal: ``(K, N)`` -> ``(K,)`` dB.

    ``10 log10(|a s|^2 / |a s - ŝ|^2)`` with ``a = <ŝ, s> / |s|^2``. NaN where the reference
    or the estimate is all zeros.
    """
    refs, ests = _check_pair(references, estimates)
    refs, ests = refs.reshape(refs.shape[0], -1), ests.reshape(ests.shape[0], -1)
    ref_energy = np.einsum("kn,kn->k", refs, refs)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.einsum("kn,kn->k", ests, refs) / ref_energy
        target = scale[:, None] * refs
        error = target - ests
        values = _ratio_db(
            np.einsum("kn,kn->k", target, target), np.einsum("kn,kn->k", error, error)
        )
    undefined = (ref_energy == 0) | ~np.any(ests != 0, axis=1)
    return np.where(undefined, np.nan, values)
