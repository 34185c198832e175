"""Music for the generator: music21 corpus works, splits by work, ensembles and part mapping.

A *work* groups the corpus files that belong together (the movements of one quartet, the
chorales of one cantata), so the train/valid/test splits, decided by a hash of the work id,
never share music. An *excerpt* is a stretch of one file with ``n`` monophonic parts, each
given to a URMP instrument and moved by whole octaves into that instrument's range.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from vimss_cli.errors import InputError
from vimss_cli.instruments import SOUNDING_RANGES

SPLITS: tuple[str, ...] = ("train", "valid", "test")

#: Corpus files larger than this take many seconds to parse (whole multi-movement scores).
MAX_SCORE_BYTES = 250_000

#: The instruments' sounding MIDI ranges (:data:`vimss_cli.instruments.SOUNDING_RANGES`,
#: under the name the generator's code and tests use).
RANGES = SOUNDING_RANGES

#: General MIDI program of each instrument (saxophone: alto; program_for picks by register).
PROGRAMS: dict[str, int] = {
    "vn": 40,
    "va": 41,
    "vc": 42,
    "db": 43,
    "fl": 73,
    "ob": 68,
    "cl": 71,
    "bn": 70,
    "sax": 65,
    "tpt": 56,
    "hn": 60,
    "tbn": 57,
    "tba": 58,
}

#: Saxophones by register: (highest mean pitch of a part, General MIDI program). A low part
#: (the tenor voice, which Bach10's saxophone plays) is played by a tenor saxophone, a high
#: one by a soprano; URMP's "sax" covers the family.
SAXOPHONES: tuple[tuple[float, int], ...] = ((57.0, 66), (70.0, 65), (128.0, 64))


def program_for(code: str, pitches: list[int]) -> int:
    """The General MIDI program that plays a part of ``code`` with these (sounding) pitches:
    :data:`PROGRAMS`, except that a saxophone part takes the saxophone of its register."""
    if code != "sax" or not pitches:
        return PROGRAMS[code]
    mean = float(np.mean(pitches))
    return next(program for highest, program in SAXOPHONES if mean < highest)


#: URMP's 44 pieces hold 11 duets, 12 trios, 14 quartets and 7 quintets.
SIZE_WEIGHTS: dict[int, int] = {2: 11, 3: 12, 4: 14, 5: 7}

#: Ensembles in track order (left to right in the video), like those URMP recorded:
#: same-instrument pairs and mixed strings, winds and brass.
ENSEMBLES: dict[int, tuple[tuple[str, ...], ...]] = {
    2: (
        ("vn", "vn"),
        ("fl", "fl"),
        ("tpt", "tpt"),
        ("sax", "sax"),
        ("vn", "vc"),
        ("fl", "cl"),
        ("ob", "vc"),
        ("tpt", "sax"),
        ("vn", "fl"),
        ("cl", "bn"),
        ("va", "vc"),
    ),
    3: (
        ("vn", "vn", "vc"),
        ("vn", "vn", "va"),
        ("fl", "fl", "cl"),
        ("vn", "fl", "cl"),
        ("cl", "vn", "vc"),
        ("tpt", "vn", "vc"),
        ("tpt", "tpt", "tbn"),
        ("fl", "ob", "bn"),
        ("sax", "sax", "sax"),
        ("vn", "va", "vc"),
    ),
    4: (
        ("vn", "vn", "va", "vc"),
        ("tpt", "tpt", "hn", "tbn"),
        ("fl", "ob", "cl", "bn"),
        ("sax", "sax", "sax", "sax"),
        ("vn", "vn", "va", "sax"),
        ("fl", "cl", "tpt", "sax"),
        ("tpt", "tpt", "tbn", "tba"),
        ("vn", "fl", "cl", "vc"),
    ),
    5: (
        ("vn", "vn", "va", "vc", "db"),
        ("tpt", "tpt", "hn", "tbn", "tba"),
        ("fl", "ob", "cl", "hn", "bn"),
        ("vn", "vn", "va", "vc", "vc"),
        ("fl", "cl", "tpt", "sax", "tbn"),
    ),
}

#: Corpus composers used, with the weight of each group when a work is drawn.
COMPOSER_WEIGHTS: dict[str, float] = {
    "bach": 0.3,
    "beethoven": 0.1,
    "haydn": 0.05,
    "mozart": 0.1,
    "corelli": 0.02,
    "monteverdi": 0.2,
    "palestrina": 0.23,
}


#: Works left out of every split, because real recordings of them choose and check the
#: models: the ten chorales of Bach10 (Duan, Pardo and Zhang 2010), whose recordings are
#: ``../shared/realval/bach10``. A model trained on renders of them would be measured on music
#: it already knows. 09 "Jesus Christus, unser Heiland" is either of BWV 363 and 364 (the same
#: words), so both are left out.
REAL_VALIDATION_WORKS: frozenset[str] = frozenset(
    f"bach/bwv{number}" for number in (255, 256, 274, 275, 296, 297, 326, 327, 363, 364, 385)
)


@dataclass(frozen=True)
class Work:
    """A corpus file and the musical work it belongs to."""

    path: str  # corpus-relative, e.g. "bach/bwv66.6.mxl"
    work_id: str  # e.g. "bach/bwv66"
    composer: str

    @property
    def title(self) -> str:
        """A URMP-safe title (letters and digits only), e.g. ``BachBwv66n6``."""
        stem = self.path.rsplit(".", 1)[0].replace(".", "n")
        words = re.split(r"[^A-Za-z0-9]+", stem)
        return "".join(word[:1].upper() + word[1:] for word in words if word)[:40]


@dataclass(frozen=True)
class Note:
    """One note in score time (quarter lengths from the excerpt start), sounding MIDI pitch."""

    onset: float
    duration: float
    pitch: int


@dataclass(frozen=True)
class Excerpt:
    """Parts of one excerpt, already mapped to instruments (in track order)."""

    work: Work
    start_quarter: float
    length_quarters: float
    instruments: tuple[str, ...]
    parts: tuple[tuple[Note, ...], ...]
    part_names: tuple[str, ...]
    transpositions: tuple[int, ...]  # semitones applied to each part (multiples of 12)
    by_register: bool = True  # False: parts given in a random order (register_shuffle)


def work_id(corpus_path: str) -> str:
    """The work a corpus file belongs to: movements and numbered pieces share one id."""
    parts = corpus_path.split("/")
    composer, stem = parts[0], parts[-1].rsplit(".", 1)[0]
    if len(parts) >= 3:
        return f"{composer}/{parts[1]}"
    if composer == "bach":
        return f"bach/{stem.split('.')[0]}"
    if composer == "palestrina":
        return "palestrina/" + "_".join(stem.split("_")[:2])  # Credo_97_a..d: one Credo
    return f"{composer}/{stem}"


def split_of(work: str) -> str:
    """The split of a work id: 80 % train, 10 % valid, 10 % test, fixed by a hash."""
    bucket = int(hashlib.sha256(work.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 9 else "valid" if bucket == 8 else "train"


@lru_cache(maxsize=1)
def corpus_works() -> tuple[Work, ...]:
    """Every usable corpus file: MusicXML or Humdrum scores of a bounded size, deduplicated."""
    from music21 import corpus

    works: dict[str, Work] = {}
    for composer in COMPOSER_WEIGHTS:
        for full in corpus.getComposer(composer):
            full = Path(full)
            if full.suffix not in (".mxl", ".xml", ".krn") or full.stat().st_size > MAX_SCORE_BYTES:
                continue
            relative = str(full).split("/corpus/", 1)[1]
            key = relative.rsplit(".", 1)[0]
            if key in works and relative.endswith(".krn"):
                continue  # the MusicXML version of the same file is preferred
            works[key] = Work(relative, work_id(relative), composer)
    return tuple(sorted(works.values(), key=lambda w: w.path))


def works_for_split(split: str) -> list[Work]:
    """The corpus files whose work falls in ``split``, without ``REAL_VALIDATION_WORKS``."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return [
        work
        for work in corpus_works()
        if split_of(work.work_id) == split and work.work_id not in REAL_VALIDATION_WORKS
    ]


def monophonic_notes(part: object) -> list[Note]:
    """The part's notes in quarter lengths, ties merged, chords reduced to their top note,
    overlaps cut so that one note sounds at a time."""
    raw: dict[float, list[float]] = {}  # onset -> [duration, pitch]
    open_ties: dict[int, float] = {}  # pitch -> onset of the note a tie continues
    for element in part.flatten().notes:  # type: ignore[attr-defined]
        onset = float(element.offset)
        length = float(element.quarterLength)
        pitches = [p.midi for p in element.pitches]
        if not pitches or length <= 0:
            continue
        top = max(pitches)
        tie = element.tie.type if element.tie is not None else None
        if tie in ("continue", "stop") and top in open_ties and open_ties[top] in raw:
            first = open_ties[top]
            raw[first][0] = onset + length - first
            if tie == "stop":
                del open_ties[top]
            continue
        if onset not in raw or top > raw[onset][1]:
            raw[onset] = [length, top]
        if tie == "start":
            open_ties[top] = onset
    onsets = sorted(raw)
    notes = []
    for index, onset in enumerate(onsets):
        duration, pitch = raw[onset]
        if index + 1 < len(onsets):
            duration = min(duration, onsets[index + 1] - onset)
        notes.append(Note(onset, duration, int(pitch)))
    return notes


def octave_shift(pitches: list[int], low: int, high: int) -> int:
    """Whole-octave transposition that puts the most notes in ``[low, high]``; among equals
    the smallest shift, then the one centring the part best."""
    centre = (low + high) / 2
    mean = float(np.mean(pitches))

    def quality(shift: int) -> tuple[int, int, float]:
        inside = sum(low <= p + shift <= high for p in pitches)
        return inside, -abs(shift), -abs(mean + shift - centre)

    return max((12 * octaves for octaves in range(-4, 5)), key=quality)


def fold_into_range(pitch: int, low: int, high: int) -> int:
    """Move a single pitch by octaves until it lies in ``[low, high]``."""
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


def assign_parts(
    parts: list[list[Note]], instruments: tuple[str, ...], sources: list[int] | None = None
) -> tuple[list[list[Note]], list[int], list[int]]:
    """Give the parts to the instruments (track order), by register unless ``sources`` says
    which part each track plays.

    By register, the highest-sounding instrument gets the highest part, and so on; each part
    is moved by octaves into its instrument's range. Returns, per track, the notes, the shift
    in semitones and the index of the source part.
    """
    if sources is None:
        tracks = sorted(range(len(instruments)), key=lambda j: -sum(RANGES[instruments[j]]))
        highest_first = sorted(
            range(len(parts)), key=lambda i: -float(np.mean([n.pitch for n in parts[i]]))
        )
        sources = [0] * len(instruments)
        for track, source in zip(tracks, highest_first, strict=True):
            sources[track] = source
    result: list[list[Note]] = []
    shifts: list[int] = []
    for track, source in enumerate(sources):
        low, high = RANGES[instruments[track]]
        shift = octave_shift([n.pitch for n in parts[source]], low, high)
        result.append(
            [
                Note(n.onset, n.duration, fold_into_range(n.pitch + shift, low, high))
                for n in parts[source]
            ]
        )
        shifts.append(shift)
    return result, shifts, list(sources)


def choose_ensemble(rng: np.random.Generator) -> tuple[str, ...]:
    """An ensemble in URMP's size proportions, uniformly among that size's ensembles."""
    sizes = list(SIZE_WEIGHTS)
    weights = np.array([SIZE_WEIGHTS[s] for s in sizes], dtype=float)
    size = sizes[int(rng.choice(len(sizes), p=weights / weights.sum()))]
    options = ENSEMBLES[size]
    return options[int(rng.integers(len(options)))]


#: Composers whose corpus files have five or more parts (madrigals, masses, cantatas).
MANY_PARTS = {"bach", "monteverdi", "palestrina"}


def _draw_work(rng: np.random.Generator, works: list[Work], size: int) -> Work:
    composers = sorted({w.composer for w in works})
    if size >= 5 and MANY_PARTS & set(composers):
        composers = sorted(MANY_PARTS & set(composers))
    weights = np.array([COMPOSER_WEIGHTS[c] for c in composers])
    composer = composers[int(rng.choice(len(composers), p=weights / weights.sum()))]
    candidates = [w for w in works if w.composer == composer]
    return candidates[int(rng.integers(len(candidates)))]


@lru_cache(maxsize=64)
def score_parts(path: str) -> list[tuple[str, list[Note]]]:
    """Name and monophonic notes of every part of a corpus file (parsed once per process)."""
    from music21 import corpus

    score = corpus.parse(path)
    return [
        (part.partName or f"Part {i + 1}", monophonic_notes(part))
        for i, part in enumerate(score.parts)
    ]


def choose_excerpt(
    rng: np.random.Generator,
    works: list[Work],
    instruments: tuple[str, ...],
    length_quarters: float,
    min_notes: int = 4,
    attempts: int = 40,
    register_shuffle: float = 0.0,
) -> Excerpt:
    """Draw a work with enough parts and an excerpt where every chosen part plays.

    With probability ``register_shuffle`` the parts go to the instruments in a random order
    instead of by register (each still moved by octaves into its instrument's range), so
    that no instrument is always the highest or the lowest voice. At 0 no extra number is
    drawn: the excerpts are those of a run without the option.

    Raises :class:`InputError` when no work of the list fits after ``attempts`` draws.
    """
    size = len(instruments)
    for _ in range(attempts):
        work = _draw_work(rng, works, size)
        parts = [(name, notes) for name, notes in score_parts(work.path) if len(notes) >= min_notes]
        if len(parts) < size:
            continue
        end = max(n.onset + n.duration for _, notes in parts for n in notes)
        for _ in range(6):
            latest = max(0.0, end - length_quarters)
            start = float(np.floor(rng.uniform(0, latest + 1e-9)))
            chosen = sorted(rng.choice(len(parts), size=size, replace=False).tolist())
            cut = [_cut(parts[i][1], start, length_quarters) for i in chosen]
            if all(len(notes) >= min_notes for notes in cut):
                shuffled = register_shuffle > 0 and bool(rng.random() < register_shuffle)
                order = rng.permutation(size).tolist() if shuffled else None
                mapped, shifts, sources = assign_parts(cut, instruments, order)
                return Excerpt(
                    work=work,
                    start_quarter=start,
                    length_quarters=min(length_quarters, end - start),
                    instruments=instruments,
                    parts=tuple(tuple(notes) for notes in mapped),
                    part_names=tuple(parts[chosen[i]][0] for i in sources),
                    transpositions=tuple(shifts),
                    by_register=not shuffled,
                )
    raise InputError(
        f"no corpus work with {size} parts of at least {min_notes} notes each in "
        f"{length_quarters:g} quarter notes found in {attempts} draws (a longer --seconds, "
        "or fewer players, leaves more to choose from)"
    )


def _cut(notes: list[Note], start: float, length: float) -> list[Note]:
    """Notes starting in ``[start, start + length)``, re-timed from ``start``, cut at the end."""
    out = []
    for note in notes:
        if start <= note.onset < start + length:
            onset = note.onset - start
            out.append(Note(onset, min(note.duration, length - onset), note.pitch))
    return out
