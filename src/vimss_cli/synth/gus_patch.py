"""Gravis UltraSound patches (``.pat``, as FreePats ships them) turned into sample-library notes.

A GUS patch holds one instrument as a few short recordings, each with the pitch it was
recorded at, the key range it covers and a sustain loop. :mod:`vimss_cli.synth.sampler`
plays held recordings, one file per note, so each recording is written as a note file of
that layout: decoded, its loop played until the note is long enough, and resampled from
its recorded pitch to the nearest equal-tempered note, whose name it takes.

Format (``GF1PATCH110``): a 129-byte file header, a 63-byte instrument header, a 47-byte layer
header, then per recording a 96-byte header and its data (8 or 16 bit, signed or unsigned).
Only the first instrument's first layer is read, as players of GUS patches do.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from vimss_cli.errors import InputError
from vimss_cli.synth.sampler import note_name

MAGIC = (b"GF1PATCH110\0", b"GF1PATCH100\0")
_FILE_HEADER = 129
_INSTRUMENT_HEADER = 63
_LAYER_HEADER = 47
_SAMPLE_HEADER = 96
#: Mode bits of a recording.
_SIXTEEN_BIT, _UNSIGNED, _LOOPING, _PING_PONG = 1, 2, 4, 8


@dataclass(frozen=True)
class PatchSample:
    """One recording of a patch.

    ``audio``: float32 ``[samples]`` in [-1, 1]; ``loop``: (start, end) sample indices of the
    sustain loop, or None; ``root_hz``: the pitch it was recorded at.
    """

    audio: np.ndarray
    rate: int
    root_hz: float
    loop: tuple[int, int] | None
    ping_pong: bool


def read_patch(path: Path) -> list[PatchSample]:
    """The recordings of a ``.pat`` file's first layer."""
    return parse_patch(path.read_bytes(), str(path))


def parse_patch(data: bytes, path: str) -> list[PatchSample]:
    """The recordings of a patch's first layer, from its bytes (``path`` names it in errors)."""
    if data[:12] not in MAGIC:
        raise InputError(f"{path}: not a GUS patch (no GF1PATCH header)")
    samples_at = _FILE_HEADER + _INSTRUMENT_HEADER
    if len(data) < samples_at + _LAYER_HEADER:
        raise InputError(f"{path}: truncated GUS patch")
    count = data[samples_at + 6]  # layer header: duplicate, layer, size (4), samples
    offset = samples_at + _LAYER_HEADER
    recordings = []
    for _ in range(count):
        header = data[offset : offset + _SAMPLE_HEADER]
        if len(header) < _SAMPLE_HEADER:
            raise InputError(f"{path}: truncated GUS patch")
        size, loop_start, loop_end, rate = struct.unpack_from("<IIIH", header, 8)
        (root,) = struct.unpack_from("<I", header, 30)  # after the key range's low and high
        modes = header[55]
        offset += _SAMPLE_HEADER
        raw = data[offset : offset + size]
        if len(raw) < size:
            raise InputError(f"{path}: truncated GUS patch")
        offset += size
        width = 2 if modes & _SIXTEEN_BIT else 1
        unsigned = bool(modes & _UNSIGNED)
        kind = ("<u2" if unsigned else "<i2") if width == 2 else ("u1" if unsigned else "i1")
        values = np.frombuffer(raw[: size - size % width], dtype=kind).astype(np.float32)
        full_scale = 2.0 ** (8 * width - 1)
        audio = (values - full_scale if unsigned else values) / full_scale
        loop = None
        if modes & _LOOPING and loop_end > loop_start:
            loop = (loop_start // width, min(loop_end // width, audio.size))
        recordings.append(
            PatchSample(
                audio=audio,
                rate=int(rate),
                root_hz=root / 1000.0,
                loop=loop,
                ping_pong=bool(modes & _PING_PONG),
            )
        )
    return recordings


def sustained(sample: PatchSample, seconds: float) -> np.ndarray:
    """The recording with its loop played until it lasts at least ``seconds``: float32
    ``[samples]``. A recording without a loop is returned as it is."""
    if sample.loop is None:
        return sample.audio
    start, end = sample.loop
    body = sample.audio[start:end]
    if body.size < 2:
        return sample.audio
    wanted = int(seconds * sample.rate)
    pieces = [sample.audio[:end]]
    length, forward = end, False
    while length < wanted:
        piece = body if forward or not sample.ping_pong else body[::-1]
        pieces.append(piece)
        length += piece.size
        forward = not forward
    return np.concatenate(pieces).astype(np.float32)


def nearest_note(hz: float) -> int:
    """The MIDI pitch nearest to ``hz``."""
    return round(69 + 12 * math.log2(hz / 440.0))


def to_exact_pitch(audio: np.ndarray, root_hz: float) -> tuple[np.ndarray, int]:
    """Resample ``audio`` (float32 ``[samples]``) from ``root_hz`` to its nearest equal-tempered
    note by linear interpolation; returns the audio and that note's MIDI pitch."""
    pitch = nearest_note(root_hz)
    ratio = 440.0 * 2.0 ** ((pitch - 69) / 12) / root_hz  # > 1: read faster, sound higher
    positions = np.arange(0.0, audio.size - 1, ratio)
    return np.interp(positions, np.arange(audio.size), audio).astype(np.float32), pitch


def write_instrument(
    recordings: list[PatchSample], folder: Path, seconds: float = 6.0
) -> list[str]:
    """Write each of a patch's recordings as ``folder/<note>.flac``, sustained to at least
    ``seconds``; two recordings of one note keep the first. Returns the note names written."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for sample in recordings:
        if sample.root_hz <= 0 or sample.rate <= 0 or sample.audio.size == 0:
            continue
        audio, pitch = to_exact_pitch(sustained(sample, seconds), sample.root_hz)
        name = note_name(pitch)
        if name in written:
            continue
        peak = float(np.max(np.abs(audio)))
        if peak > 0:
            audio = audio * (0.9 / peak)
        soundfile.write(folder / f"{name}.flac", audio, sample.rate)
        written.append(name)
    return written
