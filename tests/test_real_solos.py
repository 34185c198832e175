"""Real solo recordings: reading Qt resource bundles, and writing one-player pieces."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from vimss_cli.cli import app
from vimss_cli.synth import real_solos
from vimss_cli.urmp import list_pieces


def write_rcc(path: Path, files: dict[str, tuple[bytes, bool]]) -> None:
    """A format-3 ``qres`` bundle: root / ``res`` / files (each stored or zlib-compressed)."""
    names = b""
    name_offsets = {}
    for name in ["res", *files]:
        name_offsets[name] = len(names)
        encoded = name.encode("utf-16-be")
        names += struct.pack(">HI", len(name), 0) + encoded
    data = b""
    data_offsets = {}
    for name, (content, compress) in files.items():
        data_offsets[name] = len(data)
        stored = struct.pack(">I", len(content)) + zlib.compress(content) if compress else content
        data += struct.pack(">I", len(stored)) + stored
    nodes = [
        struct.pack(">IHII", 0, 2, 1, 1) + b"\0" * 8,  # root: one child, node 1
        struct.pack(">IHII", name_offsets["res"], 2, len(files), 2) + b"\0" * 8,
    ]
    for name, (_, compress) in files.items():
        nodes.append(
            struct.pack(
                ">IHHHI", name_offsets[name], 1 if compress else 0, 0, 0, data_offsets[name]
            )
            + b"\0" * 8
        )
    tree = b"".join(nodes)
    header_size = 24
    tree_at, data_at = header_size, header_size + len(tree)
    names_at = data_at + len(data)
    header = b"qres" + struct.pack(">IIIII", 3, tree_at, data_at, names_at, 0)
    path.write_bytes(header + tree + data + names)


def ogg(seconds: float, rate: int) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.2 * np.sin(2 * np.pi * 440 * t), rate, format="OGG")
    return buffer.getvalue()


def test_read_rcc_returns_stored_and_compressed_files(tmp_path: Path) -> None:
    bundle = tmp_path / "x.rcc"
    write_rcc(bundle, {"a.txt": (b"plain bytes", False), "b.txt": (b"squeezed " * 50, True)})
    found = dict(real_solos.read_rcc(bundle))
    assert found == {"/res/a.txt": b"plain bytes", "/res/b.txt": b"squeezed " * 50}


def test_read_rcc_refuses_other_files(tmp_path: Path) -> None:
    other = tmp_path / "x.rcc"
    other.write_bytes(b"RIFF....")
    with pytest.raises(real_solos.InputError, match="not a Qt resource bundle"):
        list(real_solos.read_rcc(other))


@pytest.fixture
def installed_solos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two solos installed (a gcompris violin, a tuxpaint bassoon) and a piano, no URMP one."""
    bundle = tmp_path / "instruments.rcc"
    write_rcc(
        bundle,
        {"violin.ogg": (ogg(1.0, 44100), False), "piano.ogg": (ogg(1.0, 44100), False)},
    )
    tux = tmp_path / "tux"
    (tux / "wind").mkdir(parents=True)
    (tux / "wind" / "bassoon.ogg").write_bytes(ogg(0.5, 16000))
    monkeypatch.setattr(real_solos, "GCOMPRIS_RCC", bundle)
    monkeypatch.setattr(real_solos, "TUXPAINT_MUSIC", tux)
    # the bundle's files sit under /res/, not /instruments/: point the filter at them
    monkeypatch.setattr(real_solos, "GCOMPRIS_FOLDER", "/res/")


@pytest.mark.usefixtures("installed_solos")
def test_solos_become_one_player_pieces_at_the_model_rate(tmp_path: Path) -> None:
    folders = real_solos.write_solo_pieces(tmp_path / "out", 22050).folders
    pieces = list_pieces(tmp_path / "out")
    assert [p.folder.name for p in pieces] == [
        "901_RealSoloGcomprisViolin_vn",
        "902_RealSoloTuxpaintBassoon_bn",
    ]  # the piano is no URMP instrument: left out
    assert len(folders) == 2
    audio, rate = soundfile.read(str(pieces[1].stem_paths[0]))
    assert rate == 22050 and abs(audio.size - 11025) <= 1
    assert abs(np.abs(audio).max() - real_solos.SOLO_PEAK) < 1e-3

    # found by a review: a second call replaced every piece without --force, and the pieces
    # failed `vimss data check`, which asked them for notes, F0s, a score and a video
    from vimss_cli.datacheck import check_dataset
    from vimss_cli.errors import OutputError

    assert check_dataset("synth", tmp_path / "out").problems == []
    stem = pieces[0].stem_paths[0]
    before, written_at = stem.read_bytes(), stem.stat().st_mtime_ns
    with pytest.raises(OutputError, match=r"AuSep_1_vn_901_RealSoloGcomprisViolin.wav already "):
        real_solos.write_solo_pieces(tmp_path / "out", 16000)
    assert stem.read_bytes() == before

    # the same command again (as `make device-data` runs it) keeps what is there, and an
    # interrupted run is completed, not refused
    again = real_solos.write_solo_pieces(tmp_path / "out", 22050)
    assert again.folders == folders and again.written == []
    assert stem.stat().st_mtime_ns == written_at
    pieces[1].mix_path.unlink()
    resumed = real_solos.write_solo_pieces(tmp_path / "out", 22050)
    assert resumed.written == [pieces[1].folder] and pieces[1].mix_path.is_file()
    assert stem.stat().st_mtime_ns == written_at

    real_solos.write_solo_pieces(tmp_path / "out", 16000, force=True)
    assert soundfile.info(str(stem)).samplerate == 16000

    # found by a review: a file where a piece folder goes was found only after the pieces
    # before it were written
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "902_RealSoloTuxpaintBassoon_bn").write_text("mine")
    with pytest.raises(OutputError, match="is there and is not a folder"):
        real_solos.write_solo_pieces(blocked, 22050, force=True)
    assert [p.name for p in blocked.iterdir()] == ["902_RealSoloTuxpaintBassoon_bn"]


@pytest.mark.usefixtures("installed_solos")
def test_data_solos_runs_again_keeping_its_pieces(tmp_path: Path) -> None:
    """Through the CLI: a second run keeps the pieces (``make device-data`` runs it every time);
    another rate is refused in one line, with nothing changed."""
    runner = CliRunner()
    out = tmp_path / "solos"
    first = runner.invoke(app, ["data", "solos", "-o", str(out)])
    assert first.exit_code == 0, first.output
    assert "2 real solo piece(s) written" in first.output
    again = runner.invoke(app, ["data", "solos", "-o", str(out)])
    assert again.exit_code == 0, again.output
    assert "0 real solo piece(s) written, 2 already there from an earlier run (kept)" in " ".join(
        again.output.split()
    )
    other = runner.invoke(app, ["data", "solos", "-o", str(out), "--sample-rate", "16000"])
    assert other.exit_code != 0
    assert "differs from what this command writes" in other.output
    assert all(soundfile.info(str(f)).samplerate == 22050 for f in out.glob("*/*.wav"))


def test_no_solos_installed_names_the_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(real_solos, "GCOMPRIS_RCC", tmp_path / "missing.rcc")
    monkeypatch.setattr(real_solos, "TUXPAINT_MUSIC", tmp_path / "missing")
    with pytest.raises(real_solos.MissingDependencyError, match="gcompris-qt-data"):
        real_solos.find_solos()


@pytest.mark.usefixtures("installed_solos")
def test_data_solos_onto_a_file_is_refused_up_front(tmp_path: Path) -> None:
    """``-o`` naming a regular file: the same one-line error as ``data synth``, nothing made."""
    out = tmp_path / "taken.flac"
    out.write_bytes(b"not a folder")
    result = CliRunner().invoke(app, ["data", "solos", "-o", str(out)])
    assert result.exit_code != 0
    assert result.stderr.strip() == f"error: output path exists and is not a directory: {out}"
    assert out.read_bytes() == b"not a folder"
