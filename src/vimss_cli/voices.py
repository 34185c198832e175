"""Voices: telling players of one instrument apart by register, and saying whose is whose.

A model with ``ModelConfig.voices`` separates the players of one instrument as voices: voice 1
is the highest-sounding of them, voice 2 the next (:attr:`vimss_cli.conditioning.Query.voice`).
This module holds what both sides of that need:

* training: which player of a mixture is which voice, from the players' ``Notes_*`` files
  (:func:`read_notes`, :func:`mean_pitch`, :func:`voice_numbers`);
* separation: which voice stem belongs to which player on screen, from each player's motion
  (:func:`assign_voices`): a player's bow, fingers and breath move when that player's notes
  start, so each stretch of a voice stem goes to the player whose motion follows its note
  onsets best.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from pathlib import Path

import numpy as np

from vimss_cli.conditioning import Query


def read_notes(path: Path) -> np.ndarray:
    """A URMP ``Notes_*`` file (onset s, frequency Hz, duration s per line) as ``(N, 3)``
    float64: onset, end (s) and pitch (MIDI note number, fractional). Lines that do not hold
    three numbers with a positive frequency are skipped."""
    rows = []
    for line in Path(path).read_text().splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        try:
            onset, frequency, duration = (float(value) for value in fields[:3])
        except ValueError:
            continue
        if frequency > 0 and duration > 0:
            rows.append((onset, onset + duration, 69 + 12 * np.log2(frequency / 440.0)))
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def mean_pitch(notes: np.ndarray, start: float, end: float) -> float | None:
    """Mean pitch (MIDI) of ``notes`` ``(N, 3)`` over ``start .. end`` seconds, each note
    weighted by how long it sounds there; ``None`` when no note sounds in the span."""
    overlap = np.minimum(notes[:, 1], end) - np.maximum(notes[:, 0], start)
    weights = np.clip(overlap, 0.0, None)
    total = float(weights.sum())
    if total <= 0:
        return None
    return float(weights @ notes[:, 2] / total)


def voice_numbers(pitches: list[float | None], tie: float = 1.0) -> list[int] | None:
    """Voice of each player of one instrument from their mean pitches: 1 for the highest.

    ``None`` when the order is not clear: a player sounds no note, or two are less than
    ``tie`` semitones apart (unison or crossing parts, where register names no one).
    """
    if any(p is None for p in pitches):
        return None
    values = np.array(pitches, dtype=np.float64)
    order = np.argsort(-values, kind="stable")
    if np.any(np.diff(values[order]) > -tie):
        return None
    voices = np.empty(len(values), dtype=np.int64)
    voices[order] = np.arange(1, len(values) + 1)
    return [int(v) for v in voices]


# ------------------------------------------------------------------ separation: whose stem


def frame_bounds(first: int, count: int, sample_rate: int, rate: float) -> np.ndarray:
    """``(count + 1,)`` first samples of frames ``first .. first + count`` of a ``rate``
    frames-per-second clock: frame ``f`` covers samples ``round(f * sample_rate / rate)`` up
    to the next frame's first. A function of absolute positions, so blocks and a whole
    recording give the same frames."""
    return np.round(np.arange(first, first + count + 1) * (sample_rate / rate)).astype(np.int64)


def log_energy(audio: np.ndarray, first_frame: int, sample_rate: int, rate: float) -> np.ndarray:
    """Log mean energy of each whole frame of ``audio`` ``(samples,)``, whose first sample is
    frame ``first_frame``'s first: ``(frames,)`` for the frames it holds completely."""
    most = int(len(audio) * rate / sample_rate) + 2
    bounds = frame_bounds(first_frame, most, sample_rate, rate)
    bounds = bounds - bounds[0]
    bounds = bounds[bounds <= len(audio)]
    if len(bounds) < 2:
        return np.zeros(0)
    square = np.square(audio[: bounds[-1]].astype(np.float64))
    sums = np.add.reduceat(square, bounds[:-1])
    return np.log(sums / np.maximum(np.diff(bounds), 1) + 1e-8)


def onset_strength(levels: np.ndarray) -> np.ndarray:
    """``(frames,)`` note-onset strength from a stem's frame log energies: the half-wave
    rectified rise from one frame to the next (0 for the first)."""
    if len(levels) == 0:
        return np.zeros(0)
    return np.clip(np.diff(levels, prepend=levels[0]), 0.0, None)


def motion_change(motion: np.ndarray) -> np.ndarray:
    """``(frames,)`` how much a player's motion changes: the summed absolute frame-to-frame
    difference of its channels ``(channels, frames)`` (a bow turning, fingers moving, a
    breath), each channel first scaled by its own spread so that no one dominates."""
    values = np.asarray(motion, dtype=np.float64)
    spread = values.std(axis=1, keepdims=True) + 1e-8
    change = np.abs(np.diff(values / spread, axis=1, prepend=values[:, :1] / spread))
    return change.sum(axis=0)


def _normalised(signal: np.ndarray, smooth: int) -> np.ndarray:
    if smooth > 1 and len(signal) >= smooth:
        signal = np.convolve(signal, np.ones(smooth) / smooth, mode="same")
    signal = signal - signal.mean()
    return signal / (np.linalg.norm(signal) + 1e-12)


def segment_scores(
    onsets: list[np.ndarray], changes: list[np.ndarray], lo: int, hi: int, smooth: int = 3
) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """Every way to give ``n`` voice stems to ``n`` players, and its score over frames
    ``lo .. hi``: the summed correlation between each stem's onset strength and its player's
    motion change. Returns the permutations (``order[p]``: the voice of player ``p``) and
    their scores ``(n!,)``."""
    count = len(changes)
    orders = list(permutations(range(count)))
    if hi - lo < 2:
        return orders, np.zeros(len(orders))
    table = np.array(
        [
            [
                float(
                    _normalised(onsets[v][lo:hi], smooth) @ _normalised(changes[p][lo:hi], smooth)
                )
                for p in range(count)
            ]
            for v in range(count)
        ]
    )  # (voice, player)
    scores = np.array([sum(table[order[p], p] for p in range(count)) for order in orders])
    return orders, scores


@dataclass
class VoiceGroup:
    """Players of one instrument separated as voices.

    Attributes:
        slots: the stem index of each player (left to right); before sorting, slot
            ``slots[v]`` holds voice ``v + 1``'s stem.
        motions: each player's motion ``(channels, frames)`` on the common motion clock.
    """

    slots: list[int]
    motions: list[np.ndarray]


class VoiceSorter:
    """Give each player of a :class:`VoiceGroup` the voice stem its motion follows, stretch by
    stretch, as stems stream past (bounded memory: about two stretches of audio are held).

    Stretch ``s`` covers ``segment_seconds`` from ``s * segment_seconds``; its owner (which
    voice each player gets) is the permutation with the best :func:`segment_scores` over the
    stretch and half a stretch either side. Where the owner changes, the new one fades in over
    ``fade_seconds``. :meth:`feed` takes ``(K, n)`` blocks of all K stems in order and returns
    what is ready, in order; :meth:`finish` returns the rest. The result does not depend on
    how the stems were cut into blocks. With ``owners`` (an earlier sorter's, per group) the
    sorter replays those decisions instead: the other channels of a recording follow the
    first.
    """

    def __init__(
        self,
        groups: list[VoiceGroup],
        motion_rate: float,
        sample_rate: int,
        segment_seconds: float = 10.0,
        fade_seconds: float = 0.05,
        owners: list[list[tuple[int, ...]]] | None = None,
    ) -> None:
        if segment_seconds <= 0:
            raise ValueError("segment_seconds must be positive")
        self.groups = groups
        self.rate = motion_rate
        self.sample_rate = sample_rate
        self.step = max(2, round(segment_seconds * motion_rate))  # frames per stretch
        self.fade = max(1, round(fade_seconds * sample_rate))
        self.changes = [[motion_change(m) for m in g.motions] for g in groups]
        self.motion_frames = [min(len(c) for c in changes) for changes in self.changes]
        self.levels: list[list[list[np.ndarray]]] = [[[] for _ in g.slots] for g in groups]
        self.frames_done = 0  # whole frames measured
        self.pending = np.zeros((0, 0), np.float32)  # (K, samples) not yet returned
        self.pending_start = 0  # absolute sample of pending[:, 0]
        self.owners: list[list[tuple[int, ...]]] = [[] for _ in groups]  # per stretch
        self.margins: list[list[float]] = [[] for _ in groups]
        self.received = 0
        #: decisions to replay (another channel of the same recording), per group
        self.replay = owners

    # --------------------------------------------------------------- input and measurement
    def feed(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, dtype=np.float32)
        if self.pending.size == 0:
            self.pending = block.copy()
        else:
            self.pending = np.concatenate([self.pending, block], axis=1)
        self.received += block.shape[1]
        self._measure()
        self._decide(final=False)
        return self._emit(final=False)

    def sort_whole(self, stems: np.ndarray) -> np.ndarray:
        """Whole stems ``(K, samples)`` in, sorted stems out (one :meth:`feed`, then
        :meth:`finish`)."""
        return np.concatenate([self.feed(stems), self.finish()], axis=1)

    def finish(self) -> np.ndarray:
        self._decide(final=True)
        return self._emit(final=True)

    def _measure(self) -> None:
        """Log energies of the frames completed since the last call, for every voice."""
        first = int(frame_bounds(self.frames_done, 0, self.sample_rate, self.rate)[0])
        offset = first - self.pending_start
        new = 0
        for g, group in enumerate(self.groups):
            for v, slot in enumerate(group.slots):
                audio = self.pending[slot, offset:]
                levels = log_energy(audio, self.frames_done, self.sample_rate, self.rate)
                self.levels[g][v].append(levels)
                new = len(levels)
        self.frames_done += new

    def _onsets(self, g: int) -> list[np.ndarray]:
        merged = [np.concatenate(parts) if parts else np.zeros(0) for parts in self.levels[g]]
        self.levels[g] = [[m] for m in merged]
        return [onset_strength(m) for m in merged]

    # --------------------------------------------------------------------- decisions
    def _decide(self, final: bool) -> None:
        """Decide every stretch whose frames (and half a stretch after) have been measured;
        with ``final``, every stretch that holds a measured frame (at least one)."""
        step = self.step
        for g in range(len(self.groups)):
            onsets: list[np.ndarray] | None = None
            while True:
                s = len(self.owners[g])
                if final:
                    if s > 0 and s * step >= self.frames_done:
                        break
                else:
                    wanted = min((s + 1) * step + step // 2, self.motion_frames[g])
                    if self.frames_done < max((s + 1) * step, wanted):
                        break
                usable = min(self.frames_done, self.motion_frames[g])
                if self.replay is not None:
                    known = self.replay[g]
                    self.owners[g].append(known[min(s, len(known) - 1)])
                    self.margins[g].append(np.inf)
                    continue
                if s * step >= usable and self.owners[g]:  # past the video: keep the owner
                    self.owners[g].append(self.owners[g][-1])
                    self.margins[g].append(0.0)
                    continue
                onsets = onsets if onsets is not None else self._onsets(g)
                lo = max(0, s * step - step // 2)
                hi = min((s + 1) * step + step // 2, usable)
                orders, scores = segment_scores(onsets, self.changes[g], lo, hi)
                ranked = np.sort(scores)
                self.owners[g].append(orders[int(np.argmax(scores))])
                self.margins[g].append(float(ranked[-1] - ranked[-2]) if len(ranked) > 1 else 0.0)

    # ------------------------------------------------------------------------- output
    def _stretch_start(self, s: int) -> int:
        """First sample of stretch ``s``."""
        return int(frame_bounds(s * self.step, 0, self.sample_rate, self.rate)[0])

    def _emit(self, final: bool) -> np.ndarray:
        """The samples whose owners are known, sorted; they leave ``pending``."""
        end = self.received
        if self.groups and not final:
            decided = min(len(o) for o in self.owners)
            end = min(end, self._stretch_start(decided))
        count = end - self.pending_start
        if count <= 0:
            return self.pending[:, :0].copy()
        out = self.pending[:, :count].copy()
        for g, owners in enumerate(self.owners):
            first = max(0, int(self.pending_start * self.rate / self.sample_rate) // self.step - 1)
            for s in range(first, len(owners)):
                lo = max(self._stretch_start(s), self.pending_start)
                hi = end if s == len(owners) - 1 else min(self._stretch_start(s + 1), end)
                if hi > lo:
                    self._place(out, g, s, lo, hi)
        self.pending = self.pending[:, count:]
        self.pending_start = end
        return out

    def _place(self, out: np.ndarray, g: int, s: int, lo: int, hi: int) -> None:
        """Write stretch ``s``'s samples ``lo .. hi`` (absolute) of group ``g`` into ``out``,
        fading from the previous stretch's owner over the stretch's first samples."""
        slots = self.groups[g].slots
        order = self.owners[g][s]
        before = self.owners[g][s - 1] if s > 0 else order
        a, b = lo - self.pending_start, hi - self.pending_start
        source = self.pending[:, a:b]
        ramp = np.arange(lo, hi) - self._stretch_start(s) + 1
        ramp = np.clip(ramp / self.fade, 0.0, 1.0).astype(np.float32)
        fading = ramp < 1.0  # the new owner alone after the fade, bit for bit
        for player, slot in enumerate(slots):
            new = source[slots[order[player]]]
            out[slot, a:b] = new
            if before != order and fading.any():
                old = source[slots[before[player]]][fading]
                out[slot, a:b][fading] = old + (new[fading] - old) * ramp[fading]

    # ------------------------------------------------------------------------ summary
    def unsure_share(self) -> float:
        """Share of stretches (all groups) decided by a margin below :data:`UNSURE_MARGIN`."""
        margins = [m for group in self.margins for m in group]
        return float(np.mean(np.array(margins) < UNSURE_MARGIN)) if margins else 0.0

    def voice_of(self, g: int) -> list[tuple[int, ...]]:
        """Group ``g``'s owner of each stretch: ``order[p]`` is player ``p``'s voice - 1."""
        return list(self.owners[g])


#: A stretch whose best way of giving voices to players beats the next by less than this
#: (summed correlation) was decided on little evidence.
UNSURE_MARGIN = 0.05
#: Warn when more than this share of the stretches were decided on little evidence.
UNSURE_SHARE = 0.5


def sorter_warnings(sorter: VoiceSorter, name: str) -> list[str]:
    """A warning when the motion said little about which voice stem is whose."""
    share = sorter.unsure_share()
    if share <= UNSURE_SHARE:
        return []
    return [
        f"{name}: the players' motion hardly says which voice is whose in {100 * share:.0f} % "
        "of the recording; stems of one instrument may be swapped there (check the stems, "
        "or name the players with --instruments in voice order on an audio-only input)"
    ]


def voice_groups(queries: list[Query]) -> tuple[list[VoiceGroup], float | None]:
    """The groups of ``queries`` to sort, and their motion's rate: for each instrument whose
    queries ask for voices 1 .. n (n >= 2) and all carry motion, one :class:`VoiceGroup`
    (its slots in voice order). Voice queries without motion are left in voice order.

    Raises:
        ValueError: an instrument's voices are not 1 .. n once each, or the motions' rates
            differ.
    """
    by_instrument: dict[str | None, list[int]] = {}
    for index, query in enumerate(queries):
        if query.voice:
            by_instrument.setdefault(query.instrument, []).append(index)
    groups: list[VoiceGroup] = []
    rates: set[float] = set()
    for instrument, slots in by_instrument.items():
        voices = sorted(queries[i].voice for i in slots)
        if voices != list(range(1, len(slots) + 1)):
            raise ValueError(
                f"the {instrument or 'unknown'} queries ask for voices {voices}; "
                f"give each of 1 to {len(slots)} once"
            )
        members = [queries[i] for i in sorted(slots, key=lambda i: queries[i].voice)]
        if len(members) < 2 or any(q.motion is None for q in members):
            continue
        rates.update(float(q.motion_rate or 0.0) for q in members)
        ordered = sorted(slots, key=lambda i: queries[i].voice)
        groups.append(VoiceGroup(ordered, [np.asarray(q.motion) for q in members]))
    if len(rates) > 1 or any(rate <= 0 for rate in rates):
        raise ValueError(f"voice queries' motions must share one positive rate, got {rates}")
    return groups, (rates.pop() if rates else None)


def sort_voices(
    stems: np.ndarray,
    groups: list[VoiceGroup],
    motion_rate: float,
    sample_rate: int,
    segment_seconds: float = 10.0,
) -> tuple[np.ndarray, VoiceSorter]:
    """:class:`VoiceSorter` over whole stems ``(K, samples)``: the sorted stems and the
    sorter (its owners and margins)."""
    sorter = VoiceSorter(groups, motion_rate, sample_rate, segment_seconds)
    return sorter.sort_whole(stems), sorter
