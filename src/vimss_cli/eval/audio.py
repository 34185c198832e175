"""A track's audio at the evaluation rate: read (libsndfile, else ffmpeg), resampled, and
fitted to the references' length."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from vimss_cli.errors import InputError, MediaError, VimssError
from vimss_cli.eval.tracks import Track

#: Length differences up to this many seconds are reconciled (zero-padded or cut).
LENGTH_TOLERANCE_SECONDS = 1.0
#: A mixture file matched worse than this (dB, energy over the residual) by its references'
#: best-weighted sum is noted: an AuMix replaced by another recording was scored without a
#: word.
MIN_MIXTURE_MATCH_DB = 10.0


def _decode_with_ffmpeg(path: Path) -> tuple[np.ndarray, int, int]:
    """A file libsndfile cannot read (mp3, m4a...) as ffmpeg's mono downmix ``(N, 1)``
    float64, its rate and its channel count."""
    from vimss_cli.media import probe, read_audio

    try:
        info = probe(path)
        rate = info.audio_sample_rate
        if not rate:
            raise MediaError(f"cannot read {path} as audio: no audio stream")
        audio = read_audio(path, rate).astype(np.float64)[:, None]
        return audio, rate, info.audio_channels or 1
    except MediaError:
        raise
    except VimssError as error:
        raise MediaError(f"cannot read {path} as audio: {error}") from None


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    """An audio file as float64 mono ``(N,)`` (channels averaged) and its rate."""
    audio, rate, _ = read_downmix(path)
    return audio, rate


def read_downmix(path: Path) -> tuple[np.ndarray, int, int]:
    """An audio file as float64 mono ``(N,)`` (channels averaged), its rate and how many
    channels it has: libsndfile's formats directly, anything else ffmpeg decodes at the
    file's own rate."""
    try:
        audio, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
        channels = audio.shape[1]
    except Exception:  # libsndfile's errors carry no useful type: let ffmpeg try
        audio, rate, channels = _decode_with_ffmpeg(Path(path))
    if audio.shape[0] == 0:
        raise MediaError(f"{path} holds no audio samples")
    if not np.isfinite(audio).all():
        raise MediaError(f"{path} holds NaN or infinite samples")
    return audio.mean(axis=1), int(rate), channels


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


def read_at(path: Path, rate: int, what: str, notes: list[str]) -> np.ndarray:
    """``path`` as mono ``(N,)`` at ``rate`` (channels averaged: the scores are of mono
    signals), noting a downmix and a resampling in ``notes``."""
    audio, native, channels = read_downmix(path)
    if channels > 1:
        notes.append(f"{what} downmixed from {channels} channels to mono")
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
    signals = [read_at(p, rate, f"{track.piece}/{p.name}", notes) for p in track.references]
    length = max(signal.size for signal in signals)
    references = np.stack(
        [
            fit_length(s, length, rate, f"{track.piece}/{n}", notes)
            for s, n in zip(signals, track.names, strict=True)
        ]
    )
    if track.mixture is not None:
        what = f"{track.piece}/{track.mixture.name}"
        mixture = fit_length(read_at(track.mixture, rate, what, notes), length, rate, what, notes)
        match = mixture_match_db(mixture, references)
        if match < MIN_MIXTURE_MATCH_DB:
            notes.append(
                f"{what} is not the sum of its references (only {match:.1f} dB above what "
                "their best-weighted sum leaves out): is it this piece's mixture?"
            )
    else:
        mixture = references.sum(axis=0)
        notes.append(f"{track.piece}: no mixture file; the sum of the references is used")
    return TrackAudio(references=references, mixture=mixture, rate=rate, notes=notes)


def mixture_match_db(mixture: np.ndarray, references: np.ndarray) -> float:
    """How well ``mixture (N,)`` is a sum of ``references (K, N)``, each at its own best gain
    (least squares: a mix may set its players' levels): the mixture's energy over that of
    what the fit leaves, in dB. ``inf`` for a silent mixture or a perfect fit."""
    mixture = mixture.astype(np.float64)
    energy = float(np.dot(mixture, mixture))
    if energy == 0.0 or not references.any():
        return math.inf
    columns = references.astype(np.float64).T
    gains = np.linalg.lstsq(columns, mixture, rcond=None)[0]
    residual = mixture - columns @ gains
    left = float(np.dot(residual, residual))
    return math.inf if left == 0.0 else 10 * math.log10(energy / left)


def native_rate(track: Track) -> int:
    """The sample rate of a track's first reference."""
    try:
        return int(soundfile.info(str(track.references[0])).samplerate)
    except Exception as error:
        raise MediaError(f"cannot read {track.references[0]} as audio: {error}") from None
