"""Real solo recordings shipped by Debian packages, as one-player URMP-layout pieces.

Synthetic stems come from soundfonts; these are real instruments played by real people, a
few seconds each, so the model hears real timbres during training (remixed with the
synthetic players like any other piece):

* gcompris-qt-data (GPL): ``instruments.rcc``, a Qt resource bundle holding short solo
  recordings of violin, cello, flute, clarinet, saxophone, trumpet, horn, trombone and tuba;
* tuxpaint-stamps-default (GPL-2): ``violin.ogg``, ``cello.ogg`` and ``bassoon.ogg`` beside the
  stamps.

The Qt resource format (``qres``): a header with the offsets of the tree, the data and the
names; tree nodes are 22 bytes (format 2 and 3) or 14 (format 1); a file's data is a 4-byte
size then the bytes (zlib-compressed after a 4-byte length when flag 1 is set).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile

from vimss_cli.atomic import atomic_path
from vimss_cli.errors import InputError, MissingDependencyError, OutputError
from vimss_cli.synth.resources import install_hint
from vimss_cli.urmp import PieceName

GCOMPRIS_RCC = Path("/usr/share/gcompris-qt/rcc/instruments.rcc")
#: the folder inside the bundle that holds the recordings
GCOMPRIS_FOLDER = "/activities/instruments/"
TUXPAINT_MUSIC = Path("/usr/share/tuxpaint/stamps/hobbies/music")

#: file name inside instruments.rcc -> instrument code
GCOMPRIS_SOLOS: dict[str, str] = {
    "violin.ogg": "vn",
    "cello.ogg": "vc",
    "flute_traversiere.ogg": "fl",
    "clarinet.ogg": "cl",
    "saxophone.ogg": "sax",
    "trumpet.ogg": "tpt",
    "horn.ogg": "hn",
    "trombone.ogg": "tbn",
    "tuba.ogg": "tba",
}
#: path under TUXPAINT_MUSIC -> instrument code
TUXPAINT_SOLOS: dict[str, str] = {
    "string/violin.ogg": "vn",
    "string/cello.ogg": "vc",
    "wind/bassoon.ogg": "bn",
}
#: peak level of a written solo (the training gain augmentation varies it further)
SOLO_PEAK = 0.5

#: What every real solo piece's title starts with (``NNN_RealSolo<Source><Name>_<inst>``):
#: training finds the real recordings among its pieces by it.
REAL_SOLO_TITLE = "RealSolo"


@dataclass(frozen=True)
class Solo:
    """One real recording: where it comes from, its instrument, and its encoded bytes."""

    source: str
    instrument: str
    data: bytes


def read_rcc(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(path inside the bundle, file bytes)`` for every file of a Qt ``.rcc`` bundle."""
    blob = path.read_bytes()
    if blob[:4] != b"qres":
        raise InputError(f"{path} is not a Qt resource bundle")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    node = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        length = struct.unpack(">H", blob[names + offset : names + offset + 2])[0]
        start = names + offset + 6
        return blob[start : start + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> Iterator[tuple[str, bytes]]:
        at = tree + index * node
        name_offset, flags = struct.unpack(">IH", blob[at : at + 6])
        name = name_at(name_offset) if index else ""
        here = f"{prefix}/{name}" if name else prefix
        if flags & 2:  # a directory
            count, first = struct.unpack(">II", blob[at + 6 : at + 14])
            for child in range(first, first + count):
                yield from walk(child, here)
            return
        offset = data + struct.unpack(">I", blob[at + 10 : at + 14])[0]
        size = struct.unpack(">I", blob[offset : offset + 4])[0]
        content = blob[offset + 4 : offset + 4 + size]
        if flags & 1:  # zlib, after the uncompressed length
            content = zlib.decompress(content[4:])
        yield here, content

    yield from walk(0, "")


def find_solos() -> list[Solo]:
    """The real solo recordings installed on this machine (raises if none is)."""
    solos = []
    if GCOMPRIS_RCC.is_file():
        for inner, content in read_rcc(GCOMPRIS_RCC):
            name = inner.rsplit("/", 1)[-1]
            if GCOMPRIS_FOLDER in inner and name in GCOMPRIS_SOLOS:
                solos.append(Solo(f"gcompris:{name}", GCOMPRIS_SOLOS[name], content))
    for relative, code in TUXPAINT_SOLOS.items():
        path = TUXPAINT_MUSIC / relative
        if path.is_file():
            solos.append(Solo(f"tuxpaint:{relative}", code, path.read_bytes()))
    if not solos:
        packages = ["gcompris-qt-data", "tuxpaint-stamps-default"]
        raise MissingDependencyError(f"no real solo recordings found; {install_hint(packages)}")
    return sorted(solos, key=lambda solo: solo.source)


def decode(solo: Solo, sample_rate: int) -> np.ndarray:
    """The recording as mono float32 ``(N,)`` at ``sample_rate``, peak :data:`SOLO_PEAK`."""
    from scipy.signal import resample_poly

    audio, rate = soundfile.read(io.BytesIO(solo.data), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != sample_rate:
        common = gcd(rate, sample_rate)
        mono = resample_poly(mono, sample_rate // common, rate // common).astype(np.float32)
    peak = float(np.abs(mono).max())
    return (mono * (SOLO_PEAK / peak) if peak > 0 else mono).astype(np.float32)


def as_wav_samples(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """``(N,)`` float samples -> the ``(N,)`` int16 samples a 16-bit WAV of them holds."""
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, sample_rate, format="WAV", subtype="PCM_16")
    buffer.seek(0)
    return soundfile.read(buffer, dtype="int16")[0]


def holds(path: Path, samples: np.ndarray, sample_rate: int) -> bool:
    """Whether ``path`` is a WAV of exactly ``samples`` (int16) at ``sample_rate``: a file an
    earlier run wrote with the same settings."""
    try:
        data, rate = soundfile.read(str(path), dtype="int16")
    except (OSError, RuntimeError):  # unreadable, not a WAV (LibsndfileError)
        return False
    return rate == sample_rate and np.array_equal(data, samples)


@dataclass(frozen=True)
class SoloPieces:
    """What :func:`write_solo_pieces` did: every piece folder, and those it wrote to."""

    folders: list[Path]
    written: list[Path]


def write_solo_pieces(
    out_dir: Path, sample_rate: int, first_number: int = 901, force: bool = False
) -> SoloPieces:
    """Write each solo as a one-player piece ``NNN_RealSolo<Source><Name>_<inst>`` holding
    ``AuMix`` and ``AuSep_1`` (the same samples, 16-bit), each file whole or not at all.

    A file already there with exactly these samples at this rate (an earlier run's) is kept,
    so the command can be run again or resumed, as ``vimss data synth`` can. One that differs
    (another rate, a user's edit, a file cut short) is replaced only with ``force``; without
    it nothing is written.
    """
    planned: list[tuple[Path, Path, np.ndarray]] = []  # (piece folder, file, samples)
    for number, solo in enumerate(find_solos(), start=first_number):
        origin, name = solo.source.split(":")
        title = REAL_SOLO_TITLE + origin.capitalize() + Path(name).stem.title().replace("_", "")
        piece = PieceName(number, title, (solo.instrument,))
        folder = Path(out_dir) / piece.folder_name
        audio = decode(solo, sample_rate)
        planned += [
            (folder, folder / file, audio) for file in (piece.stem_name(1), piece.mix_name())
        ]
    folders = list(dict.fromkeys(folder for folder, _, _ in planned))
    for folder in folders:
        if os.path.lexists(folder) and not folder.is_dir():  # before anything is written
            raise OutputError(
                f"{folder} is there and is not a folder: move it, or give another --out"
            )
    to_write = []
    for _, path, audio in planned:
        if not os.path.lexists(path):
            to_write.append((path, audio))
        elif not holds(path, as_wav_samples(audio, sample_rate), sample_rate):
            if not force:
                raise OutputError(
                    f"{path} already exists and differs from what this command writes "
                    "(another --sample-rate, or edited): use --force to write it again, or "
                    "another --out folder"
                )
            to_write.append((path, audio))
    for path, audio in to_write:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            soundfile.write(str(temporary), audio, sample_rate, subtype="PCM_16")
    written = list(dict.fromkeys(path.parent for path, _ in to_write))
    return SoloPieces(folders, written)
