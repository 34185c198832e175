"""The URMP dataset layout: folder and file names, read and written in one place.

URMP (Li et al. 2018) stores one folder per piece, named ``NN_Name_inst1_inst2...``::

    01_Jupiter_vn_vc/
        AuMix_01_Jupiter_vn_vc.wav          the mixture
        AuSep_1_vn_01_Jupiter.wav           player 1's stem (j from 1, left to right)
        AuSep_2_vc_01_Jupiter.wav
        Notes_1_vn_01_Jupiter.txt           onset (s), frequency (Hz), duration (s) per line
        F0s_1_vn_01_Jupiter.txt             time (s), f0 (Hz) per line
        Sco_01_Jupiter_vn_vc.mid            the score
        Vid_01_Jupiter_vn_vc.mp4            the video, players side by side in track order

Real URMP and ``vimss data synth`` output share this layout, so every loader runs on both.
The rules of the layout (names, which files a piece holds) live here and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vimss_cli.errors import InputError
from vimss_cli.instruments import INSTRUMENT_CODES

#: What ``--dataset`` may name: URMP, or a tree ``vimss data synth`` made (the same layout).
DATASETS = ("urmp", "synth")

#: The manifest ``vimss data synth`` writes at the top of each generated tree.
SYNTH_MANIFEST_NAME = "vimss_synth.json"

#: A piece's kinds of file: how their names start, and the suffix URMP gives them.
FILE_KINDS: dict[str, tuple[str, str]] = {
    "mixture": ("AuMix_", ".wav"),
    "stems": ("AuSep_", ".wav"),
    "notes": ("Notes_", ".txt"),
    "f0s": ("F0s_", ".txt"),
    "score": ("Sco_", ".mid"),
    "video": ("Vid_", ".mp4"),
}
#: The true keypoints ``vimss data synth`` writes beside each video. Not a URMP file: a
#: real URMP piece has none, so no check asks for it.
POSE_PREFIX = "Pose_"
MIX_PREFIX = FILE_KINDS["mixture"][0]
VIDEO_PREFIX = FILE_KINDS["video"][0]

_FOLDER = re.compile(r"^(\d+)_([^_]+)_((?:[a-z]+_?)+)$")
_STEM_FILE = re.compile(r"^AuSep_(\d+)_([a-z]+)_(.+)\.[a-z0-9]+$")


def is_synth_manifest(document: object) -> bool:
    """Whether a parsed ``vimss_synth.json`` has the shape ``vimss data synth`` writes: an
    object holding its ``pieces``."""
    return isinstance(document, dict) and isinstance(document.get("pieces"), dict)


@dataclass(frozen=True)
class PieceName:
    """The identity of a piece, as its folder name states it."""

    number: int
    title: str
    instruments: tuple[str, ...]

    @property
    def piece_id(self) -> str:
        """``01_Jupiter``: the part shared by every file of the piece."""
        return f"{self.number:02d}_{self.title}"

    @property
    def folder_name(self) -> str:
        """``01_Jupiter_vn_vc``."""
        return "_".join((self.piece_id, *self.instruments))

    def mix_name(self) -> str:
        return f"AuMix_{self.folder_name}.wav"

    def stem_name(self, player: int) -> str:
        """``AuSep_<j>_<inst>_<NN>_<Title>.wav`` for player ``j`` (from 1)."""
        return f"AuSep_{player}_{self.instruments[player - 1]}_{self.piece_id}.wav"

    def notes_name(self, player: int) -> str:
        return f"Notes_{player}_{self.instruments[player - 1]}_{self.piece_id}.txt"

    def f0_name(self, player: int) -> str:
        return f"F0s_{player}_{self.instruments[player - 1]}_{self.piece_id}.txt"

    def score_name(self) -> str:
        return f"Sco_{self.folder_name}.mid"

    def video_name(self) -> str:
        return f"Vid_{self.folder_name}.mp4"

    def pose_name(self) -> str:
        """``Pose_<folder>.npz``: the players' true keypoints (generated pieces only)."""
        return f"{POSE_PREFIX}{self.folder_name}.npz"


def parse_folder_name(name: str) -> PieceName:
    """``"01_Jupiter_vn_vc"`` -> ``PieceName(1, "Jupiter", ("vn", "vc"))``.

    Raises :class:`InputError` when the name is not in URMP's form or names an unknown
    instrument.
    """
    match = _FOLDER.match(name)
    if not match:
        raise InputError(f"{name!r} is not a URMP piece folder name (NN_Name_inst1_inst2...)")
    number, title, codes = match.groups()
    instruments = tuple(code for code in codes.split("_") if code)
    unknown = [code for code in instruments if code not in INSTRUMENT_CODES]
    if unknown:
        raise InputError(f"piece folder {name!r} names unknown instruments {unknown}")
    return PieceName(int(number), title, instruments)


def parse_stem_file_name(name: str) -> tuple[int, str] | None:
    """``"AuSep_1_vn_01_Jupiter.wav"`` -> ``(1, "vn")`` (any audio suffix); ``None`` for a
    name not in that form."""
    match = _STEM_FILE.match(name)
    return None if match is None else (int(match.group(1)), match.group(2))


@dataclass(frozen=True)
class FileCheck:
    """Which of a piece's files are missing, and which files are named as a piece's files
    but not implied by its folder name (another piece's, or another number of players)."""

    missing: list[str]
    unexpected: list[str]


@dataclass(frozen=True)
class Piece:
    """A piece folder on disk with the paths its layout implies (they may be missing)."""

    folder: Path
    name: PieceName

    @property
    def players(self) -> int:
        return len(self.name.instruments)

    @property
    def mix_path(self) -> Path:
        return self.folder / self.name.mix_name()

    def stem_path(self, player: int) -> Path:
        return self.folder / self.name.stem_name(player)

    @property
    def stem_paths(self) -> list[Path]:
        return [self.stem_path(j) for j in range(1, self.players + 1)]

    def notes_path(self, player: int) -> Path:
        return self.folder / self.name.notes_name(player)

    def f0_path(self, player: int) -> Path:
        return self.folder / self.name.f0_name(player)

    @property
    def score_path(self) -> Path:
        return self.folder / self.name.score_name()

    @property
    def video_path(self) -> Path:
        return self.folder / self.name.video_name()

    @property
    def pose_path(self) -> Path:
        return self.folder / self.name.pose_name()

    def file_names(self, kind: str) -> list[str]:
        """The names of the files of one of :data:`FILE_KINDS` the folder name implies."""
        name, players = self.name, range(1, self.players + 1)
        per_player = {"stems": name.stem_name, "notes": name.notes_name, "f0s": name.f0_name}
        if kind in per_player:
            return [per_player[kind](j) for j in players]
        one = {"mixture": name.mix_name, "score": name.score_name, "video": name.video_name}
        return [one[kind]()]

    def check_files(
        self, kinds: Iterable[str] = tuple(FILE_KINDS), *, by_suffix: bool = False
    ) -> FileCheck:
        """Compare the folder's files of ``kinds`` with those its name implies.

        A file is of a kind by its name's start (with ``by_suffix``, also by the kind's
        suffix: ``AuSep_*.wav``, not ``AuSep_*.flac``).
        """
        present = {p.name for p in self.folder.iterdir() if p.is_file()}
        expected: set[str] = set()
        named: set[str] = set()
        for kind in kinds:
            prefix, suffix = FILE_KINDS[kind]
            expected.update(self.file_names(kind))
            named.update(
                n for n in present if n.startswith(prefix) and (not by_suffix or n.endswith(suffix))
            )
        return FileCheck(missing=sorted(expected - present), unexpected=sorted(named - expected))


def pose_file_for(video: Path) -> Path:
    """Where a generated piece keeps its players' true keypoints: ``Vid_<piece>.mp4`` ->
    ``Pose_<piece>.npz`` beside it."""
    return video.with_name(f"{POSE_PREFIX}{video.stem.removeprefix(VIDEO_PREFIX)}.npz")


def list_pieces(root: Path, numbers: list[int] | None = None) -> list[Piece]:
    """Piece folders directly under ``root``, in number order.

    Folders whose names are not URMP piece names are ignored (URMP ships other files at
    the top level). ``numbers`` keeps only those pieces and errors on any that is absent.
    Raises :class:`InputError` if ``root`` is not a directory or holds no piece.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset root is not a directory: {root}")
    pieces = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            pieces.append(Piece(folder, parse_folder_name(folder.name)))
        except InputError:
            continue
    pieces.sort(key=lambda piece: piece.name.number)
    if numbers is not None:
        found = {piece.name.number for piece in pieces}
        missing = sorted(set(numbers) - found)
        if missing:
            raise InputError(f"pieces {missing} not found under {root}")
        pieces = [piece for piece in pieces if piece.name.number in set(numbers)]
    if not pieces:
        splits = [name for name in ("train", "valid", "test") if (root / name).is_dir()]
        hint = ""
        if splits:
            example = root / ("valid" if "valid" in splits else splits[-1])
            hint = f"; it holds split folders ({', '.join(splits)}): give one, e.g. {example}"
        raise InputError(f"no URMP piece folders (NN_Name_inst1_inst2...) under {root}{hint}")
    return pieces
