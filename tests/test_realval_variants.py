"""``benchmarks/make_realval_variants.py``: the other ensembles and the rooms it makes from a
URMP-layout set are valid URMP pieces whose mixture is their stems' sum."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from vimss_cli.urmp import PieceName, list_pieces

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from make_realval_variants import ensembles, rooms, write_piece

RATE = 8000


def _source(tmp_path: Path) -> list:
    """A set like Bach10's: a vn+cl duet and a vn+cl+sax+bn quartet of noise players."""
    rng = np.random.default_rng(0)
    root = tmp_path / "source"
    for number, codes in ((1, ("vn", "cl")), (2, ("vn", "cl", "sax", "bn"))):
        stems = [rng.standard_normal(RATE) * 0.05 * (k + 1) for k in range(len(codes))]
        write_piece(root, PieceName(number, "Made", codes), stems, RATE)
    return list_pieces(root)


def _read(path: Path) -> np.ndarray:
    return soundfile.read(str(path), dtype="float32")[0]


def test_ensembles_are_the_duets_and_trios_the_set_lacks(tmp_path: Path) -> None:
    source = _source(tmp_path)
    count = ensembles(source, tmp_path / "out")
    made = list_pieces(tmp_path / "out")
    names = {piece.name.instruments for piece in made}
    # 6 duets and 4 trios of four players, less the vn+cl duet the set holds
    assert count == len(made) == 9
    assert ("vn", "cl") not in names and ("sax", "bn") in names and ("vn", "sax", "bn") in names
    quartet = dict(zip(source[1].name.instruments, map(_read, source[1].stem_paths), strict=True))
    for piece in made:
        stems = [_read(path) for path in piece.stem_paths]
        for code, stem in zip(piece.name.instruments, stems, strict=True):
            np.testing.assert_array_equal(stem, quartet[code])  # the players, unchanged
        np.testing.assert_allclose(_read(piece.mix_path), np.sum(stems, axis=0), atol=1e-6)


@pytest.mark.parametrize("wet", [0.0, 0.5])
def test_rooms_convolve_each_player_and_sum_them(tmp_path: Path, wet: float) -> None:
    source = _source(tmp_path)
    assert rooms(source, tmp_path / "out", rt60=0.3, wet=wet, seed=1) == 2
    made = list_pieces(tmp_path / "out")
    assert [piece.name for piece in made] == [piece.name for piece in source]
    for dry_piece, piece in zip(source, made, strict=True):
        dry = np.stack([_read(path) for path in dry_piece.stem_paths])
        heard = np.stack([_read(path) for path in piece.stem_paths])
        np.testing.assert_allclose(_read(piece.mix_path), heard.sum(axis=0), atol=1e-6)
        if wet == 0.0:  # no room: the direct sound alone
            np.testing.assert_allclose(heard, dry, atol=1e-6)
        else:  # half of each player is its room's tail: far from the dry player
            error = np.sum((heard - dry) ** 2, axis=1) / np.sum(dry**2, axis=1)
            assert np.all(error > 0.1)
