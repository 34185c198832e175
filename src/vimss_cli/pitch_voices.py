"""Two players of one instrument told apart by pitch: a stem split into its upper and lower voice.

A label model gives two violins one stem, both players' sound. Nothing in that stem says which
note is whose, but the two players rarely play the same pitch: the upper voice is one player
for a phrase, the lower voice the other. This module splits such a stem into those two voice
stems without training; :class:`vimss_cli.voices.VoiceSorter` then gives each stretch of them
to the player whose motion follows its notes.

Per short-time spectrum frame (:data:`FRAME_SECONDS`, a hop of 1/16 of it):

1. **Two pitches.** The magnitude spectrum is resampled on a log-frequency grid of
   :data:`CENTS` cents, and each candidate pitch in the instrument's range
   (:data:`PITCH_RANGE_HZ`) scores the weighted sum of its first :data:`HARMONICS` harmonics
   (harmonic summation; the weights fall by :data:`HARMONIC_DECAY` per harmonic, so the octave
   below the true pitch scores less than the pitch). The best candidate is the first pitch;
   its harmonics are then damped and the best candidate of what is left, if it scores at least
   :data:`SECOND_PITCH_RATIO` of the first, is the second.
2. **Two lines.** With two pitches, the higher belongs to the upper voice. A lone pitch (the
   other player rests) goes to the voice whose last pitch, heard within :data:`HOLD_SECONDS`,
   is nearer; to the upper voice when neither was heard that recently.
3. **Masks.** Each frequency bin goes to the voices in proportion to how near it lies to one
   of their harmonics (Gaussian, :data:`HARMONIC_WIDTH` of the harmonic's frequency wide);
   what lies near no harmonic is shared among the voices that sound. Each voice then keeps
   :data:`VOICE_LEAK` of the other's share (where lines cross, the voices swap notes; a hedged
   split loses less there). The masks sum to one, so the two voice stems sum to the stem they
   came from (up to float rounding).

It streams: :class:`PitchVoiceSplitter` takes blocks of any length and gives the same samples
whether the stem comes in one block or many, ``frame - hop`` samples later. The other channels
of a recording replay the first channel's lines, so voice 1 is the same line in each.

On by default (``vimss separate -i vn,vn``; ``--no-pitch-voices`` keeps one shared stem), in
register order, the higher voice to the first named player (in a video, the one further left):
on generated pieces of real works and on real duets it gains on average over two identical
stems, but where the two parts cross the voices take each other's notes, and on real solo
recordings it finds a second pitch in most frames (docs/video.md, "Split by pitch, with any
label model"). In a generated video with the players' true keypoints beside it, their motion
gives the voices to the players (:mod:`vimss_cli.voices`); ``--pitch-voices`` asks for that in
any video, where frame differences measured worse than register order.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from vimss_cli.conditioning import Query
from vimss_cli.errors import InputError
from vimss_cli.instruments import SOUNDING_RANGES
from vimss_cli.stft_stream import StreamingSTFT

if TYPE_CHECKING:
    from vimss_cli.model import ModelConfig

#: Length of the spectrum frames in seconds (4096 samples at 22.05 kHz): long enough to
#: resolve the harmonics of a double bass, short enough to follow a fast passage.
FRAME_SECONDS = 0.186
#: Frames per frame length (the hop is the frame over this).
OVERLAP = 16
#: Resolution of the pitch grid.
CENTS = 10
#: Harmonics summed per candidate pitch.
HARMONICS = 12
#: Each harmonic's weight is this times the one before.
HARMONIC_DECAY = 0.7
#: Magnitudes are raised to this power before the harmonic sum (loud partials weigh less).
MAGNITUDE_POWER = 0.5
#: The first pitch's harmonics are multiplied by this before the second pitch is looked for.
DAMPING = 0.15
#: Half-width in grid steps of what is damped around each of the first pitch's harmonics.
DAMPED_STEPS = 4
#: The second pitch must lie at least this many grid steps from the first (one semitone).
SECOND_PITCH_DISTANCE = 10
#: The second pitch must score this share of the first to count as a second player.
SECOND_PITCH_RATIO = 0.2
#: A frame this many dB below the loudest so far (or below -70 dBFS) holds no pitch.
SILENCE_DB = 45.0
#: A lone pitch joins the voice whose last pitch is nearer, if heard within this long.
HOLD_SECONDS = 0.5
#: Width (standard deviation) of a harmonic's mask, as a share of its frequency; at least
#: 1.5 frequency bins.
HARMONIC_WIDTH = 0.012
#: Each voice keeps this share of what the masks give the other (the split hedged towards the
#: shared stem): where the two parts cross, the voices take each other's notes, and a voice
#: then holds some of its own still. 0 splits fully, 0.5 not at all; measured on generated
#: duets of real works and on real duets from Bach10 (docs/video.md, "A hedged split").
VOICE_LEAK = 0.125

#: Semitones looked at below and above each instrument's sounding range
#: (:data:`vimss_cli.instruments.SOUNDING_RANGES`).
RANGE_MARGIN = 2


def _hz(midi: float) -> float:
    """A MIDI note number's frequency in Hz (A4 = 69 = 440 Hz)."""
    return float(440.0 * 2 ** ((midi - 69) / 12))


#: Pitch range of each URMP instrument in Hz; an unknown instrument gets
#: :data:`DEFAULT_RANGE_HZ`.
PITCH_RANGE_HZ: dict[str, tuple[float, float]] = {
    code: (_hz(low - RANGE_MARGIN), _hz(high + RANGE_MARGIN))
    for code, (low, high) in SOUNDING_RANGES.items()
}
DEFAULT_RANGE_HZ = (60.0, 2000.0)


def frame_length(sample_rate: int) -> int:
    """The spectrum frame in samples: the power of two nearest :data:`FRAME_SECONDS`."""
    return int(2 ** round(np.log2(FRAME_SECONDS * sample_rate)))


class PitchGrid:
    """The log-frequency grid of one instrument at one frame size: where each grid step and
    each candidate's harmonics fall."""

    def __init__(
        self,
        instrument: str | None,
        sample_rate: int,
        frame: int,
        hz_range: tuple[float, float] | None = None,
    ) -> None:
        """Candidates in ``instrument``'s range (:data:`PITCH_RANGE_HZ`), or in ``hz_range``
        when given."""
        low, high = hz_range or PITCH_RANGE_HZ.get(instrument or "", DEFAULT_RANGE_HZ)
        top = min(sample_rate / 2 * 0.95, high * HARMONICS)
        steps = int(1200 * np.log2(top / low) / CENTS) + 1
        self.hz = low * 2 ** (np.arange(steps) * CENTS / 1200)  # (P,)
        self.candidates = min(steps, int(1200 * np.log2(high / low) / CENTS) + 1)
        position = self.hz / (sample_rate / frame)  # fractional bin of each grid step
        self.lower = np.floor(position).astype(np.int64)
        self.fraction = (position - self.lower)[:, None]
        #: grid steps from a pitch to each of its harmonics, ``(HARMONICS,)``
        self.shifts = np.round(1200 * np.log2(np.arange(1, HARMONICS + 1)) / CENTS).astype(int)
        self.weights = HARMONIC_DECAY ** np.arange(HARMONICS)
        #: grid steps from a pitch to what :meth:`damp` damps around its harmonics
        around = np.arange(-DAMPED_STEPS, DAMPED_STEPS + 1)
        self._damped_offsets = (self.shifts[:, None] + around[None, :]).reshape(-1)

    def resample(self, magnitude: np.ndarray) -> np.ndarray:
        """``(bins, T)`` magnitudes -> ``(P, T)`` on the grid (linear interpolation)."""
        low = magnitude[self.lower]
        high = magnitude[np.minimum(self.lower + 1, magnitude.shape[0] - 1)]
        return (1 - self.fraction) * low + self.fraction * high

    def salience(self, grid: np.ndarray) -> np.ndarray:
        """``(P, T)`` -> ``(candidates, T)``: each candidate's weighted harmonic sum."""
        steps = grid.shape[0]
        out = np.zeros((self.candidates, grid.shape[1]))
        for shift, weight in zip(self.shifts, self.weights, strict=True):
            end = min(self.candidates, steps - shift)
            if end <= 0:
                break
            out[:end] += weight * grid[shift : shift + end]
        return out

    def saliences(self, magnitude: np.ndarray) -> np.ndarray:
        """``(bins, T)`` magnitudes -> ``(candidates, T)`` each candidate's salience."""
        return self.salience(self.resample(magnitude**MAGNITUDE_POWER))

    def strongest(self, magnitude: np.ndarray) -> np.ndarray:
        """``(bins, T)`` magnitudes -> ``(T,)`` the pitch in Hz with the highest salience."""
        return self.hz[np.argmax(self.saliences(magnitude), axis=0)]

    def step(self, hz: np.ndarray) -> np.ndarray:
        """Pitches in Hz -> the index of the nearest grid step (may lie outside the grid)."""
        return np.round(1200 * np.log2(hz / self.hz[0]) / CENTS).astype(np.int64)

    def damp(self, values: np.ndarray, pitches: np.ndarray) -> np.ndarray:
        """``(P, T)`` grid values with each frame's ``pitches`` (``(T,)`` grid steps) heard:
        a copy with those pitches' harmonics (:data:`DAMPED_STEPS` steps either side)
        multiplied by :data:`DAMPING`."""
        damped = values.copy()
        rows = pitches[None, :] + self._damped_offsets[:, None]  # (offsets, T)
        columns = np.broadcast_to(np.arange(values.shape[1]), rows.shape)
        inside = (rows >= 0) & (rows < values.shape[0])
        rows, columns = rows[inside], columns[inside]
        damped[rows, columns] = values[rows, columns] * DAMPING
        return damped


def several_pitches(magnitude: np.ndarray, grid: PitchGrid, counts: np.ndarray) -> np.ndarray:
    """``(bins, T)`` magnitudes of a mixture -> ``(T, max(counts))`` pitches in Hz, up to
    ``counts[t]`` in frame ``t`` (``nan`` beyond): the strongest, then the strongest once its
    harmonics are damped (:meth:`PitchGrid.damp`) and at least :data:`SECOND_PITCH_DISTANCE`
    grid steps from it, and so on."""
    frames = magnitude.shape[1]
    most = int(counts.max()) if frames else 0
    pitches = np.full((frames, most), np.nan)
    values = grid.resample(magnitude**MAGNITUDE_POWER)  # (P, T)
    steps = np.arange(grid.candidates)[:, None]
    taken = np.zeros((grid.candidates, frames), dtype=bool)  # near a pitch already found
    for index in range(most):
        score = np.where(taken, -np.inf, grid.salience(values))
        best = np.argmax(score, axis=0)  # (T,)
        wanted = counts > index
        pitches[wanted, index] = grid.hz[best[wanted]]
        if index + 1 < most:
            values = grid.damp(values, best)
            taken |= np.abs(steps - best[None]) <= SECOND_PITCH_DISTANCE
    return pitches


class LoudnessGate:
    """Which frames of one signal sound: louder than ``floor_dbfs`` and than
    :data:`SILENCE_DB` below the loudest frame so far (causal, so the same whatever the
    blocks)."""

    def __init__(self, window: np.ndarray, floor_dbfs: float | None = -70.0) -> None:
        """``window``: the analysis window of the frames (``(n_fft,)``); ``floor_dbfs``:
        frames below this level never sound (``None``: no floor, the gate is the same at
        every level)."""
        #: a frame's mean square is its spectrum's energy over this (Parseval, window included)
        self.scale = float(window.size * np.sum(window.astype(np.float64) ** 2))
        self.loudest = 0.0
        self.floor = 0.0 if floor_dbfs is None else 0.5 * 10 ** (floor_dbfs / 10)

    def energies(self, magnitude: np.ndarray) -> np.ndarray:
        """``(T, bins)`` one-sided magnitudes -> ``(T,)`` float64: each frame's mean square
        (a full-scale sine: 0.5)."""
        power = np.square(magnitude, dtype=np.float64)
        return (2 * power.sum(axis=1) - power[:, 0] - power[:, -1]) / self.scale

    def loud(self, magnitude: np.ndarray) -> np.ndarray:
        """``(T, bins)`` one-sided magnitudes of successive frames -> ``(T,)`` bool."""
        energy = self.energies(magnitude)
        loud = np.zeros(len(energy), dtype=bool)
        for t, value in enumerate(energy):
            self.loudest = max(self.loudest, float(value))
            loud[t] = value > max(self.floor, self.loudest * 10 ** (-SILENCE_DB / 10))
        return loud


def harmonic_comb(
    pitches: np.ndarray, sample_rate: int, frame: int, harmonics: int | None = None
) -> np.ndarray:
    """``(T,)`` pitches in Hz (``nan`` for none) -> ``(T, bins)`` float32 in [0, 1]: how near
    each frequency bin lies to one of the pitch's harmonics (Gaussian, :data:`HARMONIC_WIDTH`
    of the harmonic's frequency wide, at least 1.5 bins); 0 below the fundamental, above
    the ``harmonics``-th harmonic (``None``: up to the Nyquist frequency) and in frames
    without a pitch."""
    bins = frame // 2 + 1
    hz = (np.arange(bins) * (sample_rate / frame)).astype(np.float32)[None, :]  # (1, bins)
    comb = np.zeros((len(pitches), bins), dtype=np.float32)
    sounds = ~np.isnan(pitches)
    if not sounds.any():
        return comb
    pitch = pitches[sounds].astype(np.float32)[:, None]  # (t, 1)
    harmonic = np.maximum(np.round(hz / pitch), np.float32(1.0))
    centre = harmonic * pitch
    width = np.maximum(np.float32(1.5) * hz[0, 1], np.float32(HARMONIC_WIDTH) * centre)
    weight = np.exp(np.float32(-0.5) * np.square((hz - centre) / width))
    weight[hz < np.float32(0.8) * pitch] = 0.0  # nothing below the fundamental
    if harmonics is not None:
        weight[hz > np.float32(harmonics + 0.5) * pitch] = 0.0
    comb[sounds] = weight
    return comb


def two_pitches(magnitude: np.ndarray, grid: PitchGrid, loud: np.ndarray) -> np.ndarray:
    """``(bins, T)`` magnitudes of frames that sound (``loud``, ``(T,)`` bool) -> ``(T, 2)``
    pitches in Hz, the strongest first; ``nan`` where there is none."""
    frames = magnitude.shape[1]
    pitches = np.full((frames, 2), np.nan)
    if not loud.any():
        return pitches
    on = np.flatnonzero(loud)
    values = grid.resample(magnitude[:, on] ** MAGNITUDE_POWER)  # (P, t)
    first_score = grid.salience(values)
    first = np.argmax(first_score, axis=0)  # (t,)
    columns = np.arange(len(on))
    second_score = grid.salience(grid.damp(values, first))
    near = np.abs(np.arange(grid.candidates)[:, None] - first[None]) <= SECOND_PITCH_DISTANCE
    second_score[near] = 0.0
    second = np.argmax(second_score, axis=0)
    best = first_score[first, columns]
    heard = second_score[second, columns] >= SECOND_PITCH_RATIO * best
    pitches[on, 0] = grid.hz[first]
    pitches[on[heard], 1] = grid.hz[second[heard]]
    return pitches


class _LineTracker:
    """Pitches of successive frames -> the upper and lower voice's lines (causal)."""

    def __init__(self, hold_frames: int) -> None:
        self.hold = hold_frames
        self.last = [np.nan, np.nan]
        self.age = [hold_frames + 1, hold_frames + 1]

    def lines(self, pitches: np.ndarray) -> np.ndarray:
        """``(T, 2)`` pitches (any order, ``nan`` for none) -> ``(T, 2)`` [upper, lower]."""
        out = np.full(pitches.shape, np.nan)
        for t, row in enumerate(pitches):
            heard = sorted((p for p in row if not np.isnan(p)), reverse=True)
            if len(heard) == 2:
                out[t] = heard
                self.last, self.age = list(heard), [0, 0]
                continue
            self.age = [a + 1 for a in self.age]
            if not heard:
                continue
            octave = np.log2(heard[0])
            distance = [
                abs(octave - np.log2(self.last[v])) if self.age[v] <= self.hold else np.inf
                for v in (0, 1)
            ]
            voice = 0 if distance[0] == distance[1] else int(np.argmin(distance))
            out[t, voice] = heard[0]
            self.last[voice], self.age[voice] = heard[0], 0
        return out


def voice_masks(
    lines: np.ndarray, sample_rate: int, frame: int, leak: float = VOICE_LEAK
) -> np.ndarray:
    """``(T, 2)`` [upper, lower] pitches in Hz -> ``(2, T, bins)`` float32 masks that sum to
    one, each voice keeping ``leak`` of the other's share: also where one voice rests (a lone
    pitch may have gone to the wrong voice; leaking only where both sound measured worse on
    every set, docs/video.md), so a resting voice holds the other at ``leak`` (-18 dB)."""
    near = np.stack([harmonic_comb(lines[:, voice], sample_rate, frame) for voice in (0, 1)])
    total = near[0] + near[1]  # (T, bins)
    sounding = (~np.isnan(lines)).T.astype(np.float32)  # (2, T)
    count = sounding.sum(axis=0)
    # what lies near no harmonic: shared by the voices that sound (both, when none does)
    share = np.where(count > 0, sounding / np.maximum(count, 1.0), 0.5)[:, :, None]
    blend = np.minimum(total / np.float32(0.05), np.float32(1.0))  # 0 far from a harmonic
    harmonic_share = near / np.maximum(total, np.float32(1e-12))
    masks = blend * harmonic_share + (1.0 - blend) * share
    # (1 - leak) of its own share and leak of the other's: the other's share is 1 - its own
    return (np.float32(leak) + np.float32(1.0 - 2.0 * leak) * masks).astype(np.float32, copy=False)


class PitchVoiceSplitter:
    """One stem, block by block -> its upper and lower voice stems, ``delay`` samples later.

    ``feed`` and ``finish`` return ``(2, n)`` float32 (row 0 the upper voice); all they return
    together is as long as all that was fed, and the same whatever the block lengths
    (:class:`~vimss_cli.stft_stream.StreamingSTFT`).
    """

    def __init__(
        self,
        instrument: str | None,
        sample_rate: int,
        replay: np.ndarray | None = None,
        leak: float = VOICE_LEAK,
    ) -> None:
        """``replay``: the ``(T, 2)`` lines another channel of the same recording found
        (:attr:`lines`), used instead of this stem's own pitches, frame for frame.
        ``leak``: how much of the other voice's share each voice keeps (:data:`VOICE_LEAK`),
        from 0 (the full split) to 0.5 (no split)."""
        if not 0.0 <= leak <= 0.5:
            raise ValueError(f"leak must lie in [0, 0.5], got {leak}")
        self.sample_rate = sample_rate
        self.leak = float(leak)
        self.frame = frame_length(sample_rate)
        self._stft = StreamingSTFT(1, 2, self.frame, self.frame // OVERLAP, self._split)
        self.delay = self._stft.lead
        self.grid = PitchGrid(instrument, sample_rate, self.frame)
        self.tracker = _LineTracker(int(HOLD_SECONDS * sample_rate / self._stft.hop))
        self.gate = LoudnessGate(self._stft.window)
        self.replay = replay
        self._lines: list[np.ndarray] = []  # (T, 2) per batch of frames, the lines used so far
        self.frames_done = 0

    def feed(self, block: np.ndarray) -> np.ndarray:
        """``(n,)`` more of the stem -> ``(2, m)`` voice samples now complete."""
        return self._stft.push(np.asarray(block, dtype=np.float32).reshape(1, -1))

    def finish(self) -> np.ndarray:
        """The voice samples still held (``(2, m)``), after the end of the stem."""
        return self._stft.finish()

    def _split(self, spectra: np.ndarray) -> np.ndarray:
        """``(T, 1, bins)`` spectra of the stem -> ``(T, 2, bins)`` of its two voices."""
        spectrum = spectra[:, 0]
        count = spectrum.shape[0]
        magnitude = np.abs(spectrum)
        loud = self.gate.loud(magnitude)
        if self.replay is None:
            lines = self.tracker.lines(two_pitches(magnitude.T, self.grid, loud))
        else:  # past the replayed lines' end (a channel a frame longer): no pitch
            lines = np.full((count, 2), np.nan)
            known = self.replay[self.frames_done : self.frames_done + count]
            lines[: len(known)] = known
        self._lines.append(lines)
        self.frames_done += count
        masks = voice_masks(lines, self.sample_rate, self.frame, self.leak)  # (2, T, bins)
        return (masks * spectrum[None]).transpose(1, 0, 2)

    @property
    def lines(self) -> np.ndarray:
        """``(T, 2)`` the upper and lower voice's pitch (Hz, ``nan`` for none) of every frame
        so far."""
        return np.concatenate(self._lines) if self._lines else np.zeros((0, 2))


def split_voices(
    stem: np.ndarray, instrument: str | None, sample_rate: int, leak: float = VOICE_LEAK
) -> np.ndarray:
    """A whole stem ``(n,)`` -> ``(2, n)`` float32: its upper and lower voice, each keeping
    ``leak`` of the other's (:data:`VOICE_LEAK`)."""
    splitter = PitchVoiceSplitter(instrument, sample_rate, leak=leak)
    out = np.concatenate([splitter.feed(stem), splitter.finish()], axis=1)
    return out[:, : np.asarray(stem).size]


def pitch_pairs(queries: list[Query], config: ModelConfig) -> list[tuple[int, int]]:
    """The ``(voice 1, voice 2)`` slots of each instrument whose two queries ask for voices 1
    and 2, for a label-only model (no voices of its own, no appearance or motion: its network
    hears each pair as one label query, and the stem is split here); ``[]`` for any other
    model, whose network reads the voices itself (or refuses them).

    Raises:
        InputError: a label-only model is given voice queries that are not such a pair.
    """
    if not config.label_only:
        return []
    slots: dict[str | None, dict[int, int]] = {}
    for index, query in enumerate(queries):
        if query.voice:
            slots.setdefault(query.instrument, {}).setdefault(query.voice, index)
    asked = {code: sorted(q.voice for q in queries if q.voice and q.instrument == code)
             for code in slots}  # fmt: skip
    for code, voices in asked.items():
        if voices != [1, 2]:
            raise InputError(
                f"the {code or 'unknown'} queries ask for voices {voices}; a label model splits "
                "two players of one instrument by pitch, queried as voices 1 and 2"
            )
    return [(voices[1], voices[2]) for voices in slots.values()]


class VoiceSplitStage:
    """The network's stems -> every player's, block by block: the one stem of each pitch pair
    (:func:`pitch_pairs`) split into its upper and lower voice (voice 1 and voice 2), the
    other stems held back as long as the split takes (``delay`` samples), so all come out
    together.

    Attributes:
        network_queries: what the network separates: the queries without each pair's voice 2,
            and without voices (plain label queries).
        whole_mixture: the pair is every player; the mixture itself is then split.
    """

    def __init__(
        self,
        queries: list[Query],
        pairs: list[tuple[int, int]],
        sample_rate: int,
        replay: list[np.ndarray] | None = None,
    ):
        """``replay``: another channel's :attr:`lines`, to give this channel the same voices."""
        if not pairs:
            raise ValueError("VoiceSplitStage needs at least one pair (see for_queries)")
        lower = {second for _, second in pairs}
        self.players = len(queries)
        #: slot of each network stem, in the network's order
        self.slots = [k for k in range(len(queries)) if k not in lower]
        self.network_queries = [replace(queries[k], voice=0) for k in self.slots]
        self.pairs = [(self.slots.index(first), first, second) for first, second in pairs]
        self.splitters = [
            PitchVoiceSplitter(
                queries[first].instrument, sample_rate, None if replay is None else replay[p]
            )
            for p, (first, _) in enumerate(pairs)
        ]
        #: the pair is every player: what a label model would return for it at best is the
        #: mixture itself, so the mixture is split (measured, docs/video.md)
        self.whole_mixture = len(self.slots) == 1
        self.held = np.zeros((len(self.slots), 0), dtype=np.float32)

    @classmethod
    def for_queries(
        cls,
        queries: list[Query],
        config: ModelConfig,
        sample_rate: int,
        replay: list[np.ndarray] | None = None,
    ) -> VoiceSplitStage | None:
        """The stage for these queries and this model, or ``None`` when no stem is to be
        split (:func:`pitch_pairs`)."""
        pairs = pitch_pairs(queries, config)
        return cls(queries, pairs, sample_rate, replay) if pairs else None

    @property
    def lines(self) -> list[np.ndarray]:
        """Each pair's ``(T, 2)`` pitch lines so far (for the other channels to replay)."""
        return [splitter.lines for splitter in self.splitters]

    def feed(self, stems: np.ndarray) -> np.ndarray:
        """``(len(network_queries), n)`` stems -> ``(players, m)``: those now complete."""
        voices = [s.feed(stems[j]) for s, (j, _, _) in zip(self.splitters, self.pairs, strict=True)]
        return self._place(stems, voices)

    def finish(self) -> np.ndarray:
        """The samples still held, ``(players, m)``, once every stem has been fed."""
        empty = np.zeros((len(self.slots), 0), dtype=np.float32)
        return self._place(empty, [s.finish() for s in self.splitters])

    def split_whole(self, stems: np.ndarray) -> np.ndarray:
        """Whole stems ``(len(network_queries), n)`` -> ``(players, n)``."""
        return np.concatenate([self.feed(stems), self.finish()], axis=1)

    def _place(self, stems: np.ndarray, voices: list[np.ndarray]) -> np.ndarray:
        self.held = np.concatenate([self.held, stems.astype(np.float32, copy=False)], axis=1)
        count = voices[0].shape[1]
        out = np.zeros((self.players, count), dtype=np.float32)
        out[self.slots] = self.held[:, :count]
        self.held = self.held[:, count:]
        for (_, first, second), pair in zip(self.pairs, voices, strict=True):
            out[first], out[second] = pair
        return out
