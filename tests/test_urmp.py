"""The URMP layout: folder names parse, file names follow URMP's scheme."""

from __future__ import annotations

from pathlib import Path

import pytest

from vimss_cli.errors import InputError
from vimss_cli.urmp import FileCheck, Piece, list_pieces, parse_folder_name, parse_stem_file_name


def test_folder_name_round_trip_and_file_names() -> None:
    name = parse_folder_name("13_Hark_vn_vn_va")
    assert (name.number, name.title, name.instruments) == (13, "Hark", ("vn", "vn", "va"))
    assert name.folder_name == "13_Hark_vn_vn_va"
    assert name.mix_name() == "AuMix_13_Hark_vn_vn_va.wav"
    assert name.stem_name(3) == "AuSep_3_va_13_Hark.wav"
    assert name.notes_name(1) == "Notes_1_vn_13_Hark.txt"
    assert name.f0_name(2) == "F0s_2_vn_13_Hark.txt"
    assert name.score_name() == "Sco_13_Hark_vn_vn_va.mid"
    assert name.video_name() == "Vid_13_Hark_vn_vn_va.mp4"


@pytest.mark.parametrize("bad", ["Jupiter_vn_vc", "01_Jupiter", "01_Jupiter_vn_kazoo", "x"])
def test_bad_folder_names(bad: str) -> None:
    with pytest.raises(InputError):
        parse_folder_name(bad)


def test_list_pieces(tmp_path: Path) -> None:
    for folder in ("02_Sonata_fl_fl", "01_Jupiter_vn_vc", "Supplementary", "notes"):
        (tmp_path / folder).mkdir()
    pieces = list_pieces(tmp_path)
    assert [p.folder.name for p in pieces] == ["01_Jupiter_vn_vc", "02_Sonata_fl_fl"]
    assert pieces[1].stem_paths[1] == tmp_path / "02_Sonata_fl_fl" / "AuSep_2_fl_02_Sonata.wav"
    assert [p.name.number for p in list_pieces(tmp_path, [2])] == [2]
    with pytest.raises(InputError, match=r"pieces \[7\] not found"):
        list_pieces(tmp_path, [7])
    with pytest.raises(InputError, match="no URMP piece folders"):
        list_pieces(tmp_path / "notes")
    with pytest.raises(InputError, match="not a directory"):
        list_pieces(tmp_path / "missing")


def test_a_pieces_files_checked_against_its_folder_name(tmp_path: Path) -> None:
    folder = tmp_path / "01_Jupiter_vn_vc"
    folder.mkdir()
    piece = Piece(folder, parse_folder_name(folder.name))
    for name in (
        "AuMix_01_Jupiter_vn_vc.wav",
        "AuSep_1_vn_01_Jupiter.wav",
        "Notes_1_vn_01_Jupiter.txt",
    ):
        (folder / name).touch()
    (folder / "AuSep_3_fl_01_Jupiter.wav").touch()  # a third player the name does not list
    (folder / "AuSep_3_fl_01_Jupiter.flac").touch()
    (folder / "readme.txt").touch()
    every = piece.check_files()
    assert every.unexpected == ["AuSep_3_fl_01_Jupiter.flac", "AuSep_3_fl_01_Jupiter.wav"]
    assert (
        "AuSep_2_vc_01_Jupiter.wav" in every.missing and "Vid_01_Jupiter_vn_vc.mp4" in every.missing
    )
    assert len(every.missing) == 2 * 3 + 3 - 3  # (stems, notes, f0s; mixture, score, video) - 3
    audio = piece.check_files(("stems", "mixture"), by_suffix=True)
    assert audio == FileCheck(["AuSep_2_vc_01_Jupiter.wav"], ["AuSep_3_fl_01_Jupiter.wav"])
    assert parse_stem_file_name("AuSep_2_vc_01_Jupiter.flac") == (2, "vc")
    assert parse_stem_file_name("02_vc.wav") is None
