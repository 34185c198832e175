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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vimss_cli.errors import InputError
from vimss_cli.instruments import INSTRUMENT_CODES

#: The manifest ``vimss data synth`` writes at the top of each generated tree.
SYNTH_MANIFEST_NAME = "vimss_synth.json"

_FOLDER = re.compile(r"^(\d+)_([^_]+)_((?:[a-z]+_?)+)$")


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
        raise InputError(f"no URMP piece folders (NN_Name_inst1_inst2...) under {root}")
    return pieces
