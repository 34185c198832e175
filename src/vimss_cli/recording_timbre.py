"""What each instrument sounds like in this recording: the note classifier adapted to it.

The note classifier (:mod:`vimss_cli.note_classifier`) learnt the instruments from generated
ensembles; a real recording's instruments sound otherwise (their makers, the players, the
room, the microphones), and it is less sure of them: right on 72 % of Bach10's notes against
88 % of the generated valid split's. But within one recording each instrument keeps its sound.
So a first pass over the mixture listens to the whole recording
(:class:`RecordingListener`): in each sounding frame it takes as many pitches as the ensemble
has instruments heard once (:func:`~vimss_cli.pitch_voices.several_pitches`), reads each
pitch's harmonic profile, and keeps the classifier's hidden features of it (its last layer's
input, :meth:`NoteClassifier.hidden`). Each instrument's **prototype** is the mean direction
of those features, each note weighed by the square of the classifier's posterior that the
instrument plays it: what the notes this recording's clarinet most surely plays have in
common. The masks then score a note for an instrument by its logit plus
:data:`PROTOTYPE_WEIGHT` times the cosine between its features and the instrument's prototype
(:meth:`NoteClassifier.adapted`): notes like those the recording's clarinet surely plays count
as the clarinet's. It is test-time classifier adjustment (as T3A, Iwasawa and Matsuo 2021,
adjusts a classifier to a test set through prototypes of its own confident outputs), one
recording at a time, with nothing learnt from the recording but the prototypes.

The listener needs nothing but the mixture, so it runs in the pass that already reads the
whole input to find its peak (:meth:`vimss_cli.api.Separator.separate_file`); the
masks then stream as before, exactly, with the prototypes fixed for the whole recording.
Measured in docs/training.md ("The recording's own timbres").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vimss_cli.note_classifier import NoteClassifier, unit_rows
from vimss_cli.pitch_voices import (
    DEFAULT_RANGE_HZ,
    PITCH_RANGE_HZ,
    LoudnessGate,
    PitchGrid,
    several_pitches,
)
from vimss_cli.stft_stream import periodic_hann

#: How much the cosine between a note's hidden features and an instrument's prototype adds to
#: the classifier's logit for it (docs/training.md, "The recording's own timbres").
PROTOTYPE_WEIGHT = 20.0
#: A note's weight in its instrument's prototype: the classifier's posterior to this power
#: (sure notes count most).
CONFIDENCE_POWER = 2
#: Frames read per batch.
BATCH_FRAMES = 256
#: Frames more than this many dB below the recording's loudest count for nothing: room tone
#: before the music, a quiet lead-in. (20, 30 and 45 dB measured alike on the four sets of
#: docs/training.md, "The recording's own timbres", within 0.04 dB.)
LISTENING_RANGE_DB = 30.0
#: The frames' notes are summed in bands of this many dB of the frame's level, so that
#: :meth:`RecordingListener.prototypes` can leave out the frames below
#: :data:`LISTENING_RANGE_DB` of the loudest of the whole recording, to within a band.
LEVEL_BAND_DB = 3.0


class RecordingListener:
    """Push a mixture in blocks of any size; :meth:`prototypes` then says what each of
    ``instruments`` sounds like in it.

    Frames of ``n_fft`` samples every ``hop`` samples from the first sample (the last partial
    frame is not read); the result is the same whatever the blocks, to float rounding (its
    sums are grouped by them; tested). Frames more than :data:`LISTENING_RANGE_DB` below the
    recording's loudest count for nothing. Memory: a frame's worth of samples and a few sums
    of the hidden features per level band, whatever the length.
    """

    def __init__(
        self,
        instruments: Sequence[str],
        sample_rate: int,
        classifier: NoteClassifier,
        n_fft: int,
        hop: int,
    ) -> None:
        """``instruments``: the URMP codes of the players heard once, each once (two or
        more, all known to ``classifier``). Each frame is read for as many notes as there
        are of them, each note told apart among them alone (other players' notes, such as
        two violins' beside them, then count for one of these)."""
        self.instruments = tuple(instruments)
        if len(set(self.instruments)) != len(self.instruments) or len(self.instruments) < 2:
            raise ValueError("a recording's timbres are told apart for two or more instruments")
        unknown = sorted(set(self.instruments) - set(classifier.instruments))
        if unknown:
            raise ValueError(f"the note classifier knows no {', '.join(unknown)}")
        self.classifier, self.sample_rate = classifier, int(sample_rate)
        self.n_fft, self.hop = n_fft, hop
        ranges = [PITCH_RANGE_HZ.get(code, DEFAULT_RANGE_HZ) for code in self.instruments]
        low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
        self._grid = PitchGrid(None, self.sample_rate, n_fft, (low, high))
        self._window = periodic_hann(n_fft).astype(np.float32)
        self._gate = LoudnessGate(self._window, None)  # for its frame energies
        self._input = np.zeros(0, np.float32)  # from the next frame's first sample on
        #: per level band (:data:`LEVEL_BAND_DB`), each instrument's confidence-weighted sum of
        #: the hidden features of the notes of frames at that level, ``(instruments, hidden)``
        self._sums: dict[int, np.ndarray] = {}
        self._loudest = 0.0  # the loudest frame's mean square so far

    def push(self, block: np.ndarray) -> None:
        """The next ``(n,)`` samples of the mixture (any length: a whole recording is read
        a batch of frames at a time)."""
        block = np.asarray(block, np.float32)
        if block.ndim != 1:
            raise ValueError(f"a recording listener takes mono blocks (n,), got {block.shape}")
        step = BATCH_FRAMES * self.hop
        for start in range(0, block.size, step):
            self._push(block[start : start + step])

    def _push(self, block: np.ndarray) -> None:
        """:meth:`push` of at most a batch of frames' samples."""
        self._input = np.concatenate([self._input, block])
        frames = (self._input.size - self.n_fft) // self.hop + 1
        while frames > 0:
            count = min(frames, BATCH_FRAMES)
            starts = np.arange(count)[:, None] * self.hop
            taken = self._input[starts + np.arange(self.n_fft)[None]]  # (count, n_fft)
            self._listen(np.abs(np.fft.rfft(taken * self._window, axis=1)))
            self._input = self._input[count * self.hop :]
            frames -= count
        self._input = self._input.copy()  # less than a frame: not a view of the whole block

    def _listen(self, magnitude: np.ndarray) -> None:
        """Add the notes of ``(T, bins)`` frames' magnitudes to the sums of their level
        bands."""
        energy = self._gate.energies(magnitude)
        sounding = energy > 0.0  # digital silence holds no note
        if not sounding.any():
            return
        self._loudest = max(self._loudest, float(energy.max()))
        heard = magnitude[sounding]  # (T', bins)
        bands = np.floor(10 * np.log10(energy[sounding]) / LEVEL_BAND_DB).astype(np.int64)
        count = len(self.instruments)
        pitches = several_pitches(heard.T, self._grid, np.full(len(heard), count))  # (T', J)
        features = self.classifier.note_features(heard, pitches, self.sample_rate, self.n_fft)
        hidden = self.classifier.hidden(features)  # (T', J, D)
        posterior = self.classifier.posteriors_of_hidden(hidden, self.instruments)  # (T', J, J)
        weights = posterior**CONFIDENCE_POWER
        for band in np.unique(bands):
            at = bands == band
            notes = hidden[at].reshape(-1, hidden.shape[-1])  # (N, D)
            sums = weights[at].reshape(-1, count).T.astype(np.float64) @ notes  # (J, D)
            self._sums[int(band)] = self._sums.get(int(band), 0.0) + sums

    def prototypes(self) -> dict[str, np.ndarray] | None:
        """Each instrument's prototype (unit length, float32) from the frames within
        :data:`LISTENING_RANGE_DB` of the loudest (to within a level band), or ``None`` when
        no frame sounded."""
        if not self._sums:
            return None
        floor_db = 10 * np.log10(self._loudest) - LISTENING_RANGE_DB
        quietest = np.floor(floor_db / LEVEL_BAND_DB)
        total = sum(sums for band, sums in self._sums.items() if band >= quietest)
        units = unit_rows(np.asarray(total)).astype(np.float32)
        return dict(zip(self.instruments, units, strict=True))
