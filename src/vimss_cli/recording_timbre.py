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

from vimss_cli.note_classifier import NoteClassifier, harmonic_profile, unit_rows
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
#: Frames read per batch (memory stays a few of them whatever the blocks).
BATCH_FRAMES = 256


class RecordingListener:
    """Push a mixture in blocks of any size; :meth:`prototypes` then says what each of
    ``instruments`` sounds like in it.

    Frames of ``n_fft`` samples every ``hop`` samples from the first sample (the last partial
    frame is not read); the result is the same whatever the blocks (tested).
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
        more, all known to ``classifier``)."""
        self.instruments = tuple(instruments)
        if len(set(self.instruments)) != len(self.instruments) or len(self.instruments) < 2:
            raise ValueError("a recording's timbres are told apart for two or more instruments")
        if not set(self.instruments) <= set(classifier.instruments):
            raise ValueError(f"the note classifier knows no {self.instruments}")
        self.classifier, self.sample_rate = classifier, int(sample_rate)
        self.n_fft, self.hop = n_fft, hop
        ranges = [PITCH_RANGE_HZ.get(code, DEFAULT_RANGE_HZ) for code in self.instruments]
        low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
        self._grid = PitchGrid(None, self.sample_rate, n_fft, (low, high))
        self._window = periodic_hann(n_fft).astype(np.float32)
        self._gate = LoudnessGate(self._window, None)
        self._input = np.zeros(0, np.float32)  # from the next frame's first sample on
        #: (instruments, hidden) each instrument's confidence-weighted sum of hidden features
        self._sums: np.ndarray | None = None

    def push(self, block: np.ndarray) -> None:
        """The next ``(n,)`` samples of the mixture."""
        self._input = np.concatenate([self._input, np.asarray(block, np.float32).ravel()])
        frames = (self._input.size - self.n_fft) // self.hop + 1
        while frames > 0:
            count = min(frames, BATCH_FRAMES)
            starts = np.arange(count)[:, None] * self.hop
            taken = self._input[starts + np.arange(self.n_fft)[None]]  # (count, n_fft)
            self._listen(np.abs(np.fft.rfft(taken * self._window, axis=1)))
            self._input = self._input[count * self.hop :]
            frames -= count

    def _listen(self, magnitude: np.ndarray) -> None:
        """Add the notes of ``(T, bins)`` frames' magnitudes to the prototypes' sums."""
        loud = self._gate.loud(magnitude)
        if not loud.any():
            return
        heard = magnitude[loud]  # (T', bins)
        counts = np.full(len(heard), len(self.instruments))
        pitches = several_pitches(heard.T, self._grid, counts)  # (T', J) Hz
        features = harmonic_profile(heard, pitches, self.sample_rate, self.n_fft)
        hidden = self.classifier.hidden(features.reshape(-1, features.shape[-1]))  # (N, D)
        columns = [self.classifier.instruments.index(code) for code in self.instruments]
        logits = self.classifier.output(hidden)[:, columns]
        weights = _softmax(logits) ** CONFIDENCE_POWER  # (N, J)
        sums = weights.T.astype(np.float64) @ hidden  # (J, D)
        self._sums = sums if self._sums is None else self._sums + sums

    def prototypes(self) -> dict[str, np.ndarray] | None:
        """Each instrument's prototype (unit length, float32), or ``None`` when no frame
        sounded."""
        if self._sums is None:
            return None
        units = unit_rows(self._sums).astype(np.float32)
        return dict(zip(self.instruments, units, strict=True))


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
