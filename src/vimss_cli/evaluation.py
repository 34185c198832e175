"""Scoring separations: datasets, systems (model and baselines), protocols, aggregation.

A *track* is one piece: K reference stems, optionally its mixture, optionally K estimate
files. A *system* turns a track into K estimates: ``model`` (a :class:`~vimss_cli.api.
Separator` with one label query per player), the baselines ``mixture`` (the mixture as every
estimate: the lower bound), ``irm`` and ``ibm`` (oracle ideal ratio / binary STFT masks
applied to the mixture: upper references), or ``estimates`` (files given by the user).

Every stem gets whole-signal BSS Eval v3 ``bss_eval_sources`` values (``SDR``, ``SIR``,
``SAR``, as mir_eval computes them) and ``SI-SDR``. A protocol adds its own values:

* ``museval`` (SiSEC): BSS Eval v4 images per 1 s window, median per stem
  (``SDR_v4_median`` ...); summaries take the median over stems.
* ``segments`` (URMP papers): audio at 11025 Hz cut into non-overlapping segments of 65535
  samples; a segment is scored for a stem (v3 ``bss_eval_sources`` against the piece's other
  active references) unless its reference or estimate is silent there; summaries give the
  mean and standard deviation over all scored segments.

Nothing here prints; progress goes to an optional callback.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from vimss_cli.atomic import write_text_atomically
from vimss_cli.errors import InputError, MediaError, VimssError
from vimss_cli.instruments import INSTRUMENT_CODES
from vimss_cli.metrics import ReferenceGram, bss_eval, bss_eval_sources, si_sdr
from vimss_cli.progress import ProgressCallback
from vimss_cli.stem_names import StemTemplate
from vimss_cli.stem_writer import StemSetWriter
from vimss_cli.urmp import Piece, list_pieces

PROTOCOLS = ("museval", "segments")
BASELINES = ("mixture", "irm", "ibm")
DATASETS = ("urmp", "synth")
#: The URMP papers' segment protocol.
SEGMENT_RATE = 11025
SEGMENT_SAMPLES = 65535
#: A segment whose RMS is below this (about -60 dBFS) counts as silent.
SILENCE_RMS = 1e-3
#: Length differences up to this many seconds are reconciled (zero-padded or cut).
LENGTH_TOLERANCE_SECONDS = 1.0
#: STFT of the oracle masks: Hann window, 2048 bins, hop 512 (at the evaluation rate).
MASK_FFT = 2048
MASK_HOP = 512


@dataclass(frozen=True)
class Track:
    """One piece to score.

    Attributes:
        piece: the piece's name (URMP folder name, or the references folder's name).
        names: the reference file names, one per stem.
        instruments: URMP instrument code per stem, or ``None`` when unknown.
        references: reference paths ``(K,)``.
        mixture: the mixture path, or ``None`` (then the sum of the references is used).
        estimates: user estimate paths ``(K,)``, or ``None``.
        video: the piece's video (players left to right in track order), or ``None``.
    """

    piece: str
    names: tuple[str, ...]
    instruments: tuple[str | None, ...]
    references: tuple[Path, ...]
    mixture: Path | None = None
    estimates: tuple[Path, ...] | None = None
    video: Path | None = None

    @property
    def players(self) -> int:
        return len(self.references)

    def fingerprint(self) -> str:
        """Changes whenever an input file changes (size or modification time)."""
        paths = [
            *self.references,
            *(self.estimates or ()),
            *([self.mixture] if self.mixture else []),
        ]
        parts = []
        for path in paths:
            if path.exists():
                stat = path.stat()
                parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- datasets


def parse_pieces(text: str | None) -> list[int] | None:
    """``"01,13"`` -> ``[1, 13]``; ``None`` -> all pieces."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or not all(part.isdigit() for part in parts):
        raise InputError(f"--pieces expects comma-separated piece numbers like 01,13; got {text!r}")
    return [int(part) for part in parts]


_AUSEP = re.compile(r"^AuSep_(\d+)_([a-z]+)_(.+)\.[a-z0-9]+$")


def check_piece_files(piece: Piece) -> None:
    """Refuse a piece whose stems are missing or disagree with its folder name."""
    expected = {path.name for path in piece.stem_paths}
    found = {path.name for path in piece.folder.glob("AuSep_*.wav")}
    mixtures = {path.name for path in piece.folder.glob("AuMix_*.wav")}
    foreign = sorted((found - expected) | (mixtures - {piece.mix_path.name}))
    if foreign:
        raise InputError(
            f"piece folder {piece.folder.name} disagrees with its files: it names "
            f"{', '.join(piece.name.instruments)} but holds {', '.join(foreign)}"
        )
    missing = sorted(expected - found)
    if missing:
        raise InputError(f"piece {piece.folder.name} is missing stems: {', '.join(missing)}")


def urmp_tracks(root: Path, pieces: list[int] | None = None) -> list[Track]:
    """Tracks of a URMP-layout tree (real URMP or ``vimss data synth`` output)."""
    tracks = []
    for piece in list_pieces(Path(root), pieces):
        check_piece_files(piece)
        tracks.append(
            Track(
                piece=piece.folder.name,
                names=tuple(path.name for path in piece.stem_paths),
                instruments=piece.name.instruments,
                references=tuple(piece.stem_paths),
                mixture=piece.mix_path if piece.mix_path.is_file() else None,
                video=piece.video_path if piece.video_path.is_file() else None,
            )
        )
    return tracks


def _instrument_from_name(name: str) -> str | None:
    """``AuSep_1_vn_01_X.wav`` -> ``vn``; ``02_vc.wav`` -> ``vc``; else ``None``."""
    match = _AUSEP.match(name)
    if match:
        return match.group(2)
    tokens = re.split(r"[^a-z]+", Path(name).stem.lower())
    codes = [token for token in tokens if token in INSTRUMENT_CODES]
    return codes[0] if len(codes) == 1 else None


#: Audio files ``--references``/``--estimates`` folders may hold (libsndfile or ffmpeg reads them).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".m4a", ".opus")


def _audio_files(folder: Path) -> list[Path]:
    """The audio files of a folder, without URMP's mixture (``AuMix_*``), which is no stem."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("AuMix_")
    )


def _estimate_for(reference: Path, folder: Path) -> Path:
    """The estimate of one reference in ``folder``: the same file name, or for a URMP
    ``AuSep_<n>_<code>_*`` reference, ``vimss separate``'s ``<nn>_<code>`` (or
    ``<nn>_player``) in any audio format. The first candidate when none exists."""
    candidates = [folder / reference.name]
    match = _AUSEP.match(reference.name)
    if match:
        number, code = int(match.group(1)), match.group(2)
        for stem in (f"{number:02d}_{code}", f"{number:02d}_player"):
            candidates += [folder / f"{stem}{suffix}" for suffix in AUDIO_SUFFIXES]
    return next((c for c in candidates if c.is_file()), candidates[0])


def _estimate_folder(estimates: Path, piece: str) -> Path:
    """Where a piece's estimates are: ``ESTIMATES/<piece>``, or the folder ``vimss separate``
    made for the piece's mixture or video (``AuMix_<piece>``, ``Vid_<piece>``)."""
    for name in (piece, f"AuMix_{piece}", f"Vid_{piece}"):
        if (estimates / name).is_dir():
            return estimates / name
    return estimates / piece


def folder_tracks(references: Path, estimates: Path) -> list[Track]:
    """Estimates matched to references by file name (see :func:`_estimate_for`).

    Either both folders hold audio files directly (one track), or one subfolder per track.
    References may be a URMP piece folder (its one ``AuMix`` is the mixture the baselines use,
    not a stem) and estimates the folder ``vimss separate`` wrote, with no renaming.
    """
    references, estimates = Path(references), Path(estimates)
    for folder, option in ((references, "--references"), (estimates, "--estimates")):
        if not folder.is_dir():
            raise InputError(f"{option} is not a directory: {folder}")
    if _audio_files(references):
        pairs = [(references, estimates)]
    else:
        subfolders = sorted(p for p in references.iterdir() if p.is_dir() and _audio_files(p))
        pairs = [(sub, _estimate_folder(estimates, sub.name)) for sub in subfolders]
    if not pairs:
        raise InputError(f"no reference audio files in {references} or its subfolders")
    tracks = []
    for reference_folder, estimate_folder in pairs:
        reference_paths = _audio_files(reference_folder)
        estimate_paths = [_estimate_for(path, estimate_folder) for path in reference_paths]
        missing = [str(path) for path in estimate_paths if not path.is_file()]
        if missing:
            raise InputError(f"missing estimates for references: {', '.join(missing)}")
        names = tuple(path.name for path in reference_paths)
        mixtures = sorted(
            p
            for p in reference_folder.glob("AuMix_*")
            if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
        )
        tracks.append(
            Track(
                piece=reference_folder.name,
                names=names,
                instruments=tuple(_instrument_from_name(name) for name in names),
                references=tuple(reference_paths),
                estimates=tuple(estimate_paths),
                mixture=mixtures[0] if len(mixtures) == 1 else None,
            )
        )
    return tracks


# ---------------------------------------------------------------------------- audio


def _decode_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """``(N, 1)`` float64 and the rate of a file libsndfile cannot read (mp3, m4a...)."""
    from vimss_cli.media import probe, read_audio

    try:
        rate = probe(path).audio_sample_rate
        if not rate:
            raise MediaError(f"cannot read {path} as audio: no audio stream")
        return read_audio(path, rate).astype(np.float64)[:, None], rate
    except MediaError:
        raise
    except VimssError as error:
        raise MediaError(f"cannot read {path} as audio: {error}") from None


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    """An audio file as float64 mono ``(N,)`` (channels averaged) and its rate: libsndfile's
    formats directly, anything else ffmpeg decodes at the file's own rate."""
    try:
        audio, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    except Exception:  # libsndfile's errors carry no useful type: let ffmpeg try
        audio, rate = _decode_with_ffmpeg(Path(path))
    if audio.shape[0] == 0:
        raise MediaError(f"{path} holds no audio samples")
    if not np.isfinite(audio).all():
        raise MediaError(f"{path} holds NaN or infinite samples")
    return audio.mean(axis=1), int(rate)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling along the last axis (scipy's ``resample_poly``)."""
    if from_rate == to_rate:
        return audio
    from scipy.signal import resample_poly

    common = math.gcd(from_rate, to_rate)
    return resample_poly(audio, to_rate // common, from_rate // common, axis=-1)


def fit_length(
    audio: np.ndarray, length: int, rate: int, what: str, notes: list[str]
) -> np.ndarray:
    """Zero-pad or cut ``audio`` ``(..., N)`` to ``length``; note it, or refuse if too far off."""
    difference = audio.shape[-1] - length
    if difference == 0:
        return audio
    if abs(difference) > LENGTH_TOLERANCE_SECONDS * rate:
        raise InputError(
            f"{what} lasts {audio.shape[-1] / rate:.2f} s but its reference "
            f"{length / rate:.2f} s; lengths this different are not reconciled"
        )
    notes.append(
        f"{what}: {abs(difference)} samples {'longer' if difference > 0 else 'shorter'} than "
        f"the reference at {rate} Hz, {'cut' if difference > 0 else 'zero-padded'}"
    )
    if difference > 0:
        return audio[..., :length]
    padding = [(0, 0)] * (audio.ndim - 1) + [(0, -difference)]
    return np.pad(audio, padding)


def _read_at(path: Path, rate: int, what: str, notes: list[str]) -> np.ndarray:
    audio, native = read_mono(path)
    if native != rate:
        notes.append(f"{what} resampled from {native} Hz to {rate} Hz")
    return resample(audio, native, rate)


@dataclass
class TrackAudio:
    """A track's signals at the evaluation rate: references ``(K, N)``, mixture ``(N,)``."""

    references: np.ndarray
    mixture: np.ndarray
    rate: int
    notes: list[str] = field(default_factory=list)


def load_track(track: Track, rate: int) -> TrackAudio:
    """Read and resample a track's references and mixture, reconciling their lengths."""
    notes: list[str] = []
    signals = [_read_at(p, rate, f"{track.piece}/{p.name}", notes) for p in track.references]
    length = max(signal.size for signal in signals)
    references = np.stack(
        [
            fit_length(s, length, rate, f"{track.piece}/{n}", notes)
            for s, n in zip(signals, track.names, strict=True)
        ]
    )
    if track.mixture is not None:
        what = f"{track.piece}/{track.mixture.name}"
        mixture = fit_length(_read_at(track.mixture, rate, what, notes), length, rate, what, notes)
    else:
        mixture = references.sum(axis=0)
        notes.append(f"{track.piece}: no mixture file; the sum of the references is used")
    return TrackAudio(references=references, mixture=mixture, rate=rate, notes=notes)


def native_rate(track: Track) -> int:
    """The sample rate of a track's first reference."""
    try:
        return int(soundfile.info(str(track.references[0])).samplerate)
    except Exception as error:
        raise MediaError(f"cannot read {track.references[0]} as audio: {error}") from None


# ---------------------------------------------------------------------------- systems


def oracle_mask_estimates(references: np.ndarray, mixture: np.ndarray, kind: str) -> np.ndarray:
    """Oracle STFT masks on the mixture: references ``(K, N)``, mixture ``(N,)`` -> ``(K, N)``.

    ``irm``: ``|S_j|^2 / sum_i |S_i|^2`` (the Wiener-like power ratio); ``ibm``: 1 where
    source j is the loudest in the bin, else 0. Hann window of ``MASK_FFT``, hop ``MASK_HOP``.
    """
    import torch

    length = mixture.size
    window = torch.hann_window(MASK_FFT, dtype=torch.float64)

    def stft(signal: np.ndarray) -> torch.Tensor:
        return torch.stft(
            torch.from_numpy(np.ascontiguousarray(signal)),
            MASK_FFT,
            MASK_HOP,
            window=window,
            pad_mode="constant",
            return_complex=True,
        )

    sources = stft(references).abs()  # (K, F, T)
    if kind == "irm":
        power = sources**2
        masks = power / power.sum(dim=0, keepdim=True).clamp_min(1e-20)
    elif kind == "ibm":
        masks = torch.zeros_like(sources)
        masks.scatter_(0, sources.argmax(dim=0, keepdim=True), 1.0)
    else:
        raise ValueError(f"unknown oracle mask {kind!r}")
    masked = masks * stft(mixture).unsqueeze(0)
    return torch.istft(masked, MASK_FFT, MASK_HOP, window=window, length=length).numpy()


def baseline_estimates(system: str, audio: TrackAudio) -> np.ndarray:
    """The estimates ``(K, N)`` of a baseline system for one track."""
    if system == "mixture":
        return np.repeat(audio.mixture[None, :], audio.references.shape[0], axis=0)
    if system in ("irm", "ibm"):
        return oracle_mask_estimates(audio.references, audio.mixture, system)
    raise ValueError(f"unknown baseline {system!r}")


def model_queries(separator: Any, track: Track, mode: str, notes: list[str]) -> list[Any]:
    """One query per player: its label, plus appearance and motion from the video (``video``).

    With ``video``, the model's config decides what it takes (a label-only model gets labels).
    """
    from vimss_cli.conditioning import Query

    labels = list(track.instruments)
    if mode == "labels":
        return [Query(code) for code in labels]
    if track.video is None:
        raise InputError(f"piece {track.piece} has no video file for --queries video")
    from vimss_cli.vision.queries import PlayerPlan

    config = separator.model.config
    if not (config.appearance_dim or config.motion_channels):
        notes.append(f"{track.piece}: the model takes labels only; the video was not used")
    plan = PlayerPlan(track.video, labels, has_video=True)
    queries = plan.queries(config)
    notes.extend(f"{track.piece}: {note}" for note in plan.notes)
    return queries


def model_estimates(
    separator: Any, track: Track, audio: TrackAudio, queries: str = "labels"
) -> np.ndarray:
    """Separate the track's mixture with ``separator`` (one query per player).

    The mixture is read at the model's rate, separated, and the stems resampled to the
    evaluation rate and fitted to the references' length ``(K, N)``.
    """
    if track.mixture is None:
        raise InputError(f"piece {track.piece} has no mixture file to separate")
    player_queries = model_queries(separator, track, queries, audio.notes)
    model_rate = separator.sample_rate
    mixture, native = read_mono(track.mixture)
    mixture = resample(mixture, native, model_rate).astype(np.float32)
    stems = separator.separate_array(mixture, player_queries).astype(np.float64)
    stems = resample(stems, model_rate, audio.rate)
    what = f"{track.piece}: model output"
    return fit_length(stems, audio.references.shape[1], audio.rate, what, audio.notes)


def estimate_paths(track: Track, folder: Path) -> list[Path]:
    """Where ``--save-estimates`` puts a track's model stems: ``FOLDER/<piece>/NN_<code>.wav``,
    as ``vimss separate`` names them (so ``--estimates`` and ``vimss report`` read them)."""
    template = StemTemplate()
    return [
        template.path(Path(folder), track.piece, number, code or "player", "wav")
        for number, code in enumerate(track.instruments, start=1)
    ]


def check_estimates_free(tracks: list[Track], folder: Path, force: bool) -> None:
    """Refuse, before any work, estimates an earlier run saved (unless ``force``)."""
    from vimss_cli.api import check_outputs_free

    for track in tracks:
        check_outputs_free(
            estimate_paths(track, folder), force, StemTemplate().is_stem(track.piece)
        )


def save_model_estimates(
    track: Track, estimates: np.ndarray, rate: int, folder: Path, force: bool
) -> None:
    """Write the estimates ``(K, N)`` that were scored as float WAVs at ``rate``, atomically
    (all of the track's stems appear together, or none)."""
    paths = estimate_paths(track, folder)
    is_stem = StemTemplate().is_stem(track.piece)
    with StemSetWriter(paths, rate, "float32", overwrite=force, is_stem=is_stem) as writer:
        writer.write(estimates.astype(np.float32))


def user_estimates(track: Track, audio: TrackAudio) -> np.ndarray:
    """The track's estimate files at the evaluation rate, fitted to the references ``(K, N)``."""
    if track.estimates is None:
        raise ValueError(f"track {track.piece} has no estimate files")
    stems = []
    for path in track.estimates:
        what = f"{track.piece}/{path.name} (estimate)"
        signal = _read_at(path, audio.rate, what, audio.notes)
        stems.append(fit_length(signal, audio.references.shape[1], audio.rate, what, audio.notes))
    return np.stack(stems)


# ---------------------------------------------------------------------------- scoring


def _value(x: float) -> float | None:
    """A finite float rounded for reports, or ``None`` (undefined)."""
    return round(float(x), 4) if np.isfinite(x) else None


def _silent(signal: np.ndarray) -> bool:
    return not np.any(signal != 0)


def score_track(
    track: Track,
    system: str,
    references: np.ndarray,
    estimates: np.ndarray,
    rate: int,
    protocol: str,
    gram: ReferenceGram | None = None,
    segment_grams: dict[tuple[int, tuple[int, ...]], ReferenceGram] | None = None,
) -> list[dict[str, Any]]:
    """One result row per stem: whole-signal values plus the protocol's own.

    ``references`` and ``estimates`` are ``(K, N)`` at ``rate``. Undefined values (a silent
    reference or estimate) are ``None``, with the reason under ``"undefined"``. ``gram``
    (built from ``references``) saves refactorising it for every system of a track;
    ``segment_grams`` does the same for the segments protocol (filled as segments are met).
    """
    stems = references.shape[0]
    if protocol == "museval":
        whole, framewise = bss_eval(references, estimates, window=rate, gram=gram)
    else:
        whole, framewise = bss_eval_sources(references, estimates, gram=gram), None
    sisdr = si_sdr(references, estimates)
    rows = []
    for k in range(stems):
        row: dict[str, Any] = {
            "piece": track.piece,
            "name": track.names[k],
            "instrument": track.instruments[k],
            "player": k + 1,
            "players": stems,
            "system": system,
            "SDR": _value(whole.sdr[k]),
            "SIR": _value(whole.sir[k]),
            "SAR": _value(whole.sar[k]),
            "SI-SDR": _value(sisdr[k]),
        }
        if _silent(references[k]):
            row["undefined"] = "reference is silent"
        elif _silent(estimates[k]):
            row["undefined"] = "estimate is silent"
        if framewise is not None:
            for metric, values in (
                ("SDR", framewise.sdr),
                ("SIR", framewise.sir),
                ("SAR", framewise.sar),
                ("ISR", framewise.isr),
            ):
                scored = values[k][~np.isnan(values[k])]  # museval's nanmedian over windows
                row[f"{metric}_v4_median"] = _value(np.median(scored)) if scored.size else None
            row["windows"] = int((~np.isnan(framewise.sdr[k])).sum())
        rows.append(row)
    if protocol == "segments":
        _add_segment_scores(rows, references, estimates, segment_grams)
    return rows


def _add_segment_scores(
    rows: list[dict[str, Any]],
    references: np.ndarray,
    estimates: np.ndarray,
    grams: dict[tuple[int, tuple[int, ...]], ReferenceGram] | None = None,
) -> None:
    """Score each non-overlapping segment; skip a stem's segment where it is silent."""
    length = references.shape[1]
    grams = {} if grams is None else grams  # one per (segment, active stems), for every system
    values: list[dict[str, list[float]]] = [{"SDR": [], "SIR": [], "SAR": []} for _ in rows]
    for start in range(0, length - SEGMENT_SAMPLES + 1, SEGMENT_SAMPLES):
        ref = references[:, start : start + SEGMENT_SAMPLES]
        est = estimates[:, start : start + SEGMENT_SAMPLES]
        loud_ref = np.sqrt(np.mean(ref**2, axis=1)) >= SILENCE_RMS
        loud_est = np.sqrt(np.mean(est**2, axis=1)) >= SILENCE_RMS
        if not loud_ref.any():
            continue
        active = np.flatnonzero(loud_ref)
        key = (start, tuple(int(k) for k in active))
        if key not in grams:
            grams[key] = ReferenceGram(ref[active])
        scores = bss_eval_sources(ref[active], est[active], gram=grams[key])
        for position, k in enumerate(active):
            if not loud_est[k]:
                continue
            for metric, array in (("SDR", scores.sdr), ("SIR", scores.sir), ("SAR", scores.sar)):
                if np.isfinite(array[position]):
                    values[k][metric].append(round(float(array[position]), 4))
    for row, stem_values in zip(rows, values, strict=True):
        row["segments"] = stem_values
        for metric, listed in stem_values.items():
            row[f"{metric}_segments_mean"] = round(float(np.mean(listed)), 4) if listed else None


def evaluation_rate(protocol: str, rate: int | None, tracks: list[Track]) -> int:
    """``--rate`` if given; else 11025 Hz for ``segments``, the references' rate for ``museval``."""
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown --protocol {protocol!r}; choose {' or '.join(PROTOCOLS)}")
    if rate is not None:
        if rate < 1000:
            raise InputError(f"--rate must be at least 1000 Hz, got {rate}")
        return rate
    return SEGMENT_RATE if protocol == "segments" else native_rate(tracks[0])


# ---------------------------------------------------------------------------- running


@dataclass
class Evaluation:
    """The outcome of a run: one row per (track, system, stem), plus what was reconciled."""

    protocol: str
    rate: int
    systems: list[str]
    stems: list[dict[str, Any]]
    notes: list[str]
    model: str | None = None
    queries: str | None = None

    def describe_model(self) -> str:
        """``"model vimss-synth-cpu-v2, label queries"``, or ``""`` without a model."""
        if self.model is None:
            return ""
        mode = {"labels": "label", "video": "video"}.get(self.queries or "labels", self.queries)
        return f"model {self.model}, {mode} queries"

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "rate": self.rate,
            "systems": self.systems,
            "model": self.model,
            "queries": self.queries,
            "whole_signal": "BSS Eval v3 bss_eval_sources (mir_eval), 512-tap filters",
            "framewise": _PROTOCOL_TEXT[self.protocol],
            "stems": self.stems,
            "summary": summarize(self.stems, self.protocol),
            "notes": self.notes,
        }


_PROTOCOL_TEXT = {
    "museval": "BSS Eval v4 images (museval), 1 s windows, median per stem, median over stems",
    "segments": (
        f"BSS Eval v3 sources on {SEGMENT_SAMPLES}-sample segments, silent segments skipped, "
        "mean and std over segments"
    ),
}


class _Cache:
    """Per-(track, system) results as JSON files, so an interrupted run resumes."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def _path(self, track: Track, system: str) -> Path | None:
        return None if self.folder is None else self.folder / track.piece / f"{system}.json"

    def load(self, track: Track, system: str, key: str) -> dict[str, Any] | None:
        path = self._path(track, system)
        if path is None or not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return entry if entry.get("key") == key else None

    def store(self, track: Track, system: str, key: str, entry: dict[str, Any]) -> None:
        path = self._path(track, system)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps({"key": key, **entry}))


def evaluate(
    tracks: list[Track],
    systems: Iterable[str],
    protocol: str,
    rate: int,
    *,
    separator: Any | None = None,
    queries: str = "labels",
    cache_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    save_estimates: Path | None = None,
    force: bool = False,
) -> Evaluation:
    """Score every system on every track (cached per track and system under ``cache_dir``).

    ``separator`` (a :class:`~vimss_cli.api.Separator`) is needed for the ``model`` system,
    which it runs with ``queries`` (``labels`` or ``video``). ``save_estimates``: a folder
    where the model's stems are written as they were scored (:func:`estimate_paths`); the
    model then separates every track (the cache holds scores, not stems), and stems an earlier
    run saved there are refused before any work unless ``force``.

    ``progress({"stage", "piece": str, "system": str | None, "done": int, "total": int})``
    with the stages ``reading`` (a piece's references and mixture), ``separating`` (the model
    on a piece), ``scoring`` (one system on a piece), each as it starts, and ``scored`` when a
    system's scores of a piece are ready (computed or from the cache); ``done`` counts the
    pieces finished, this one included once it is ``scored``.
    """
    systems = list(systems)
    if save_estimates is not None and "model" in systems:
        check_estimates_free(tracks, save_estimates, force)
    cache = _Cache(cache_dir)
    model_name = None if separator is None else str(separator.loaded.path)
    model_key = None if separator is None else _model_key(separator, queries)
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
            key = json.dumps(
                [
                    track.fingerprint(),
                    system,
                    protocol,
                    rate,
                    _with_video(model_key, track, queries) if system == "model" else None,
                ]
            )
            saving = save_estimates is not None and system == "model"
            entry = None if saving else cache.load(track, system, key)
            if entry is None:
                if audio is None:
                    tell("reading", track, None, index)
                    audio = load_track(track, rate)
                    gram = ReferenceGram(audio.references)
                if system == "model":
                    tell("separating", track, system, index)
                estimates = _estimates(system, track, audio, separator, queries)
                if saving:
                    save_model_estimates(track, estimates, rate, save_estimates, force)
                tell("scoring", track, system, index)
                rows = score_track(
                    track, system, audio.references, estimates, rate, protocol, gram, segment_grams
                )
                entry = {"stems": rows, "notes": list(audio.notes)}
                cache.store(track, system, key, entry)
            stems.extend(entry["stems"])
            notes.extend(note for note in entry["notes"] if note not in notes)
            tell("scored", track, system, index + 1)
    for row in stems:
        if "undefined" in row:
            note = f"{row['piece']}/{row['name']}: {row['undefined']}; its metrics are undefined"
            if note not in notes:
                notes.append(note)
    return Evaluation(protocol, rate, systems, stems, _condense_notes(notes), model_name)


def _model_key(separator: Any, queries: str) -> list[Any]:
    """What the model's scores depend on: its weights and config (not the checkpoint's path,
    so a checkpoint retrained in place is scored again), its precision, and the queries."""
    from vimss_cli.checkpoint import weights_sha256

    model = separator.model
    return [
        weights_sha256(model.state_dict()),
        model.config.to_json(),
        separator.precision,
        queries,
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


def _condense_notes(notes: list[str]) -> list[str]:
    """One note per rate change listing a few of the files, instead of one note per file."""
    resampled: dict[tuple[str, str], list[str]] = {}
    kept = []
    for note in notes:
        match = _RESAMPLED.match(note)
        if match:
            resampled.setdefault((match.group(2), match.group(3)), []).append(match.group(1))
        else:
            kept.append(note)
    for (source, target), files in resampled.items():
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        count = f"{len(files)} file{'s' if len(files) > 1 else ''}"
        kept.insert(0, f"resampled from {source} Hz to {target} Hz: {count} ({shown})")
    return kept


def _estimates(
    system: str, track: Track, audio: TrackAudio, separator: Any | None, queries: str
) -> np.ndarray:
    if system == "model":
        return model_estimates(separator, track, audio, queries)
    if system == "estimates":
        return user_estimates(track, audio)
    return baseline_estimates(system, audio)


# ---------------------------------------------------------------------------- aggregation

#: The per-stem keys a protocol aggregates, and how.
PROTOCOL_METRICS = {
    "museval": ("SDR_v4_median", "SIR_v4_median", "SAR_v4_median", "ISR_v4_median"),
    "segments": ("SDR", "SIR", "SAR"),
}


def _groups(row: dict[str, Any]) -> list[tuple[str, str]]:
    instrument = row["instrument"] or Path(row["name"]).stem
    return [("overall", "all"), ("instrument", instrument), ("ensemble_size", str(row["players"]))]


def summarize(stems: list[dict[str, Any]], protocol: str) -> dict[str, Any]:
    """``summary[system][grouping][group] = {metric: value, ..., "stems": n}``.

    museval: median over stems of the per-stem window medians (undefined stems skipped).
    segments: mean and std over every scored segment of the group's stems.
    """
    pooled: dict[str, dict[str, dict[str, dict[str, list[float]]]]] = {}
    counts: dict[tuple[str, str, str], int] = {}
    for row in stems:
        for grouping, group in _groups(row):
            bucket = (
                pooled.setdefault(row["system"], {}).setdefault(grouping, {}).setdefault(group, {})
            )
            counts[(row["system"], grouping, group)] = (
                counts.get((row["system"], grouping, group), 0) + 1
            )
            if protocol == "museval":
                for key in (*PROTOCOL_METRICS["museval"], "SI-SDR"):
                    if row.get(key) is not None:
                        bucket.setdefault(key.removesuffix("_v4_median"), []).append(row[key])
            else:
                for metric, values in row.get("segments", {}).items():
                    bucket.setdefault(metric, []).extend(values)
                if row.get("SI-SDR") is not None:
                    bucket.setdefault("SI-SDR", []).append(row["SI-SDR"])
    summary: dict[str, Any] = {}
    for system, groupings in pooled.items():
        for grouping, groups in groupings.items():
            for group, metrics in groups.items():
                cell: dict[str, Any] = {"stems": counts[(system, grouping, group)]}
                for metric, values in metrics.items():
                    if protocol == "museval":
                        cell[metric] = round(float(np.median(values)), 4)
                    else:
                        cell[metric] = round(float(np.mean(values)), 4)
                        cell[f"{metric}_std"] = round(float(np.std(values)), 4)
                        cell[f"{metric}_count"] = len(values)
                summary.setdefault(system, {}).setdefault(grouping, {})[group] = cell
    return summary
