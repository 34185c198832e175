"""Running an evaluation: every system on every track, cached per (track, system)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vimss_cli
from vimss_cli.api import NETWORK_LEVEL_VERSION
from vimss_cli.atomic import write_text_atomically
from vimss_cli.checkpoint import file_sha256
from vimss_cli.eval.audio import TrackAudio, load_track
from vimss_cli.eval.metrics import ReferenceGram
from vimss_cli.eval.scoring import PROTOCOL_TEXT, SEGMENT_SAMPLES, score_track
from vimss_cli.eval.summary import summarize
from vimss_cli.eval.systems import (
    check_estimates_free,
    check_videos,
    estimate_paths,
    resolve_queries,
    save_model_estimates,
    system_estimates,
)
from vimss_cli.eval.tracks import Track
from vimss_cli.note_classifier import load_note_classifier
from vimss_cli.pitch_voices import VOICE_LEAK
from vimss_cli.progress import ProgressCallback
from vimss_cli.soft_masks import HARMONIC_MASKS_VERSION


@dataclass
class Evaluation:
    """The outcome of a run: one row per (track, system, stem), plus what was reconciled;
    the name of the model scored and the queries it was given (``None`` without a model)."""

    protocol: str
    rate: int
    systems: list[str]
    stems: list[dict[str, Any]]
    notes: list[str]
    model: str | None = None
    queries: str | None = None
    #: whether soft masks refined the model's stems (``Separator.refine``)
    refined: bool | None = None
    #: whether those masks were harmonic (``Separator.harmonic``)
    harmonic: bool | None = None
    #: whether harmonic templates were blended into them (``Separator.templates``)
    templates: bool | None = None
    #: how a label-only model's stem of two players of one instrument was split
    #: (:func:`split_setting`); ``None`` for another model or none
    pitch_voices: str | None = None

    def describe_model(self) -> str:
        """``"model vimss-synth-cpu-v4, label queries, refined by soft masks"``, or ``""``
        without a model."""
        if self.model is None:
            return ""
        mode = {"labels": "label", "video": "video"}.get(self.queries or "labels", self.queries)
        how = "the network's own output"
        if self.refined:
            how = "refined by harmonic masks" if self.harmonic else "refined by soft masks"
            if self.harmonic and self.templates is False:
                how += " without templates"
        split = {"motion": ", pairs split by pitch and motion", "off": ", pairs not split"}
        pairs = split.get(self.pitch_voices or "", "")
        return f"model {self.model}, {mode} queries, {how}{pairs}"

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "rate": self.rate,
            "systems": self.systems,
            "model": self.model,
            "queries": self.queries,
            "refined": self.refined,
            "harmonic": self.harmonic,
            "templates": self.templates,
            "pitch_voices": self.pitch_voices,
            "whole_signal": "BSS Eval v3 bss_eval_sources (mir_eval), 512-tap filters",
            "framewise": PROTOCOL_TEXT[self.protocol],
            "stems": self.stems,
            "summary": summarize(self.stems, self.protocol),
            "notes": self.notes,
        }


#: What a cached entry's rows hold; raised when their keys change, so older entries are
#: scored again (the key also holds the vimss version).
CACHE_FORMAT = 2


class _Cache:
    """Per-(track, system) results as JSON files, so an interrupted run resumes."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def _path(self, track: Track, system: str) -> Path | None:
        return None if self.folder is None else self.folder / track.piece / f"{system}.json"

    def load(self, track: Track, system: str, key: str | None) -> dict[str, Any] | None:
        """The entry of ``system`` on ``track`` if it was stored under ``key`` (``None``:
        under any key), else ``None``."""
        path = self._path(track, system)
        if path is None or not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return entry if key is None or entry.get("key") == key else None

    def holds_saved_estimates(
        self, track: Track, system: str, key: str | None, paths: list[Path]
    ) -> bool:
        """Whether ``paths`` are the stems an earlier run saved when it scored ``system`` on
        ``track`` (``--save-estimates``): the cache entry (of ``key``; ``None``: of any key)
        records their digests and the files still have them, so a resumed run keeps them."""
        entry = self.load(track, system, key)
        if entry is None or not all(p.is_file() for p in paths):
            return False
        try:
            return entry.get("estimates_sha256") == [file_sha256(p) for p in paths]
        except OSError:  # unreadable: not kept (and refused as existing stems)
            return False

    def store(self, track: Track, system: str, key: str, entry: dict[str, Any]) -> None:
        path = self._path(track, system)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps({"key": key, **entry}))


def saved_estimates_to_keep(tracks: list[Track], folder: Path, cache_dir: Path | None) -> set[str]:
    """The pieces whose ``--save-estimates`` stems in ``folder`` an earlier, interrupted run
    into the same results folder saved and scored (its cache says so, whatever the model):
    checked again with the model's key by :func:`evaluate`, which keeps them."""
    return _pieces_with_saved_estimates(_Cache(cache_dir), tracks, folder, lambda track: None)


def _pieces_with_saved_estimates(
    cache: _Cache, tracks: list[Track], folder: Path, key_of: Callable[[Track], str | None]
) -> set[str]:
    """The pieces whose stems in ``folder`` the cache entry of ``key_of(track)`` (``None``:
    of any key) says an earlier run saved, unchanged since
    (:meth:`_Cache.holds_saved_estimates`)."""
    return {
        track.piece
        for track in tracks
        if cache.holds_saved_estimates(track, "model", key_of(track), estimate_paths(track, folder))
    }


def evaluate(
    tracks: list[Track],
    systems: Iterable[str],
    protocol: str,
    rate: int,
    *,
    separator: Any | None = None,
    queries: str = "labels",
    pitch_voices: bool | None = None,
    cache_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    save_estimates: Path | None = None,
    force: bool = False,
) -> Evaluation:
    """Score every system on every track (cached per track and system under ``cache_dir``).

    ``separator`` (a :class:`~vimss_cli.api.Separator`) is needed for the ``model`` system,
    which it runs with ``queries`` (``labels``, ``video``, or ``auto``: what the model takes,
    :func:`~.systems.resolve_queries`); ``pitch_voices``: how a label model's stem of two
    players of one instrument is split, as ``vimss separate`` takes it
    (:func:`~.systems.model_queries`). ``save_estimates``: a folder
    where the model's stems are written as they were scored (:func:`~.systems.estimate_paths`); the
    model then separates every track (the cache holds scores, not stems), and stems an earlier
    run saved there are refused before any work unless ``force``.

    ``progress({"stage", "piece": str, "system": str | None, "done": int, "total": int})``
    with the stages ``reading`` (a piece's references and mixture), ``separating`` (the model
    on a piece), ``scoring`` (one system on a piece), each as it starts, and ``scored`` when a
    system's scores of a piece are ready (computed or from the cache); ``done`` counts the
    pieces finished, this one included once it is ``scored``.
    """
    systems = list(systems)
    asked = queries
    queries = resolve_queries(queries, separator)
    if "model" in systems:
        check_videos(tracks, queries, asked)
    cache = _Cache(cache_dir)
    split = None if separator is None else split_setting(separator, pitch_voices, queries)
    model_key = None if separator is None else _model_key(separator, queries, split)

    def key_of(track: Track, system: str) -> str:
        return json.dumps(
            [
                vimss_cli.__version__,
                CACHE_FORMAT,
                track.fingerprint(),
                system,
                protocol,
                rate,
                _with_video(model_key, track, queries) if system == "model" else None,
            ]
        )

    # stems an interrupted run saved and scored are kept (resumed); any others are refused
    resumed: set[str] = set()
    if save_estimates is not None and "model" in systems:
        resumed = _pieces_with_saved_estimates(
            cache, tracks, save_estimates, lambda track: key_of(track, "model")
        )
        check_estimates_free(tracks, save_estimates, force, kept=resumed)
    stems: list[dict[str, Any]] = []
    notes: list[str] = []

    def tell(stage: str, track: Track, system: str | None, done: int) -> None:
        if progress is not None:
            event = {"piece": track.piece, "system": system, "done": done, "total": len(tracks)}
            progress({"stage": stage, **event})

    for index, track in enumerate(tracks):
        audio: TrackAudio | None = None
        gram: ReferenceGram | None = None
        segment_grams: dict[tuple[int, tuple[int, ...]], ReferenceGram] = {}
        for system in systems:
            key = key_of(track, system)
            saving = save_estimates is not None and system == "model" and track.piece not in resumed
            entry = None if saving else cache.load(track, system, key)
            if entry is None:
                if audio is None:
                    tell("reading", track, None, index)
                    audio = load_track(track, rate)
                    gram = ReferenceGram(audio.references)
                if system == "model":
                    tell("separating", track, system, index)
                estimates = system_estimates(system, track, audio, separator, queries, pitch_voices)
                saved: list[str] = []
                if saving:
                    assert save_estimates is not None  # saving says so
                    save_model_estimates(track, estimates, rate, save_estimates, force)
                    saved = [file_sha256(p) for p in estimate_paths(track, save_estimates)]
                tell("scoring", track, system, index)
                rows = score_track(
                    track, system, audio.references, estimates, rate, protocol, gram, segment_grams
                )
                entry = {"stems": rows, "notes": list(audio.notes)}
                if saved:  # so that a resumed run keeps these stems
                    entry["estimates_sha256"] = saved
                cache.store(track, system, key, entry)
            stems.extend(entry["stems"])
            notes.extend(note for note in entry["notes"] if note not in notes)
            tell("scored", track, system, index + 1)
    notes.extend(note for note in row_notes(stems, protocol, rate) if note not in notes)
    notes.extend(
        f"{track.piece}: {len(track.unmatched)} audio file(s) beside the estimates match no "
        f"reference and were not scored ({_listing(list(track.unmatched))})"
        for track in tracks
        if track.unmatched
    )
    model = None if separator is None else separator.loaded.name
    mode = None if separator is None else queries
    refined = None if separator is None else bool(getattr(separator, "refine", False))
    harmonic = None if separator is None else _harmonic(separator)
    return Evaluation(
        protocol,
        rate,
        systems,
        stems,
        _condense_notes(notes),
        model,
        mode,
        refined,
        harmonic,
        _templates(separator) if harmonic else None,
        split,
    )


def _harmonic(separator: Any) -> bool:
    """Whether ``separator`` refines its stems with harmonic masks."""
    return bool(getattr(separator, "refine", False) and getattr(separator, "harmonic", False))


def _templates(separator: Any) -> bool:
    """Whether ``separator``'s harmonic masks blend in harmonic templates."""
    return _harmonic(separator) and bool(getattr(separator, "templates", True))


def _listing(items: list[str], limit: int = 10) -> str:
    """``"a, b, c and 12 more"``: the first ``limit`` of ``items`` and how many more."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def row_notes(stems: list[dict[str, Any]], protocol: str, rate: int) -> list[str]:
    """Notes on values the rows leave out: undefined stems (a silent reference or estimate),
    museval windows voided for a whole piece, infinite values, pieces too short for a
    segment."""
    notes: list[str] = []
    infinite: dict[str, list[str]] = {}
    pieces: dict[tuple[str, str], list[dict[str, Any]]] = {}
    short: list[str] = []
    for row in stems:
        stem = f"{row['piece']}/{row['name']}"
        if row.get("undefined") == "estimate is silent":  # of this system only
            notes.append(f"{stem} ({row['system']}): estimate is silent; its metrics are undefined")
        elif "undefined" in row:
            notes.append(f"{stem}: {row['undefined']}; its metrics are undefined")
        if "infinite" in row:
            infinite.setdefault(row["infinite"], []).append(f"{stem} ({row['system']})")
        if "segments_undefined" in row and row["piece"] not in short:
            short.append(row["piece"])
        pieces.setdefault((row["piece"], row["system"]), []).append(row)
    if protocol == "museval":
        for (piece, system), rows in pieces.items():
            voided = [r["name"] for r in rows if r.get("windows") == 0 and "undefined" not in r]
            if not voided:
                continue
            silent = [
                f"the estimate of {r['name']}"
                if r["undefined"] == "estimate is silent"
                else f"the reference {r['name']}"
                for r in rows
                if "undefined" in r
            ]
            why = (
                f", and {' and '.join(silent)} {'is' if len(silent) == 1 else 'are'} silent"
                if silent
                else ", and every window of this piece holds one"
            )
            notes.append(
                f"{piece} ({system}): no 1 s window scored for {', '.join(voided)}, so no museval "
                "values: museval skips every window where any reference or estimate of the "
                f"piece is all zeros{why}"
            )
    for text, stems_of in infinite.items():
        notes.append(
            f"{text}: {_listing(stems_of)}; shown as n/a (null in JSON) and left out of the "
            "medians and means"
        )
    if short:
        seconds = SEGMENT_SAMPLES / rate
        notes.append(
            f"{len(short)} piece{'s' if len(short) > 1 else ''} shorter than one "
            f"{SEGMENT_SAMPLES}-sample segment ({seconds:.2f} s at {rate} Hz), left out of "
            f"the segments figures: {', '.join(short)}"
        )
    return list(dict.fromkeys(notes))


def split_setting(separator: Any, pitch_voices: bool | None, queries: str) -> str | None:
    """How ``separator``'s pairs of one instrument are split: ``None`` for a model that is not
    label-only (its network tells the players apart, or not at all), else ``"register"``
    (the default: register order, or a generated video's true keypoints), ``"motion"``
    (``--pitch-voices`` with ``video`` ``queries``: by the players' motion) or ``"off"``."""
    if not separator.model.config.label_only:
        return None
    if pitch_voices is False:
        return "off"
    return "motion" if pitch_voices and queries == "video" else "register"


def _model_key(separator: Any, queries: str, split: str | None = None) -> list[Any]:
    """What the model's scores depend on: its weights and config (not the checkpoint's path,
    so a checkpoint retrained in place is scored again), its precision, the queries and
    how pairs are split by pitch (:func:`split_setting`)."""
    from vimss_cli.checkpoint import weights_sha256

    model = separator.model
    return [
        weights_sha256(model.state_dict()),
        model.config.to_json(),
        separator.precision,
        queries,
        bool(getattr(separator, "refine", False)),
        _harmonic(separator),
        HARMONIC_MASKS_VERSION if _harmonic(separator) else None,
        load_note_classifier().digest if _harmonic(separator) else None,
        _templates(separator),
        NETWORK_LEVEL_VERSION,
        None if split in (None, "off") else [split, VOICE_LEAK],
    ]


def _with_video(model_key: list[Any] | None, track: Track, queries: str) -> list[Any] | None:
    """The model's key, plus the track's video's size and modification time for video
    queries (a video replaced in place is analysed again)."""
    if model_key is None or queries != "video" or track.video is None:
        return model_key
    if not track.video.exists():
        return [*model_key, None]
    stat = track.video.stat()
    return [*model_key, str(track.video), stat.st_size, stat.st_mtime_ns]


_RESAMPLED = re.compile(r"^(.*) resampled from (\d+) Hz to (\d+) Hz$")
_DOWNMIXED = re.compile(r"^(.*) downmixed from (\d+) channels to mono$")


def _condense_notes(notes: list[str]) -> list[str]:
    """One note per rate change, and one per channel count downmixed, listing a few of the
    files, instead of one note per file."""
    resampled: dict[tuple[str, str], list[str]] = {}
    downmixed: dict[str, list[str]] = {}
    kept = []
    for note in notes:
        if match := _RESAMPLED.match(note):
            resampled.setdefault((match.group(2), match.group(3)), []).append(match.group(1))
        elif match := _DOWNMIXED.match(note):
            downmixed.setdefault(match.group(2), []).append(match.group(1))
        else:
            kept.append(note)
    for channels, files in downmixed.items():
        kept.insert(
            0,
            f"downmixed from {channels} channels to mono before scoring (channels averaged, "
            f"so e.g. swapped channels go unseen): {_files(files)}",
        )
    for (source, target), files in resampled.items():
        kept.insert(0, f"resampled from {source} Hz to {target} Hz: {_files(files)}")
    return kept


def _files(files: list[str]) -> str:
    """``"5 files (a, b, c and 2 more)"``."""
    return f"{len(files)} file{'s' if len(files) > 1 else ''} ({_listing(files, 3)})"
