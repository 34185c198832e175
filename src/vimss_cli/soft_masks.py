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
time, so each stem's energy lies on the harmonics of one pitch. Per frame, each stem gets a
pitch in its instrument's range, and a bin near one of its harmonics (:func:`harmonic_comb`,
``c_k`` in [0, 1]) weighs more: the shares become ``|S_k| ** HARMONIC_POWER *
(OFF_HARMONIC + c_k * q_k)``, the rest's ``|R| ** HARMONIC_POWER * OFF_HARMONIC``, where
``q_k`` is how sure the note classifier is that the stem's instrument plays that pitch (to
the power :data:`COMB_CONFIDENCE_POWER`; 1 for a stem it is not asked about). A bin near no
stem's harmonic keeps a soft-mask split; one near a single stem's harmonic goes mostly to that
stem. Silent stems (:class:`LoudnessGate`) have no pitch. Which pitch:

* each stem's own strongest (harmonic summation, :class:`PitchGrid`) on the soft-masked stem;
* then, among the stems of instruments heard once (**joint pitches**), the pitches heard in
  the mixture (:func:`several_pitches`, one more than the stems that sound) and those own
  pitches are shared out, one per stem, so that the stems' relative saliences add up most
  (:meth:`SoftMaskFilter._joint_pitches`), each stem's share weighed together with what
  a small classifier hears in the note (:mod:`vimss_cli.note_classifier`: which of the
  ensemble's instruments plays it), adapted to the recording by a first pass over the
  whole mixture (:func:`timbre_listener`, :mod:`vimss_cli.recording_timbre`: what each
  instrument sounds like in it). Where a stem's strongest pitch is another
  player's louder note, it then takes a note of its own. Stems that hold two players' notes
  (two label queries of one instrument, a pitch-split pair) keep their own strongest.

The gain depends on how often a stem's pitch is its own player's: measured in
docs/training.md ("Harmonic masks" and "Joint pitches").

Streaming and exact: frames of :data:`N_FFT` samples every :data:`HOP` samples lie on one
grid from the first sample (:class:`~vimss_cli.stft_stream.StreamingSTFT`), so pushing the
stems in blocks of any size gives the samples one push of the whole would (tested).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from vimss_cli.note_classifier import NoteClassifier, load_note_classifier
from vimss_cli.pitch_voices import (
    DEFAULT_RANGE_HZ,
    HARMONICS,
    PITCH_RANGE_HZ,
    LoudnessGate,
    PitchGrid,
    harmonic_comb,
    several_pitches,
    two_pitches,
)
from vimss_cli.recording_timbre import PROTOTYPE_WEIGHT, RecordingListener
from vimss_cli.stft_stream import StreamingSTFT

if TYPE_CHECKING:
    from vimss_cli.template_masks import TemplateBlend

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
#: them (docs/training.md, "Harmonic masks"; 0.1 until the fourth session of 2026-12-04,
#: "Sharper harmonic masks", then 0.05 until "A comb as sure as its note").
OFF_HARMONIC = 0.03
#: With harmonic masks, the power of the magnitudes in their shares (``POWER`` is the plain
#: soft masks', also where the stems' pitches are found): softer, the network's stems weigh
#: less beside the pitches' harmonics (docs/training.md, "Sharper harmonic masks").
HARMONIC_POWER = 1.25
#: With joint pitches, a stem's own strongest pitch scores this share of its salience, a
#: pitch heard in the mixture all of it (docs/training.md, "Harmonic masks").
OWN_PITCH_WEIGHT = 0.7
#: With joint pitches, how much the note classifier's posterior that a stem's instrument plays
#: a candidate pitch (:mod:`vimss_cli.note_classifier`, in [0, 1]) adds to that stem's score
#: of it (docs/training.md, "The note classifier"); 0: none, the classifier is not loaded.
TIMBRE_WEIGHT = 0.5
#: With joint pitches and a note classifier, each stem's comb is weighed by the classifier's
#: posterior that the stem's instrument plays the pitch it took, to this power (0.5: its
#: square root): a sure note claims its harmonics, a doubtful one less (docs/training.md, "A
#: comb as sure as its note").
COMB_CONFIDENCE_POWER = 0.5
#: How much of each heard-once stem (and pair's stem, :data:`TEMPLATE_PAIRS`) comes from
#: harmonic templates learnt on the recording from the pitches the masks used
#: (:mod:`vimss_cli.template_masks`; the rest is the harmonic masks' stem); 0: none
#: (docs/training.md, "Harmonic templates learnt on the recording").
TEMPLATE_BLEND = 0.3
#: Whether a stem of two players' notes (a pitch-split pair's) takes part in the templates too,
#: as two voices: its strongest pitch and the second its own spectrum holds.
TEMPLATE_PAIRS = True
#: With joint pitches, subtracted from every heard-once stem's score of a candidate pitch that
#: a pitch-split pair's stem holds (its strongest or second): a note one of the pair plays.
PAIR_PENALTY = 0.3
#: Whether a stem heard once, alone beside a pitch-split pair, also chooses its pitch among
#: the mixture's (with the pair's penalised), not just its own strongest.
PAIR_ALONE = True
#: What the harmonic masks do, as a number: raised whenever they change, so that ``vimss eval``
#: scores them again instead of reading older scores from its cache.
HARMONIC_MASKS_VERSION = 11
#: Added to a bin's total share, so that a silent bin divides nothing by zero (float32).
_EPS = np.float32(1e-30)


def _power(magnitudes: np.ndarray, power: float) -> np.ndarray:
    """``magnitudes ** power``; 1.5 as ``m * sqrt(m)`` and 1.25 as ``m * sqrt(sqrt(m))``,
    three times as fast."""
    if power == 1.5:
        return magnitudes * np.sqrt(magnitudes)
    if power == 1.25:
        return magnitudes * np.sqrt(np.sqrt(magnitudes))
    return magnitudes if power == 1 else magnitudes**power


class SoftMaskFilter:
    """Refine ``players`` stems on their mixture, block by block.

    Call :meth:`push` with each block of stems and the mixture samples they came from, then
    :meth:`finish`; the refined stems come out in order, whole hops at a time, at least
    :data:`N_FFT` - :data:`HOP` samples (and less than :data:`N_FFT`) behind what went in,
    all of them by the end (:class:`~vimss_cli.stft_stream.StreamingSTFT`). With harmonic
    templates (``templates``), a block at a time, up to about 32 s behind.
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
        harmonic_power: float = HARMONIC_POWER,
        joint_pitches: bool = True,
        own_pitch_weight: float = OWN_PITCH_WEIGHT,
        voices: Sequence[int] | None = None,
        timbre_weight: float = TIMBRE_WEIGHT,
        note_classifier: NoteClassifier | None = None,
        prototypes: Mapping[str, np.ndarray] | None = None,
        log_pitches: bool = False,
        templates: float = TEMPLATE_BLEND,
    ) -> None:
        """``rest_share``: what no stem claims keeps its share of each bin; without it the
        stems add up to the mixture (the settings are compared in docs/training.md).
        ``instruments``: each stem's URMP code, for harmonic masks at ``sample_rate``;
        ``None`` for a stem that keeps a soft share (an unknown instrument, or a stem
        that may hold more than one player's notes); without them, plain soft masks.
        ``off_harmonic``: with harmonic masks, a bin's weight away from the harmonics;
        ``harmonic_power``: the power of the magnitudes in their shares.
        ``joint_pitches``: the stems of instruments heard once share out the pitches heard in
        the mixture (:meth:`_joint_pitches`); else each takes its own strongest.
        ``own_pitch_weight``: how much a stem's own strongest pitch weighs there.
        ``voices``: how many players' notes each stem holds (a pitch-split pair's one stem:
        2; by default 1 each). A stem of more keeps its own strongest pitch, and the mixture
        is searched for that many pitches when it sounds.
        ``timbre_weight``: with joint pitches, how much the note classifier's word on which
        instrument plays a candidate pitch weighs; ``note_classifier``: the classifier
        (default: the bundled one, read when first needed). ``prototypes``: what each of
        those instruments sounds like in this recording (:func:`timbre_listener`'s first
        pass over the whole mixture); ``None``: the classifier as trained.
        ``log_pitches``: keep the pitch each stem's harmonic mask used in every frame
        (:meth:`logged_pitches`; for :mod:`vimss_cli.template_masks`' benchmark).
        ``templates``: with joint pitches, how much of each heard-once stem the harmonic
        templates make (:class:`~vimss_cli.template_masks.TemplateBlend`); the stems then come
        out up to a block (about 30 s) behind, in the same samples whatever the pushes."""
        if not 0.0 <= templates <= 1.0:
            raise ValueError(f"templates must lie in [0, 1], got {templates}")
        self._pitch_log: list[np.ndarray] | None = [] if log_pitches else None
        self._blend: TemplateBlend | None = None
        self._blend_pitches: list[np.ndarray] = []  # logged since the blend last took them
        self.players, self.power, self.rest_share = players, power, rest_share
        self.off_harmonic = np.float32(off_harmonic)
        self.harmonic_power = float(harmonic_power)
        self.own_pitch_weight = float(own_pitch_weight)
        # channel 0 is the mixture, channels 1..K the stems
        self._stft = StreamingSTFT(players + 1, players, n_fft, hop, self._masked)
        self._grids: list[PitchGrid | None] = []
        if instruments is not None:
            self._voices = _voice_counts(players, instruments, sample_rate, voices)
            assert sample_rate is not None  # (checked there)
            self.sample_rate = int(sample_rate)
            self._grids = [
                None if code is None else PitchGrid(code, self.sample_rate, n_fft)
                for code in instruments
            ]
            if not any(self._grids):  # no instrument known: plain soft masks
                self._grids = []
            # no floor in dBFS: a quiet recording gets the pitches a loud one does
            self._gates = [LoudnessGate(self._stft.window, None) for _ in instruments]
            self._joint = _joint_stems(instruments, self._voices, joint_pitches)
            self._mixture_grid = None
            self.timbre_weight = float(timbre_weight)
            # the instruments the note classifier chooses among: every joint stem's, sounding
            # or not (so a frame's posteriors depend on that frame alone), and each joint
            # stem's column among them
            self._joint_codes = [str(c) for c, j in zip(instruments, self._joint, strict=True) if j]
            self._joint_column = {int(k): n for n, k in enumerate(np.flatnonzero(self._joint))}
            self._note_classifier = _classifier_for(
                self._joint_codes, self.timbre_weight, note_classifier
            )
            if self._note_classifier is not None and prototypes:
                self._note_classifier = self._note_classifier.adapted(prototypes, PROTOTYPE_WEIGHT)
            # the stems of two players' notes (a pitch-split pair's), whose second voice is
            # found too
            self._paired = [
                bool(self._grids and code is not None and count == 2)
                for code, count in zip(instruments, self._voices, strict=True)
            ]
            # a joint choice among two heard-once stems or more; or for one beside a pair,
            # whose notes it should leave to the pair (PAIR_PENALTY)
            lone = PAIR_ALONE and PAIR_PENALTY > 0 and any(self._paired)
            if sum(self._joint) >= 2 or (lone and sum(self._joint) == 1):
                known = [code for code in instruments if code is not None]
                ranges = [PITCH_RANGE_HZ.get(code, DEFAULT_RANGE_HZ) for code in known]
                low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
                self._mixture_grid = PitchGrid(None, self.sample_rate, n_fft, (low, high))
            # the pairs the templates model as two voices
            self._pairs_modelled = TEMPLATE_PAIRS
            modelled = np.array(self._paired, bool) & TEMPLATE_PAIRS
            blended = np.array(self._joint, bool) | modelled
            heard_voices = sum(self._joint) + 2 * int(modelled.sum())
            if templates > 0 and blended.any() and heard_voices >= 2:
                from vimss_cli.template_masks import TemplateBlend  # (it imports this)

                owners = np.r_[np.arange(players), np.flatnonzero(modelled)]
                weights = templates * blended.astype(np.float32)
                self._blend = TemplateBlend(weights, self.sample_rate, n_fft, hop, owners=owners)

    def push(self, stems: np.ndarray, mixture: np.ndarray) -> np.ndarray:
        """Take the next block: ``stems`` ``(K, n)`` and ``mixture`` ``(n,)``; return the
        refined stems ``(K, m)`` float32 of the samples now complete (``m`` may be 0)."""
        if stems.shape != (self.players, mixture.shape[0]):
            raise ValueError(
                f"expected stems ({self.players}, {mixture.shape[0]}), got {stems.shape}"
            )
        block = np.empty((self.players + 1, mixture.shape[0]), np.float32)
        block[0], block[1:] = mixture, stems
        refined = self._stft.push(block)
        if self._blend is None:
            return refined
        return self._blend.push(refined, block[0], self._take_blend_pitches())

    def finish(self) -> np.ndarray:
        """The rest of the refined stems ``(K, m)`` float32, to the last sample pushed."""
        refined = self._stft.finish()
        if self._blend is None:
            return refined
        empty = np.zeros(0, np.float32)
        head = self._blend.push(refined, empty, self._take_blend_pitches())
        return np.concatenate([head, self._blend.finish()], axis=1)

    def _take_blend_pitches(self) -> np.ndarray:
        """The pitches ``(C, f)`` logged for the template blend since it last took them: each
        stem's, then each pair's second voice's."""
        taken = self._blend_pitches
        self._blend_pitches = []
        if not taken:
            assert self._blend is not None
            return np.zeros((self._blend.owners.shape[0], 0))
        return taken[0] if len(taken) == 1 else np.concatenate(taken, axis=1)

    def logged_pitches(self) -> np.ndarray:
        """``(K, T)`` Hz: the pitch each stem's harmonic mask used in each frame so far
        (``nan``: none; frame ``t`` on the grid of :mod:`vimss_cli.stft_stream`). Needs
        ``log_pitches`` and harmonic masks."""
        if self._pitch_log is None or not self._grids:
            raise ValueError("pitches are logged only with log_pitches and harmonic masks")
        if not self._pitch_log:
            return np.zeros((self.players, 0))
        return np.concatenate(self._pitch_log, axis=1)

    def _masked(self, spectra: np.ndarray) -> np.ndarray:
        """``(T, 1 + K, bins)`` spectra of the mixture and the stems -> ``(T, K, bins)``: the
        mixture's spectrum shared among the stems."""
        mixture, stems = spectra[:, :1], spectra[:, 1:]
        levels = np.abs(stems)
        shares = _power(levels, self.power)
        rest = rest_level = None
        if self.rest_share:  # what no stem holds
            rest_level = np.abs(mixture - stems.sum(axis=1, keepdims=True))
            rest = _power(rest_level, self.power)
        masks = _masks(shares, rest)
        if self._grids:
            magnitude = np.abs(mixture)  # (T, 1, bins)
            masks = self._harmonic_masks(
                magnitude[:, 0],
                magnitude * masks,
                _power(levels, self.harmonic_power),
                None if rest_level is None else _power(rest_level, self.harmonic_power),
            )
        return masks * mixture

    def _harmonic_masks(
        self,
        mixture: np.ndarray,
        soft: np.ndarray,
        shares: np.ndarray,
        rest: np.ndarray | None,
    ) -> np.ndarray:
        """Harmonic masks from the mixture's ``(T, bins)`` magnitudes, the ``(T, K, bins)``
        soft-masked stems' magnitudes (where each stem's pitch is found), their shares and
        the rest's ``(T, 1, bins)`` (or ``None``) -> ``(T, K, bins)`` masks."""
        frames = soft.shape[0]
        pitches = np.full((self.players, frames), np.nan)  # Hz; nan: none
        saliences: dict[int, np.ndarray] = {}  # stem -> (candidates, T), 0 where silent
        for k, (grid, gate) in enumerate(zip(self._grids, self._gates, strict=True)):
            if grid is None:
                continue
            loud = gate.loud(soft[:, k])
            if loud.any():
                salience = np.zeros((grid.candidates, frames))
                salience[:, loud] = grid.saliences(soft[loud, k].T)
                pitches[k, loud] = grid.hz[np.argmax(salience[:, loud], axis=0)]
                saliences[k] = salience
        # how sure the note classifier is that each stem's pitch is its instrument's (1 where
        # it is not asked)
        confidence = np.ones((self.players, frames), np.float32)
        # each pitch-split pair's second voice, (P, T) Hz (its own strongest is its first), for
        # the joint choice and the templates
        seconds = np.zeros((0, frames))
        modelled = self._blend is not None and self._pairs_modelled
        if any(self._paired) and (self._mixture_grid is not None or modelled):
            seconds = np.array(
                [
                    two_pitches(soft[:, k].T, grid, ~np.isnan(pitches[k]))[:, 1]
                    for k, grid in enumerate(self._grids)
                    if self._paired[k] and grid is not None
                ]
            )
        if self._mixture_grid is not None:
            paired = np.concatenate([pitches[np.flatnonzero(self._paired)], seconds])
            self._joint_pitches(mixture, pitches, saliences, confidence, paired.T)
        if self._pitch_log is not None:
            self._pitch_log.append(pitches.copy())
        if self._blend is not None:  # each stem's pitch, then each modelled pair's second
            self._blend_pitches.append(
                np.concatenate([pitches, seconds if modelled else seconds[:0]])
            )
        weights = shares * self.off_harmonic  # a stem without a pitch: a soft share
        for k in saliences:
            comb = harmonic_comb(pitches[k], self.sample_rate, self._stft.n_fft, HARMONICS)
            sure = confidence[k] ** np.float32(COMB_CONFIDENCE_POWER)  # (T,)
            weights[:, k] += shares[:, k] * comb * sure[:, None]  # (T, bins)
        return _masks(weights, None if rest is None else self.off_harmonic * rest)

    def _joint_pitches(
        self,
        mixture: np.ndarray,
        pitches: np.ndarray,
        saliences: dict[int, np.ndarray],
        confidence: np.ndarray,
        paired: np.ndarray | None = None,
    ) -> None:
        """Share out, frame by frame, the pitches heard in the mixture (``(T, bins)``
        magnitudes; one more than the stems that sound, :func:`several_pitches`) and the
        stems' own strongest (``pitches``, ``(K, T)`` Hz, changed in place) among the
        sounding stems of the instruments heard once, one pitch each, so that the sum of
        their saliences is largest (Hungarian assignment). A stem's salience of a pitch is
        relative to its strongest, and ``own_pitch_weight`` of it for its own pitches:
        a stem whose strongest pitch is another player's louder note then takes a pitch of
        its own from the mixture. With a note classifier, ``timbre_weight`` times its
        posterior that the stem's instrument plays the candidate (among the joint stems'
        instruments) is added: what the note sounds like, besides how loud the stem is in
        it; and that posterior of the pitch each stem takes goes into ``confidence``
        (``(K, T)``, changed in place where the classifier is asked)."""
        from scipy.optimize import linear_sum_assignment  # 0.1 s to import: only when used

        assert self._mixture_grid is not None
        joint = np.array([k for k in saliences if self._joint[k]], dtype=np.int64)
        if joint.size == 0:
            return
        frames = pitches.shape[1]
        sounding = ~np.isnan(pitches) * self._voices[:, None]  # (K, T) players heard
        counts = sounding.sum(axis=0).astype(np.int64) + 1  # (T,)
        heard = several_pitches(mixture.T, self._mixture_grid, counts)  # (T, n) Hz
        own = pitches[joint].T  # (T, J) Hz, nan where the stem is silent
        candidates = np.concatenate([heard, own], axis=1)  # (T, C) Hz, nan: none
        candidate_weight = np.r_[
            np.ones(heard.shape[1]), np.full(len(joint), self.own_pitch_weight)
        ]
        known = ~np.isnan(candidates)
        at = np.arange(frames)[:, None]
        score = np.zeros((len(joint), frames, candidates.shape[1]))  # (J, T, C)
        classifier = self._note_classifier
        if classifier is not None:  # which of the joint stems' instruments plays each
            features = classifier.note_features(
                mixture, candidates, self.sample_rate, self._stft.n_fft
            )
            posterior = classifier.posteriors(features, self._joint_codes)  # (T, C, all joint)
        for row, k in enumerate(joint):
            grid, salience = self._grids[k], saliences[k]  # salience (P, T)
            assert grid is not None
            steps = grid.step(np.where(known, candidates, grid.hz[0]))
            inside = known & (steps >= 0) & (steps < grid.candidates)
            values = salience[np.clip(steps, 0, grid.candidates - 1), at]  # (T, C)
            strongest = np.maximum(salience.max(axis=0), 1e-30)[:, None]  # (T, 1)
            score[row] = np.where(inside, values / strongest, 0.0) * candidate_weight
            if classifier is not None:
                chosen = posterior[..., self._joint_column[int(k)]]  # (T, C)
                score[row] += self.timbre_weight * np.where(inside, chosen, 0.0)
        if PAIR_PENALTY > 0 and paired is not None and paired.shape[1]:
            # the candidates a pitch-split pair's voices hold: less likely anyone else's
            ratio = candidates[:, :, None] / np.where(np.isnan(paired), np.inf, paired)[:, None]
            with np.errstate(divide="ignore", invalid="ignore"):
                near = np.abs(12 * np.log2(ratio)) < 0.5  # (T, C, P)
            score -= PAIR_PENALTY * near.any(axis=2)[None]
        column_of = np.array([self._joint_column[int(k)] for k in joint])  # in the posterior
        for t in range(frames):
            active = np.flatnonzero(~np.isnan(own[t]))
            if active.size == 0:
                continue
            usable = np.flatnonzero(known[t])
            rows, columns = linear_sum_assignment(score[active, t][:, usable], maximize=True)
            pitches[joint[active[rows]], t] = candidates[t, usable[columns]]
            if classifier is not None:
                taken = active[rows]
                confidence[joint[taken], t] = posterior[t, usable[columns], column_of[taken]]


def _masks(shares: np.ndarray, rest: np.ndarray | None) -> np.ndarray:
    """``(T, K, bins)`` each stem's share of each bin, ``(T, 1, bins)`` the rest's (or
    ``None``) -> each stem's part of the bin, ``(T, K, bins)``."""
    total = shares.sum(axis=1, keepdims=True) + _EPS
    if rest is not None:
        total += rest
    return shares / total


def _voice_counts(
    players: int,
    instruments: Sequence[str | None],
    sample_rate: int | None,
    voices: Sequence[int] | None,
) -> np.ndarray:
    """How many players' notes each stem holds, ``(players,)`` (one each by default), once
    the harmonic masks' settings are checked: one instrument and one voice count per stem,
    and a sample rate."""
    if len(instruments) != players or sample_rate is None:
        raise ValueError("harmonic masks need one instrument per stem and a sample rate")
    counts = np.ones(players) if voices is None else np.asarray(voices, float)
    if counts.shape != (players,):
        raise ValueError("harmonic masks need one voice count per stem")
    return counts


def _joint_stems(
    instruments: Sequence[str | None], voices: np.ndarray, joint_pitches: bool
) -> list[bool]:
    """Which stems take part in the joint choice of pitches: one player's, of a known
    instrument heard once (two label queries of one instrument hold both players' notes)."""
    known = [code for code in instruments if code is not None]
    return [
        code is not None and known.count(code) == 1 and count == 1 and joint_pitches
        for code, count in zip(instruments, voices, strict=True)
    ]


def _classifier_for(
    codes: Sequence[str], timbre_weight: float, given: NoteClassifier | None
) -> NoteClassifier | None:
    """The note classifier that tells the joint stems' instruments ``codes`` apart (``given``,
    else the bundled one), or ``None``: fewer than two of them, no timbre weight, or an
    instrument it was not made for."""
    if len(codes) < 2 or timbre_weight <= 0:
        return None
    classifier = given or load_note_classifier()
    return classifier if set(codes) <= set(classifier.instruments) else None


def timbre_listener(
    players: int,
    *,
    instruments: Sequence[str | None] | None = None,
    sample_rate: int | None = None,
    joint_pitches: bool = True,
    voices: Sequence[int] | None = None,
    timbre_weight: float = TIMBRE_WEIGHT,
    note_classifier: NoteClassifier | None = None,
    n_fft: int = N_FFT,
    **_other_settings: Any,
) -> RecordingListener | None:
    """The first pass over the mixture that the masks of these :class:`SoftMaskFilter`
    settings want (:mod:`vimss_cli.recording_timbre`): push the whole mixture into it and
    give its ``prototypes()`` to the filter. ``None`` when they use no note classifier
    (plain soft masks, fewer than two instruments heard once, ...)."""
    if instruments is None or sample_rate is None:
        return None
    counts = _voice_counts(players, instruments, sample_rate, voices)  # before the pass
    joint = _joint_stems(instruments, counts, joint_pitches)
    codes = [str(code) for code, j in zip(instruments, joint, strict=True) if j]
    classifier = _classifier_for(codes, timbre_weight, note_classifier)
    if classifier is None:
        return None
    # only as many notes per frame as joint instruments, told apart among them alone: the
    # other players' (two violins beside them) counted too measured worse (docs/training.md)
    return RecordingListener(codes, sample_rate, classifier, n_fft, n_fft // 2)


#: Samples pushed at a time by :func:`refine` (memory stays a few blocks' worth).
REFINE_BLOCK = 1 << 16


def refine(
    stems: np.ndarray,
    mixture: np.ndarray,
    listen: bool = True,
    pitches_out: list[np.ndarray] | None = None,
    **settings: Any,
) -> np.ndarray:
    """Refine whole ``stems`` ``(K, n)`` on their ``mixture`` ``(n,)``: the same samples
    as any other way of pushing them, in blocks, so an hour needs no copies of itself.
    ``listen``: harmonic masks with a note classifier first hear the whole mixture
    (:func:`timbre_listener`), unless ``settings`` give the ``prototypes``; ``False``: the
    classifier as trained. ``pitches_out``: a list that gets the pitches the harmonic masks
    used, ``(K, T)`` (:meth:`SoftMaskFilter.logged_pitches`).
    ``settings``: :class:`SoftMaskFilter`'s (``n_fft``, ``hop``, ``power``, ``rest_share``,
    and for harmonic masks ``instruments``, ``sample_rate``, ``off_harmonic``, ``harmonic_power``,
    ``joint_pitches``, ``own_pitch_weight``, ``voices``, ``timbre_weight``,
    ``note_classifier``, ``prototypes`` and ``templates``).
    """
    wants = listen and "prototypes" not in settings
    listener = timbre_listener(stems.shape[0], **settings) if wants else None
    if listener is not None:
        listener.push(mixture)
        settings["prototypes"] = listener.prototypes()
    masks = SoftMaskFilter(stems.shape[0], log_pitches=pitches_out is not None, **settings)
    out = np.empty((stems.shape[0], mixture.shape[0]), np.float32)
    done = 0
    for start in range(0, mixture.shape[0], REFINE_BLOCK):
        end = start + REFINE_BLOCK
        part = masks.push(stems[:, start:end], mixture[start:end])
        out[:, done : done + part.shape[1]] = part
        done += part.shape[1]
    out[:, done:] = masks.finish()
    if pitches_out is not None:
        pitches_out.append(masks.logged_pitches())
    return out
