"""A sample library as an "instrument maker": real recorded notes, played from the score.

A soundfont is one maker's samples plus its synthesis rules. A *sample library* is a folder
of real recordings, one sustained note per file, which this module plays directly: each note
of a part takes the recording of the nearest pitch, moved to the note's pitch (and the
player's vibrato) by resampling, held for the note's length and released with a short fade.
Loudness follows the note's velocity and the part's expression curve, as fluidsynth does
with CC 11 (about 40 log10 of the value, in dB).

Layout (as the ``tonejs-instrument-*-mp3`` npm packages unpack)::

    LIBRARY/violin/A4.mp3      LIBRARY/violin/Cs5.mp3     LIBRARY/contrabass/E2.mp3 ...

An instrument folder is named by its URMP code (``vn``) or an English name
(:data:`FOLDER_NAMES`); a note file by its pitch name, ``s`` for a sharp (``Cs5``) and
``b`` for a flat (``Db5``); any format soundfile reads. Instruments the library lacks are
played by the other makers of the pool.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from vimss_cli.errors import InputError, MediaError
from vimss_cli.instruments import INSTRUMENT_CODES
from vimss_cli.synth.performance import EXPRESSION_STEP, PlayedNote, Vibrato

#: Folder names (besides the URMP codes themselves) and the instrument each holds.
FOLDER_NAMES: dict[str, str] = {
    "violin": "vn",
    "viola": "va",
    "cello": "vc",
    "contrabass": "db",
    "double-bass": "db",
    "flute": "fl",
    "oboe": "ob",
    "clarinet": "cl",
    "bassoon": "bn",
    "saxophone": "sax",
    "trumpet": "tpt",
    "french-horn": "hn",
    "horn": "hn",
    "trombone": "tbn",
    "tuba": "tba",
}
#: Seconds over which a note fades out after its end.
RELEASE_SECONDS = 0.12
#: Level every recording is brought to over its first second of sound, dBFS RMS.
SAMPLE_LEVEL_DB = -20.0
#: A recording starts where it first reaches this fraction of its peak.
ONSET_FRACTION = 0.05
AUDIO_SUFFIXES = (".mp3", ".wav", ".flac", ".ogg", ".aif", ".aiff")
_NOTE_NAME = re.compile(r"^([A-Ga-g])(s|#|b)?(-?\d)$")
_STEPS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_SHARP_NAMES = ("C", "Cs", "D", "Ds", "E", "F", "Fs", "G", "Gs", "A", "As", "B")


def note_pitch(name: str) -> int | None:
    """MIDI pitch of a note name (``A4`` = 69, ``Cs5`` = 73, ``Db5`` = 73); None if not one."""
    match = _NOTE_NAME.match(name)
    if match is None:
        return None
    letter, accidental, octave = match.groups()
    shift = {"s": 1, "#": 1, "b": -1, None: 0}[accidental]
    return 12 * (int(octave) + 1) + _STEPS[letter.lower()] + shift


def note_name(pitch: int) -> str:
    """The file name of a MIDI pitch in this layout: ``A4`` for 69, ``Cs5`` for 73."""
    return f"{_SHARP_NAMES[pitch % 12]}{pitch // 12 - 1}"


def instrument_of_folder(name: str) -> str | None:
    """The URMP code an instrument folder holds, or None."""
    lowered = name.lower()
    return lowered if lowered in INSTRUMENT_CODES else FOLDER_NAMES.get(lowered)


@functools.lru_cache(maxsize=16)
def _instrument_folders(root: Path) -> tuple[tuple[str, Path], ...]:
    """(URMP code, folder) for each instrument folder of note recordings under ``root``.
    Cached: every player's draw asks, and the folders do not change during a run."""
    found: dict[str, Path] = {}
    for folder in sorted(root.iterdir()):
        code = instrument_of_folder(folder.name) if folder.is_dir() else None
        if code is not None and code not in found and _note_files(folder):
            found[code] = folder
    return tuple(found.items())


@dataclass(frozen=True)
class SampleLibrary:
    """A folder of real per-note recordings, used like a soundfont (see the module doc)."""

    name: str
    path: Path
    package: str = "user"

    def instruments(self) -> dict[str, Path]:
        """URMP code -> the folder of its recordings, for the instruments the library has."""
        return dict(_instrument_folders(self.path))

    def plays(self, code: str) -> bool:
        """True when the library has recordings of instrument ``code``."""
        return code in self.instruments()


def _note_files(folder: Path) -> dict[int, Path]:
    """Pitch -> recording, for the files of ``folder`` named by a note."""
    files: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        pitch = note_pitch(path.stem) if path.suffix.lower() in AUDIO_SUFFIXES else None
        if pitch is not None:
            files.setdefault(pitch, path)
    return files


def open_library(path: Path) -> SampleLibrary:
    """A library folder named on the command line; raises :class:`InputError` if unusable."""
    library = SampleLibrary(path.name, path.resolve())
    if not library.instruments():
        raise InputError(
            f"{path} is a folder but holds no instrument folder of note recordings "
            "(e.g. violin/A4.mp3); see `vimss data synth --help`"
        )
    return library


def _prepare(samples: np.ndarray, rate: int) -> np.ndarray:
    """Trim the silence before the note and bring its first second to SAMPLE_LEVEL_DB."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak <= 0.0:
        raise MediaError("a sample-library recording is silent")
    first = int(np.argmax(np.abs(samples) >= ONSET_FRACTION * peak))
    start = max(0, first - round(0.01 * rate))
    note = samples[start:]
    body = note[:rate]
    rms = float(np.sqrt(np.mean(body.astype(np.float64) ** 2)))
    return (note * (10 ** (SAMPLE_LEVEL_DB / 20) / max(rms, 1e-9))).astype(np.float32)


@functools.lru_cache(maxsize=64)
def load_recordings(folder: Path, rate: int) -> tuple[tuple[int, np.ndarray], ...]:
    """(pitch, mono float32 recording at ``rate``) of every note file in ``folder``,
    trimmed and levelled; sorted by pitch. Cached: a worker loads each folder once."""
    import soxr

    recordings = []
    for pitch, path in sorted(_note_files(folder).items()):
        try:
            audio, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except (RuntimeError, soundfile.LibsndfileError) as error:
            raise MediaError(f"cannot read the recording {path}", str(error)) from None
        mono = audio.mean(axis=1)
        if file_rate != rate:
            mono = soxr.resample(mono, file_rate, rate).astype(np.float32)
        recordings.append((pitch, _prepare(mono, rate)))
    return tuple(recordings)


def _nearest(recordings: tuple[tuple[int, np.ndarray], ...], pitch: int) -> tuple[int, np.ndarray]:
    """The recording closest in pitch (the lower one on a tie: moving up keeps its length)."""
    return min(recordings, key=lambda item: (abs(item[0] - pitch), item[0]))


def _play_note(
    note: PlayedNote,
    recordings: tuple[tuple[int, np.ndarray], ...],
    vibrato: Vibrato | None,
    rate: int,
) -> np.ndarray:
    """One note: the nearest recording resampled to its pitch, held, then released."""
    source_pitch, source = _nearest(recordings, note.pitch)
    hold = max(1, round(note.duration * rate))
    release = round(RELEASE_SECONDS * rate)
    seconds = np.arange(hold + release, dtype=np.float64) / rate
    semitones = np.full(seconds.size, float(note.pitch - source_pitch))
    if vibrato is not None:
        semitones += vibrato.cents(seconds) / 100.0
    steps = 2.0 ** (semitones / 12.0)
    positions = np.concatenate(([0.0], np.cumsum(steps[:-1])))
    length = int(np.searchsorted(positions, source.size - 1))  # the recording may end first
    played = np.interp(positions[:length], np.arange(source.size), source)
    envelope = np.ones(hold + release)
    envelope[hold:] = np.linspace(1.0, 0.0, release, endpoint=False)
    envelope = envelope[:length]
    if 0 < length < hold + release:  # the recording ended first: fade its last moments
        tail = min(length, release)
        envelope[length - tail :] *= np.linspace(1.0, 0.0, tail)
    gain = (note.velocity / 127.0) ** 2
    return (played * envelope * gain).astype(np.float32)


def render_part(
    library: SampleLibrary,
    code: str,
    notes: tuple[PlayedNote, ...],
    expression: np.ndarray,
    vibrato: Vibrato | None,
    seconds: float,
    rate: int,
) -> np.ndarray:
    """One player's stem, mono float32 of ``round(seconds * rate)`` samples.

    ``expression`` holds CC 11 values every :data:`EXPRESSION_STEP` seconds, applied as an
    amplitude ``(value / 127) ** 2``.
    """
    folder = library.instruments().get(code)
    if folder is None:
        raise InputError(f"the sample library {library.path} has no {code} recordings")
    recordings = load_recordings(folder, rate)
    frames = round(seconds * rate)
    out = np.zeros(frames, dtype=np.float32)
    for note in notes:
        start = round(note.onset * rate)
        if start >= frames:
            continue
        sound = _play_note(note, recordings, vibrato, rate)[: frames - start]
        out[start : start + sound.size] += sound
    if len(expression):
        times = np.arange(frames) / rate
        steps = np.arange(len(expression)) * EXPRESSION_STEP
        level = np.interp(times, steps, np.asarray(expression, dtype=np.float64)) / 127.0
        out *= (level**2).astype(np.float32)
    return out
