"""Scoring one system on one track: a row per stem, whole-signal values plus the protocol's."""

from __future__ import annotations

from typing import Any

import numpy as np

from vimss_cli.errors import InputError
from vimss_cli.eval.audio import native_rate
from vimss_cli.eval.metrics import ReferenceGram, bss_eval, bss_eval_sources, si_sdr
from vimss_cli.eval.tracks import Track

PROTOCOLS = ("museval", "segments")
#: The URMP papers' segment protocol.
SEGMENT_RATE = 11025
SEGMENT_SAMPLES = 65535
#: A segment whose RMS is below this (about -60 dBFS) counts as silent.
SILENCE_RMS = 1e-3

#: What each protocol's framewise values are (in ``results.json``).
PROTOCOL_TEXT = {
    "museval": "BSS Eval v4 images (museval), 1 s windows, median per stem, median over stems",
    "segments": (
        f"BSS Eval v3 sources on {SEGMENT_SAMPLES}-sample segments, silent segments skipped, "
        "mean and std over segments"
    ),
}


def _value(x: float) -> float | None:
    """A finite float rounded for reports, or ``None`` (undefined or infinite)."""
    return round(float(x), 4) if np.isfinite(x) else None


def _infinite(values: dict[str, float]) -> str | None:
    """Which of a stem's ``values`` are infinite and why, e.g. ``"SI-SDR, SDR_v4_median +inf
    (the estimate equals the reference)"``; ``None`` when all are finite or NaN."""
    plus = [key for key, value in values.items() if value == np.inf]
    minus = [key for key, value in values.items() if value == -np.inf]
    parts = []
    if plus:
        if any(key in ("SDR", "SDR_v4_median") for key in plus):
            why = "the estimate equals the reference"
        elif "SI-SDR" in plus:
            why = "the estimate is the reference times a gain"
        else:
            why = "no error of that kind"
        parts.append(f"{', '.join(plus)} +inf ({why})")
    if minus:
        parts.append(f"{', '.join(minus)} -inf (nothing of the reference in the estimate)")
    return "; ".join(parts) or None


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
    reference or estimate) are ``None``, with the reason under ``"undefined"``; infinite ones
    (a perfect estimate) are ``None`` too, named with the reason under ``"infinite"``. ``gram``
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
        raw = {
            "SDR": whole.sdr[k],
            "SIR": whole.sir[k],
            "SAR": whole.sar[k],
            "SI-SDR": sisdr[k],
        }
        if framewise is not None:
            assert framewise.isr is not None  # bss_eval's framewise scores are v4 images: ISR
            for metric, values in (
                ("SDR", framewise.sdr),
                ("SIR", framewise.sir),
                ("SAR", framewise.sar),
                ("ISR", framewise.isr),
            ):
                scored = values[k][~np.isnan(values[k])]  # museval's nanmedian over windows
                raw[f"{metric}_v4_median"] = np.median(scored) if scored.size else np.nan
        row: dict[str, Any] = {
            "piece": track.piece,
            "name": track.names[k],
            "instrument": track.instruments[k],
            "player": k + 1,
            "players": stems,
            "system": system,
            **{key: _value(value) for key, value in raw.items()},
        }
        if framewise is not None:
            row["windows"] = int((~np.isnan(framewise.sdr[k])).sum())
        if _silent(references[k]):
            row["undefined"] = "reference is silent"
        elif _silent(estimates[k]):
            row["undefined"] = "estimate is silent"
        infinite = _infinite(raw)
        if infinite is not None:
            row["infinite"] = infinite
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
    """Score each non-overlapping segment; skip a stem's segment where it is silent. A track
    shorter than one segment has none: its rows say so under ``"segments_undefined"``."""
    length = references.shape[1]
    if length < SEGMENT_SAMPLES:
        for row in rows:
            row["segments_undefined"] = f"shorter than one {SEGMENT_SAMPLES}-sample segment"
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
        if not 1000 <= rate <= 192000:  # 10 MHz once ran on past a minute, to no purpose
            raise InputError(f"--rate must be between 1000 and 192000 Hz, got {rate}")
        return rate
    return SEGMENT_RATE if protocol == "segments" else native_rate(tracks[0])


def check_segments_score_something(protocol: str, rate: int, tracks: list[Track]) -> None:
    """:class:`InputError` when the ``segments`` protocol would score nothing: every piece
    (its first reference) is shorter than one :data:`SEGMENT_SAMPLES`-sample segment at
    ``rate``. A table of n/a with a zero exit hid this behind ``-q``."""
    if protocol != "segments" or not tracks:
        return
    from vimss_cli.media import probe

    seconds = SEGMENT_SAMPLES / rate
    for track in tracks:  # one long enough (or of unknown length) is enough
        length = probe(track.references[0]).duration
        if length is None or round(length * rate) >= SEGMENT_SAMPLES:
            return
    raise InputError(
        f"every piece is shorter than one {SEGMENT_SAMPLES}-sample segment ({seconds:.2f} s "
        f"at {rate} Hz), so the segments protocol scores none of them; use "
        "--protocol museval"
    )
