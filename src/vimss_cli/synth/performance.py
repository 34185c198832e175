"""Turning an excerpt into a performance: tempo, timing, dynamics; and the text/MIDI files.

Everything is drawn from the ``numpy`` generator handed in, so one seed gives one
performance. Players share the piece's tempo and rubato but each has its own lead or lag,
note-level timing jitter, articulation, dynamic level and crescendo/decrescendo curve.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vimss_cli.synth.scores import Excerpt, program_for

if TYPE_CHECKING:  # imported where used: mido is an optional dependency (``[data]``)
    import mido

#: Time step of the F0 annotation files, in seconds.
F0_HOP = 0.01
#: Seconds left at the end of every piece for releases and reverberation.
TAIL_SECONDS = 0.8
#: Time step of the expression (CC 11) curve, in seconds.
EXPRESSION_STEP = 0.1


@dataclass(frozen=True)
class PlayedNote:
    """A note as performed: times in seconds, sounding MIDI pitch, MIDI velocity."""

    onset: float
    duration: float
    pitch: int
    velocity: int

    @property
    def frequency(self) -> float:
        return 440.0 * 2.0 ** ((self.pitch - 69) / 12)


@dataclass(frozen=True)
class Vibrato:
    """A player's vibrato: a sine of ``rate`` Hz and ``depth`` cents that fades in after
    ``delay`` seconds of each note (played with the pitch wheel, written into the F0s)."""

    rate: float
    depth: float
    delay: float

    def cents(self, since_onset: np.ndarray) -> np.ndarray:
        """Pitch offset in cents at ``since_onset`` seconds into a note."""
        held = np.maximum(since_onset - self.delay, 0.0)
        return self.depth * np.clip(held / 0.15, 0.0, 1.0) * np.sin(2 * np.pi * self.rate * held)


#: Vibrato depth range (cents) by family: strings and winds use it, brass hardly.
VIBRATO_DEPTH: dict[str, tuple[float, float]] = {
    **dict.fromkeys(("vn", "va", "vc", "db"), (8.0, 30.0)),
    **dict.fromkeys(("fl", "ob", "cl", "bn", "sax"), (4.0, 18.0)),
    **dict.fromkeys(("tpt", "hn", "tbn", "tba"), (0.0, 6.0)),
}
#: Time step of the pitch-wheel messages that play the vibrato, in seconds.
BEND_STEP = 0.02
#: fluidsynth's default pitch-wheel range: +-2 semitones over +-8192.
BEND_RANGE_CENTS = 200.0


@dataclass(frozen=True)
class Performance:
    """What each player plays (track order) over ``seconds``, and how loudly over time."""

    seconds: float
    bpm: float
    players: tuple[tuple[PlayedNote, ...], ...]
    expression: tuple[np.ndarray, ...]  # CC 11 values every EXPRESSION_STEP seconds
    vibratos: tuple[Vibrato, ...]


def smooth_curve(
    rng: np.random.Generator, times: np.ndarray, slow: float, fast: float
) -> np.ndarray:
    """A smooth random curve in about [-1, 1]: three sines between ``slow`` and ``fast`` Hz."""
    curve = np.zeros_like(times, dtype=np.float64)
    for _ in range(3):
        frequency = rng.uniform(slow, fast)
        curve += np.sin(2 * np.pi * frequency * times + rng.uniform(0, 2 * np.pi))
    return curve / 3


def quarters_for(seconds: float, bpm: float) -> float:
    """How many quarter notes fill ``seconds`` (less the tail) at ``bpm``."""
    return max(1.0, (seconds - TAIL_SECONDS) * bpm / 60.0)


def perform(excerpt: Excerpt, bpm: float, seconds: float, rng: np.random.Generator) -> Performance:
    """Play ``excerpt`` at ``bpm`` (with rubato) for ``seconds``; see the module docstring."""
    grid = np.arange(0.0, excerpt.length_quarters + 8.0, 1 / 32)
    rubato = 1.0 + 0.05 * smooth_curve(rng, grid, 0.02, 0.15)
    seconds_per_step = 60.0 / (bpm * rubato) / 32
    clock = np.concatenate([[0.0], np.cumsum(seconds_per_step)[:-1]])
    last_onset = seconds - TAIL_SECONDS
    players = []
    expressions = []
    vibratos = []
    for instrument, notes in zip(excerpt.instruments, excerpt.parts, strict=True):
        lag = float(np.clip(rng.normal(0.0, 0.012), -0.03, 0.03))
        articulation = rng.uniform(0.8, 0.98)
        level = rng.uniform(55, 100)
        swing = rng.uniform(8, 22)
        ramp = rng.uniform(-12, 12)
        played = []
        for note in notes:
            start = float(np.interp(note.onset, grid, clock)) + lag + rng.normal(0.0, 0.008)
            stop = float(np.interp(note.onset + note.duration, grid, clock))
            start = max(0.0, start)
            if start >= last_onset:
                break
            duration = max(0.05, (stop - start) * articulation)
            duration = min(duration, last_onset + 0.4 - start)
            played.append([start, duration, note.pitch])
        for current, following in itertools.pairwise(played):
            current[1] = max(0.03, min(current[1], following[0] - current[0] - 0.01))
        onsets = np.array([p[0] for p in played])
        dynamics = level + swing * smooth_curve(rng, onsets, 0.03, 0.2)
        dynamics += ramp * onsets / max(seconds, 1e-6) + rng.normal(0.0, 4.0, size=len(onsets))
        velocities = np.clip(np.round(dynamics), 25, 127).astype(int)
        players.append(
            tuple(
                PlayedNote(round(s, 3), round(d, 3), int(p), int(v))
                for (s, d, p), v in zip(played, velocities, strict=True)
            )
        )
        times = np.arange(0.0, seconds, EXPRESSION_STEP)
        expression = 100 + 0.9 * swing * smooth_curve(rng, times, 0.03, 0.25)
        expressions.append(np.clip(np.round(expression), 40, 127).astype(int))
        low, high = VIBRATO_DEPTH[instrument]
        vibratos.append(
            Vibrato(rng.uniform(4.5, 6.5), rng.uniform(low, high), rng.uniform(0.1, 0.35))
        )
    return Performance(seconds, bpm, tuple(players), tuple(expressions), tuple(vibratos))


#: Silence between players laid end to end in one render file, in seconds (lets releases die).
RENDER_GAP = 3.0


def render_channel(index: int) -> int:
    """MIDI channel of the ``index``-th player in a render file (channel 10 is drums)."""
    return index if index < 9 else index + 1


@dataclass(frozen=True)
class RenderPart:
    """One player as fluidsynth plays it."""

    notes: tuple[PlayedNote, ...]
    expression: np.ndarray  # CC 11 every EXPRESSION_STEP seconds
    program: int  # General MIDI program
    vibrato: Vibrato | None = None


def write_render_midi(path: Path, players: list[RenderPart], seconds: float) -> None:
    """Players' performances end to end in one MIDI file with millisecond ticks.

    Player ``k`` plays on its own channel from
    ``k * (seconds + RENDER_GAP)``, so one fluidsynth run (one soundfont load) renders them
    all and each player's stem is the slice of the output at its offset.
    """
    import mido

    events: list[tuple[int, int, mido.Message]] = []
    for index, part in enumerate(players):
        notes, expression, program = part.notes, part.expression, part.program
        channel = render_channel(index)
        base = round(index * (seconds + RENDER_GAP) * 1000)
        events.append((base, 0, mido.Message("program_change", program=program, channel=channel)))
        for control, value in ((7, 100), (10, 64)):
            events.append(
                (
                    base,
                    0,
                    mido.Message("control_change", control=control, value=value, channel=channel),
                )
            )
        for step, value in enumerate(expression):
            tick = base + round(step * EXPRESSION_STEP * 1000)
            message = mido.Message("control_change", control=11, value=int(value), channel=channel)
            events.append((tick, 1, message))
        for note in notes:
            on = base + round(note.onset * 1000)
            off = base + round((note.onset + note.duration) * 1000)
            events.append(
                (
                    on,
                    3,
                    mido.Message(
                        "note_on", note=note.pitch, velocity=note.velocity, channel=channel
                    ),
                )
            )
            events.append(
                (off, 2, mido.Message("note_off", note=note.pitch, velocity=0, channel=channel))
            )
            if part.vibrato is not None:
                events.extend(_bend_events(part.vibrato, note, on, off, channel))
    events.sort(key=lambda event: (event[0], event[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=1_000_000, time=0))
    now = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    end = round(len(players) * (seconds + RENDER_GAP) * 1000)
    track.append(mido.MetaMessage("end_of_track", time=max(0, end - now)))
    midi = mido.MidiFile(type=0, ticks_per_beat=1000)
    midi.tracks.append(track)
    midi.save(str(path))


def _bend_events(
    vibrato: Vibrato, note: PlayedNote, on: int, off: int, channel: int
) -> list[tuple[int, int, mido.Message]]:
    """Pitch-wheel messages playing ``vibrato`` over one note (reset at its start)."""
    import mido

    ticks = np.arange(on, off, round(BEND_STEP * 1000))
    cents = vibrato.cents((ticks - on) / 1000.0)
    values = np.clip(np.round(cents / BEND_RANGE_CENTS * 8192), -8192, 8191).astype(int)
    return [
        (int(tick), 0, mido.Message("pitchwheel", pitch=int(value), channel=channel))
        for tick, value in zip(ticks, values, strict=True)
    ]


def write_score_midi(path: Path, excerpt: Excerpt, bpm: float) -> None:
    """The excerpt's score (as transposed for the instruments) at its nominal tempo."""
    import mido

    ticks = 480
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks)
    for channel, (instrument, notes) in enumerate(
        zip(excerpt.instruments, excerpt.parts, strict=True)
    ):
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=f"{channel + 1} {instrument}", time=0))
        if channel == 0:
            track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
        midi_channel = channel if channel < 9 else channel + 1
        program = program_for(instrument, [note.pitch for note in notes])
        track.append(mido.Message("program_change", program=program, channel=midi_channel))
        events = []
        for note in notes:
            on, off = round(note.onset * ticks), round((note.onset + note.duration) * ticks)
            events.append((on, 1, "note_on", note.pitch, 80))
            events.append((off, 0, "note_off", note.pitch, 0))
        events.sort()
        now = 0
        for tick, _, kind, pitch, velocity in events:
            track.append(
                mido.Message(
                    kind, note=pitch, velocity=velocity, channel=midi_channel, time=tick - now
                )
            )
            now = tick
        midi.tracks.append(track)
    midi.save(str(path))


def notes_text(notes: tuple[PlayedNote, ...]) -> str:
    """URMP ``Notes_`` lines: onset (s), frequency (Hz), duration (s), tab-separated."""
    return "".join(f"{n.onset:.3f}\t{n.frequency:.3f}\t{n.duration:.3f}\n" for n in notes)


def f0_text(notes: tuple[PlayedNote, ...], seconds: float, vibrato: Vibrato | None = None) -> str:
    """URMP ``F0s_`` lines: time (s), f0 (Hz; 0 where the player is silent), every F0_HOP s.

    The f0 is the note's equal-tempered frequency moved by the player's vibrato.
    """
    times = np.arange(0.0, seconds, F0_HOP)
    f0 = np.zeros_like(times)
    for note in notes:
        inside = (times >= note.onset) & (times < note.onset + note.duration)
        cents = vibrato.cents(times[inside] - note.onset) if vibrato else 0.0
        f0[inside] = note.frequency * 2.0 ** (cents / 1200)
    return "".join(f"{t:.3f}\t{f:.3f}\n" for t, f in zip(times, f0, strict=True))
